"""Record a chapter's headline metrics to ``results/<chapter>.json``.

Every chapter ends with::

    results.record("cold_brew", {"isolated_acc/student": 61.0, ...},
                   paper={"isolated_acc/student": 69.62, ...},
                   units={"isolated_acc/student": "% accuracy"},     # optional
                   better={"isolated_acc/student": "higher"},        # optional
                   claims=[claim_1, claim_2])     # iclr22.claims.Claim objects

One JSON file per chapter keeps, for each (profile, device kind) run, the wall time and the
metrics; the top-level ``metrics`` are those of the latest *full* run, which is what the
appendix scorecard compares with ``paper``. Writes happen only when ``ICLR22_RECORD=1``
(set by ``tools/execute.py``), so an interactive session or a CI quick run never rewrites
the committed results.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from . import claims as claims_module
from . import runtime
from .cache import atomic_write_bytes

RECORD_VARIABLE = "ICLR22_RECORD"
RESULTS_DIR_VARIABLE = "ICLR22_RESULTS_DIR"
SCHEMA_VERSION = 2


def results_dir() -> Path:
    """``$ICLR22_RESULTS_DIR``, else ``results/`` of the book checkout that holds the cwd."""
    if os.environ.get(RESULTS_DIR_VARIABLE):
        return Path(os.environ[RESULTS_DIR_VARIABLE])
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "_toc.yml").is_file() and (folder / "results").is_dir():
            return folder / "results"
    here = Path(__file__).resolve().parents[2]  # lib/iclr22/results.py -> repository root
    if (here / "_toc.yml").is_file():
        return here / "results"
    return Path.cwd() / "results"


def _check_metrics(name: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{name} must be a mapping of metric name to number, got {type(metrics)}")
    clean: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{name}: metric names must be non-empty strings, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name}[{key!r}] must be a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"{name}[{key!r}] must be finite, got {value}")
        clean[key] = float(value)
    return clean


def _check_chapter(chapter: str) -> None:
    if not isinstance(chapter, str) or not chapter.replace("_", "").isalnum():
        raise ValueError(f"chapter must be a name like 'cold_brew', got {chapter!r}")


def _check_labels(name: str, labels: Mapping[str, str] | None, measured: Mapping[str, float],
                  allowed: tuple[str, ...] | None = None) -> dict[str, str]:
    """Per-metric ``units`` or ``better`` labels: strings, for measured metrics only."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise TypeError(f"{name} must be a mapping of metric name to text, got {type(labels)}")
    unknown = sorted(set(labels) - set(measured))
    if unknown:
        raise ValueError(f"{name} has metrics that this run did not measure: {unknown}")
    for key, value in labels.items():
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name}[{key!r}] must be a non-empty string, got {value!r}")
        if allowed is not None and value not in allowed:
            raise ValueError(f"{name}[{key!r}] must be one of {allowed}, got {value!r}")
    return dict(labels)


def _check_claims(claims: Sequence[Any]) -> list[dict[str, Any]]:
    entries = claims_module.as_dicts(claims)
    problems = [p for entry in entries for p in claims_module.check_claim(entry)]
    if problems:
        raise ValueError("inconsistent claims: " + "; ".join(problems))
    texts = [entry["text"] for entry in entries]
    if len(set(texts)) != len(texts):
        raise ValueError(f"claim texts must be unique within a chapter, got {texts}")
    return entries


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(Path(path), text.encode("utf-8"))


def record(
    chapter: str,
    metrics: Mapping[str, float],
    *,
    paper: Mapping[str, float] | None = None,
    settings: Mapping[str, Any] | None = None,
    claims: Sequence[Any] = (),
    units: Mapping[str, str] | None = None,
    better: Mapping[str, str] | None = None,
    wall_time_s: float | None = None,
    write: bool | None = None,
) -> dict[str, Any]:
    """Record ``metrics`` of the current run of ``chapter``; return the run's entry.

    metrics:  name -> number measured by this run (e.g. ``{"isolated_acc/student": 0.61}``).
    paper:    name -> the paper's number for the same metric where the paper reports one.
    settings: free-form description of the setting (dataset, sizes), stored as given.
    claims:   :class:`iclr22.claims.Claim` objects (or their dicts); each is re-checked with
              :func:`iclr22.claims.check_claim` before anything is written.
    units:    optional name -> unit of a metric (``"% accuracy"``, ``"s per 10k nodes"``,
              ``"x (student time / teacher time)"``), shown on the appendix scorecard.
    better:   optional name -> ``"higher"`` or ``"lower"`` (which way is better).
    wall_time_s: defaults to the time since ``iclr22`` was imported.
    write:    defaults to ``ICLR22_RECORD == "1"``.
    """
    _check_chapter(chapter)
    measured = _check_metrics("metrics", metrics)
    reference = _check_metrics("paper", paper or {})
    unknown = set(reference) - set(measured)
    if unknown:
        raise ValueError(f"paper has metrics that this run did not measure: {sorted(unknown)}")
    labels = {"units": _check_labels("units", units, measured),
              "better": _check_labels("better", better, measured, ("higher", "lower"))}
    recorded_claims = _check_claims(claims)
    dev = runtime.device()
    machine = runtime.machine()
    run = {
        "profile": runtime.profile(),
        "device": machine["device"],
        "device_kind": dev.type,
        "torch": torch.__version__,
        "threads": machine["threads"],
        "cpu_capability": machine["cpu_capability"],
        "wall_time_s": round(runtime.elapsed() if wall_time_s is None else wall_time_s, 2),
        "metrics": measured,
        "claims": recorded_claims,
    }
    if write is None:
        write = os.environ.get(RECORD_VARIABLE) == "1"
    if write:
        _merge_into_file(chapter, run, reference, dict(settings or {}), labels)
    return run


def _merge_into_file(chapter: str, run: dict, paper: dict, settings: dict,
                     labels: dict[str, dict[str, str]]) -> None:
    path = results_dir() / f"{chapter}.json"
    data = load(path) if path.exists() else {"chapter": chapter, "runs": {}}
    data["schema"] = SCHEMA_VERSION
    data["runs"][f"{run['profile']}-{run['device_kind']}"] = run
    if run["profile"] == "full":
        data.update(metrics=run["metrics"], claims=run["claims"], paper=paper,
                    settings=settings, profile="full", device=run["device"],
                    torch=run["torch"], threads=run["threads"],
                    cpu_capability=run["cpu_capability"], wall_time_s=run["wall_time_s"],
                    **labels)
    write_json_atomic(path, data)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read one results file and check its shape; a malformed file is a ``ValueError``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        raise ValueError(f"{path}: expected an object with a 'runs' mapping")
    return data


def load_all(folder: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """All ``<chapter>.json`` files in ``folder`` (default :func:`results_dir`), by chapter."""
    folder = Path(folder) if folder is not None else results_dir()
    return {p.stem: load(p) for p in sorted(folder.glob("*.json"))}
