"""Shared test settings: headless matplotlib, offline hub, a private cache folder."""

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


def pytest_runtest_setup(item):
    if "gpu" in item.keywords:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs CUDA")
