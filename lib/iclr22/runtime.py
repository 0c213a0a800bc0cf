"""Run-time settings shared by every chapter: device, seeding and the run profile.

The profile is read in exactly one place, :func:`profile`, from the environment variable
``ICLR22_PROFILE``:

* ``full`` (the default): the settings of the rendered book, <= 5 min per chapter on a
  2-core CPU, results comparable with the paper's tables;
* ``quick``: the settings of CI and ``make test``, <= 60 s per chapter, the chapter's
  qualitative claim should still show.

Chapters never read the variable themselves; they ask :func:`pick` for a size.
"""

from __future__ import annotations

import os
import platform
import random
import time
from collections.abc import Iterable
from typing import TypeVar

import numpy as np
import torch

PROFILE_VARIABLE = "ICLR22_PROFILE"
PROFILES = ("quick", "full")
DEFAULT_PROFILE = "full"

T = TypeVar("T")

#: perf_counter() when the library was first imported: the start of a chapter's run.
START_TIME = time.perf_counter()


def profile() -> str:
    """The active profile, ``"quick"`` or ``"full"`` (default), from ``ICLR22_PROFILE``.

    An unknown value is an error rather than a silent fallback: a typo in CI must not turn
    a quick run into a 5-minute one, nor the book's full run into a quick one.
    """
    value = os.environ.get(PROFILE_VARIABLE, DEFAULT_PROFILE).strip().lower()
    if value not in PROFILES:
        raise ValueError(
            f"{PROFILE_VARIABLE}={os.environ.get(PROFILE_VARIABLE)!r} is not a profile; "
            f"expected one of {PROFILES}"
        )
    return value


def pick(*, full: T, quick: T) -> T:
    """Return ``full`` or ``quick`` according to the active :func:`profile`.

    Example: ``epochs = pick(full=200, quick=20)``.
    """
    return quick if profile() == "quick" else full


def device(prefer: str | None = None) -> torch.device:
    """The device to compute on: CUDA when present, else CPU.

    ``prefer`` ("cpu", "cuda", "cuda:1", ...) overrides the choice; asking for CUDA on a
    machine without it is an error, not a silent fallback.
    """
    if prefer is not None:
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {prefer!r} requested but CUDA is not available")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(dev: torch.device | None = None) -> str:
    """A short human description of a device, e.g. ``"cpu (2 cores)"`` or ``"cuda (H100)"``."""
    dev = device() if dev is None else torch.device(dev)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and every CUDA device); return a torch Generator.

    Runs on the CPU are then bit-for-bit repeatable. CUDA kernels may still be
    non-deterministic; we do not force deterministic algorithms, which would slow GPU runs.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def elapsed() -> float:
    """Seconds since the library was first imported (the chapter's wall time so far)."""
    return time.perf_counter() - START_TIME


def machine() -> dict[str, object]:
    """What a run's exact numbers depend on besides the seed: device, CPU kernels, threads.

    Results repeat bit for bit only for the same seed, device, CPU capability (the SIMD
    kernels torch dispatches to, e.g. ``AVX2``/``AVX512``) and torch thread count; on another
    machine single numbers move and only verdicts over seeds should hold.
    """
    return {"device": device_name(), "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def synchronize() -> None:
    """Wait for queued CUDA kernels (a no-op on CPU), so that a timer measures their work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_seconds(fn, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs,
    under ``torch.no_grad()`` and with CUDA synchronised around every run."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    times = []
    with torch.no_grad():
        for index in range(warmup + repeats):
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return float(np.median(times))


def progress(iterable: Iterable[T], **kwargs) -> Iterable[T]:
    """``iterable`` with a ``tqdm.auto`` progress bar in a live session.

    The bar is off while ``tools/execute.py`` records a chapter (``ICLR22_RECORD=1``) and in
    the quick profile (CI, nbval), so committed outputs carry no progress-bar noise.
    """
    from tqdm.auto import tqdm

    quiet = os.environ.get("ICLR22_RECORD") == "1" or profile() == "quick"
    return tqdm(iterable, disable=quiet or kwargs.pop("disable", False), **kwargs)


def banner() -> str:
    """One line for a chapter's setup cell: profile, device, torch version, threads, CPU."""
    m = machine()
    return (f"profile={profile()}  device={m['device']}  torch={m['torch']}  "
            f"threads={m['threads']}  cpu={m['cpu_capability']}")
