"""Shared test settings: headless matplotlib, offline hub, a private cache folder, and a
single-threaded fixture for modules that compare runs bit for bit."""

from __future__ import annotations

import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path, monkeypatch):
    """Every test gets its own cache and results folders and never records by accident."""
    monkeypatch.setenv("ICLR22_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ICLR22_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.delenv("ICLR22_RECORD", raising=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a test module with one torch thread and restore the count after it (other tests
    compare against the process's thread count). With several threads torch's CPU kernels
    may split float reductions differently from run to run, so bit-for-bit determinism
    checks hold only single-threaded, which is also how the chapters are recorded; and tiny
    models gain nothing from extra threads, which only spin under load."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_runtest_setup(item):
    if "gpu" in item.keywords:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs CUDA")
