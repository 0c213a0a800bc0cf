"""Execute chapter notebooks and stamp their provenance (``make execute [NB=...]``).

    python tools/execute.py chapters/graphs/cold_brew.ipynb   # re-run these, full profile
    python tools/execute.py                                   # re-run the stale chapters
    python tools/execute.py --profile quick [NB ...]          # time a quick run, no write

A full run executes the notebook with nbclient (kernel ``python3``, cwd = the notebook's
folder, widget state stored) with ``ICLR22_PROFILE=full`` and ``ICLR22_RECORD=1``, so
``iclr22.results.record`` writes ``results/<chapter>.json``. A last probe, run in the same
kernel and then removed, reports the device, the torch version, the torch thread count, the
CPU capability (``iclr22.runtime.machine()``) and the file of every loaded ``iclr22``
module; these, the modules' sha256 and that of the code cells go into the provenance stamp
(see ``provenance.py``). Volatile metadata is stripped and the notebook replaced atomically.
If a cell fails, the notebook is left untouched and the failing cell is named.

Without notebook arguments, every notebook chapter of ``_toc.yml`` whose stamp is missing,
stale or from a quick run is re-run. ``--profile quick`` runs an in-memory copy (the
notebook file is never written) but still records the quick run time in ``results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance  # noqa: E402

from iclr22.cache import atomic_write_bytes  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
CELL_TIMEOUT_S = 1200
PROBE_MARKER = "__iclr22_provenance__"
PROBE_SOURCE = f"""\
import json as _json, sys as _sys
_files = sorted({{getattr(_m, "__file__", None) or "" for _n, _m in list(_sys.modules.items())
                 if _n == "iclr22" or _n.startswith("iclr22.")}} - {{""}})
from iclr22 import runtime as _runtime
print({PROBE_MARKER!r} + _json.dumps({{"modules": _files, "profile": _runtime.profile(),
      **_runtime.machine()}}))
"""


class NotebookRunError(RuntimeError):
    """A notebook cell failed (error, timeout, dead kernel) or the probe gave no answer."""


@dataclass
class RunResult:
    """Outcome of one notebook run, printed as one summary line."""

    path: Path
    profile: str
    ok: bool
    run_time_s: float = 0.0
    device: str = ""
    threads: int = 0
    cpu_capability: str = ""
    detail: str = ""

    def summary(self) -> str:
        """One line: notebook, profile, run time, device, and what happened."""
        if not self.ok:
            return f"FAILED {self.path}  [{self.profile}]  {self.detail}"
        return (f"ok     {self.path}  [{self.profile}]  {self.run_time_s:.1f} s  "
                f"on {self.device}, {self.threads} threads, {self.cpu_capability}  "
                f"{self.detail}")


def kernel_env(profile: str, repo_root: Path, cache_dir: Path) -> dict[str, str]:
    """Environment of the kernel: the profile, recording on, offline, inline figures.

    cache_dir: the kernel's ``ICLR22_CACHE``. ``execute_notebook`` passes a fresh empty
    folder, so the committed outputs and the recorded run time include every training
    step (a reader's warm cache never shortens the measured time).
    """
    env = dict(os.environ)
    env.update(ICLR22_PROFILE=profile, ICLR22_RECORD="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", ICLR22_CACHE=str(cache_dir),
               ICLR22_RESULTS_DIR=str((repo_root / "results").resolve()))
    env.pop("MPLBACKEND", None)  # the Makefile's Agg would stop figures reaching the outputs
    return env


def _describe_cell(nb: Any, index: int | None) -> str:
    """``cell 3/12 ("first line of source")`` for error messages."""
    if index is None:
        return "before the first cell"
    if index >= len(nb.cells):
        return "the provenance probe after the last cell"
    first = nb.cells[index].source.strip().splitlines()[:1] or [""]
    return f"cell {index + 1}/{len(nb.cells)} ({first[0][:60]!r})"


def _read_probe(cell: Any) -> dict[str, Any]:
    """Parse the probe cell's printed JSON."""
    for output in cell.get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith(PROBE_MARKER):
                return json.loads(line[len(PROBE_MARKER):])
    raise NotebookRunError("the provenance probe printed nothing (did the kernel die?)")


def run_notebook(nb: Any, cwd: Path, env: dict[str, str],
                 timeout: int = CELL_TIMEOUT_S) -> tuple[float, dict[str, Any]]:
    """Execute ``nb`` in place, then the probe; return (seconds, probe answer).

    Raises NotebookRunError naming the failing cell (the probe failing counts as the
    cell after the last). The probe cell is always removed from ``nb``.
    """
    nb.metadata.pop("widgets", None)  # no stale widget state from an earlier run
    nb.cells.append(nbformat.v4.new_code_cell(PROBE_SOURCE))
    current: dict[str, int] = {}
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
        record_timing=False, resources={"metadata": {"path": str(cwd)}},
        on_cell_start=lambda cell, cell_index: current.update(index=cell_index))
    start = time.perf_counter()
    try:
        client.execute(env=env)
        seconds, probe_cell = time.perf_counter() - start, nb.cells[-1]
    except Exception as err:  # CellExecutionError, CellTimeoutError, DeadKernelError, ...
        nb.cells.pop()
        what = f"{err.ename}: {err.evalue}" if hasattr(err, "ename") else str(err).strip()
        first_line = what.splitlines()[0] if what else repr(err)
        where = _describe_cell(nb, current.get("index"))
        raise NotebookRunError(f"{where} failed: {first_line}") from err
    nb.cells.pop()
    return seconds, _read_probe(probe_cell)


def write_notebook_atomic(nb: Any, path: Path) -> None:
    """Write ``nb`` next to ``path`` in a temporary file, then rename it over ``path``."""
    atomic_write_bytes(path, nbformat.writes(nb).encode("utf-8"))


def stamp_and_write(nb: Any, path: Path, probe: dict[str, Any], seconds: float,
                    lib_root: Path) -> str:
    """Stamp a fully run ``nb``, strip volatile metadata and replace ``path``.

    Returns what was done; raises NotebookRunError when the kernel imported ``iclr22`` from
    outside ``lib_root/lib`` (the stamp could not vouch for that code).
    """
    lib = (lib_root / "lib").resolve()
    foreign = [f for f in probe["modules"] if not Path(f).resolve().is_relative_to(lib)]
    if foreign:
        raise NotebookRunError(f"the kernel imported iclr22 from outside {lib} ({foreign[0]}); "
                               "run `pip install -e .` in this checkout")
    stamp = provenance.build_stamp(
        nb, profile=probe["profile"], device=probe["device"], torch=probe["torch"],
        threads=probe["threads"], cpu_capability=probe["cpu_capability"],
        run_time_s=seconds, module_files=probe["modules"], repo_root=lib_root)
    provenance.strip_volatile(nb)
    provenance.set_stamp(nb, stamp)
    provenance.set_run_line(nb, stamp)
    write_notebook_atomic(nb, path)
    return f"written, {len(stamp['modules'])} modules stamped"


def execute_notebook(path: str | Path, *, repo_root: str | Path = REPO_ROOT,
                     lib_root: str | Path | None = None, profile: str = "full",
                     timeout: int = CELL_TIMEOUT_S) -> RunResult:
    """Run one notebook; in the full profile stamp it and write it back.

    The quick profile runs the in-memory copy read here and never writes the file.
    repo_root: the book checkout (``results/`` is written there).
    lib_root:  the checkout whose ``lib/`` the stamp's module paths are relative to
               (default ``repo_root``; tests point ``repo_root`` at a scratch folder).
    """
    path, repo_root = Path(path), Path(repo_root)
    lib_root = Path(lib_root) if lib_root is not None else repo_root
    nb = nbformat.read(path, as_version=4)
    try:
        with tempfile.TemporaryDirectory(prefix="iclr22-cache-") as cache_dir:
            seconds, probe = run_notebook(nb, path.resolve().parent,
                                          kernel_env(profile, repo_root, Path(cache_dir)),
                                          timeout)
        detail = ("(timing only, not written)" if profile != "full"
                  else stamp_and_write(nb, path, probe, seconds, lib_root))
    except NotebookRunError as err:
        return RunResult(path, profile, ok=False, detail=f"{err} (notebook not written)")
    return RunResult(path, probe["profile"], ok=True, run_time_s=seconds,
                     device=probe["device"], threads=probe["threads"],
                     cpu_capability=probe["cpu_capability"], detail=detail)


def rerun_reasons(path: Path, repo_root: Path) -> list[str]:
    """Why a chapter needs a full re-run: missing or stale stamp, or a quick-profile stamp."""
    nb = nbformat.read(path, as_version=4)
    reasons = provenance.stale_reasons(nb, repo_root)
    stamp = provenance.get_stamp(nb)
    if not reasons and stamp.get("profile") != "full":
        reasons.append(f"stamped in the {stamp.get('profile')!r} profile")
    return reasons


def toc_notebooks(repo_root: Path) -> list[Path]:
    """The notebook chapters listed in ``_toc.yml`` that exist, in book order."""
    paths = [provenance.resolve_toc_entry(repo_root, e) for e in provenance.toc_entries(repo_root)]
    return [p for p in paths if p is not None and p.suffix == ".ipynb"]


def select_notebooks(repo_root: Path, profile: str) -> list[Path]:
    """All ``_toc.yml`` notebooks for a quick timing run; only the stale ones for a full run."""
    selected = []
    for path in toc_notebooks(repo_root):
        reasons = rerun_reasons(path, repo_root) if profile == "full" else ["timing run"]
        if reasons:
            print(f"run    {path.relative_to(repo_root)}: {'; '.join(reasons)}")
            selected.append(path)
        else:
            print(f"skip   {path.relative_to(repo_root)}: stamp is current")
    return selected


def main(argv: list[str] | None = None, repo_root: Path = REPO_ROOT) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: the stale chapters of _toc.yml)")
    parser.add_argument("--profile", choices=("full", "quick"), default="full",
                        help="full: run, stamp and write (default); quick: time only")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S,
                        help=f"per-cell timeout in seconds (default {CELL_TIMEOUT_S})")
    args = parser.parse_args(argv)
    paths = args.notebooks or select_notebooks(repo_root, args.profile)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(map(str, missing))}")
    failures = 0
    for path in paths:
        result = execute_notebook(path, repo_root=repo_root, profile=args.profile,
                                  timeout=args.timeout)
        print(result.summary(), flush=True)
        failures += not result.ok
    if not paths:
        print("nothing to run: every chapter's stamp is current")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
