import random

import numpy as np
import pytest
import torch

from iclr22 import runtime


def test_profile_defaults_to_full(monkeypatch):
    monkeypatch.delenv("ICLR22_PROFILE", raising=False)
    assert runtime.profile() == "full"


@pytest.mark.parametrize("value, expected", [("quick", "quick"), (" FULL ", "full")])
def test_profile_parses_known_values(monkeypatch, value, expected):
    monkeypatch.setenv("ICLR22_PROFILE", value)
    assert runtime.profile() == expected


def test_unknown_profile_is_an_error(monkeypatch):
    monkeypatch.setenv("ICLR22_PROFILE", "quik")
    with pytest.raises(ValueError, match="quik"):
        runtime.profile()


def test_pick_follows_profile(monkeypatch):
    monkeypatch.setenv("ICLR22_PROFILE", "quick")
    assert runtime.pick(full=200, quick=5) == 5
    monkeypatch.setenv("ICLR22_PROFILE", "full")
    assert runtime.pick(full=200, quick=5) == 200


def test_pick_requires_keywords():
    with pytest.raises(TypeError):
        runtime.pick(200, 5)


def _draw_all():
    return random.random(), np.random.rand(), torch.rand(3), torch.randn(2, generator=None)


def test_seed_everything_is_deterministic():
    runtime.seed_everything(123)
    first = _draw_all()
    runtime.seed_everything(123)
    second = _draw_all()
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2]) and torch.equal(first[3], second[3])
    runtime.seed_everything(124)
    assert runtime.seed_everything(124) is not None
    assert not torch.equal(torch.rand(3), first[2])


def test_seed_everything_returns_seeded_generator():
    a = torch.rand(4, generator=runtime.seed_everything(7))
    b = torch.rand(4, generator=runtime.seed_everything(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError):
        runtime.seed_everything(bad)


def test_device_is_cpu_or_cuda():
    dev = runtime.device()
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert runtime.device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_asking_for_missing_cuda_is_an_error():
    with pytest.raises(ValueError, match="CUDA"):
        runtime.device("cuda")


def test_banner_names_profile_device_and_torch(monkeypatch):
    monkeypatch.setenv("ICLR22_PROFILE", "quick")
    text = runtime.banner()
    assert "profile=quick" in text and torch.__version__ in text and "device=" in text


def test_machine_names_what_exact_numbers_depend_on():
    m = runtime.machine()
    assert m["threads"] == torch.get_num_threads() >= 1
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert m["torch"] == torch.__version__ and m["device"] == runtime.device_name()


def test_banner_names_threads_and_cpu_capability():
    text = runtime.banner()
    assert f"threads={torch.get_num_threads()}" in text
    assert f"cpu={torch.backends.cpu.get_cpu_capability()}" in text


@pytest.mark.parametrize("profile, record, shown", [("full", None, True), ("quick", None, False),
                                                    ("full", "1", False)])
def test_progress_is_silent_while_recording_and_in_quick_runs(monkeypatch, profile, record,
                                                              shown):
    monkeypatch.setenv("ICLR22_PROFILE", profile)
    if record:
        monkeypatch.setenv("ICLR22_RECORD", record)
    bar = runtime.progress(range(3), desc="epochs")
    assert bar.disable is (not shown)  # read before iterating: tqdm disables a closed bar
    assert list(bar) == [0, 1, 2]


def test_progress_can_be_disabled_by_the_caller(monkeypatch):
    monkeypatch.setenv("ICLR22_PROFILE", "full")
    assert runtime.progress([1], disable=True).disable is True
