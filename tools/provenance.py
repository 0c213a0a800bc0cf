"""Provenance stamps of executed chapter notebooks, shared by ``execute.py`` and
``check_notebooks.py``.

``tools/execute.py`` writes a stamp into the notebook's metadata after a run::

    metadata["iclr22"] = {
        "profile": "full", "device": "cpu (2 cores, x86_64)", "torch": "2.13.0",
        "threads": 2, "cpu_capability": "AVX2",   # torch threads, SIMD kernels dispatched
        "run_time_s": 123.4,
        "code_sha256": "...",                      # code cells only, see code_sha256()
        "modules": {"lib/iclr22/runtime.py": "..."},  # every iclr22 module the run imported
        "executed_with": "tools/execute.py",
    }

No wall-clock date is stored, so re-running an unchanged chapter gives a small diff.
Single numbers repeat exactly only for the same seed, device, CPU capability and thread
count, so the stamp names all four; a stamp from before threads and CPU capability were
recorded is reported stale (with that reason) until the chapter is re-executed.
:func:`stale_reasons` recomputes the hashes and says why committed outputs no longer match
the code that would produce them. ``tools/`` is not a package: the tools put their own folder
on ``sys.path`` and ``import provenance``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

STAMP_KEY = "iclr22"
EXECUTED_WITH = "tools/execute.py"
STAMP_FIELDS = ("profile", "device", "torch", "threads", "cpu_capability", "run_time_s",
                "code_sha256", "modules", "executed_with")
#: Fields added to the stamp later: their absence means an older execute.py, not damage.
MACHINE_FIELDS = ("threads", "cpu_capability")
#: Cell metadata that changes on every run or view; never committed.
VOLATILE_CELL_KEYS = ("execution", "ExecuteTime", "collapsed", "scrolled")
#: The only notebook metadata a committed chapter may carry. ``jupytext`` is a deliberate
#: pairing setting and is allowed; Colab's keys (``colab``, ``accelerator``, ...) mean the
#: notebook was saved from an interactive session and are not.
ALLOWED_NOTEBOOK_METADATA = ("kernelspec", "language_info", "widgets", STAMP_KEY, "jupytext")
#: Source suffixes a ``_toc.yml`` ``file:`` entry may resolve to.
TOC_SUFFIXES = (".ipynb", ".md", ".rst")


def _normalise(text: str) -> str:
    """Text with ``\\r\\n`` and lone ``\\r`` line endings turned into ``\\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _source(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines on disk)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def code_sha256(nb: Mapping[str, Any]) -> str:
    """sha256 of the sources of the notebook's code cells, in order.

    Outputs, metadata and markdown cells do not count; line endings are normalised. The
    sources are hashed as a JSON list so that moving a line across a cell boundary counts
    as a change.
    """
    sources = [_normalise(_source(c)) for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    return hashlib.sha256(json.dumps(sources).encode("utf-8")).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes with ``\\r\\n`` normalised (a CRLF checkout is not a change)."""
    data = Path(path).read_bytes().replace(b"\r\n", b"\n")
    return hashlib.sha256(data).hexdigest()


def module_hashes(files: Iterable[str | Path], repo_root: str | Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of the given module files under ``repo_root/lib``.

    Files elsewhere (site-packages, a different checkout) are skipped: only modules of this
    repository's library can make its notebooks stale.
    """
    lib = (Path(repo_root) / "lib").resolve()
    hashes = {}
    for file in files:
        path = Path(file).resolve()
        if path.is_file() and path.is_relative_to(lib):
            hashes[path.relative_to(lib.parent).as_posix()] = file_sha256(path)
    return dict(sorted(hashes.items()))


def build_stamp(nb: Mapping[str, Any], *, profile: str, device: str, torch: str,
                threads: int, cpu_capability: str, run_time_s: float,
                module_files: Iterable[str | Path], repo_root: str | Path) -> dict[str, Any]:
    """The provenance stamp of a run of ``nb`` (see the module docstring for its keys).

    threads: ``torch.get_num_threads()`` in the kernel; cpu_capability:
    ``torch.backends.cpu.get_cpu_capability()`` (e.g. ``"AVX2"``), both as
    ``iclr22.runtime.machine()`` reports them.
    """
    return {
        "profile": profile,
        "device": device,
        "torch": torch,
        "threads": int(threads),
        "cpu_capability": str(cpu_capability),
        "run_time_s": round(float(run_time_s), 1),
        "code_sha256": code_sha256(nb),
        "modules": module_hashes(module_files, repo_root),
        "executed_with": EXECUTED_WITH,
    }


def get_stamp(nb: Mapping[str, Any]) -> dict[str, Any] | None:
    """The notebook's stamp, or None when it has none."""
    stamp = nb.get("metadata", {}).get(STAMP_KEY)
    return dict(stamp) if isinstance(stamp, Mapping) else None


def set_stamp(nb: dict[str, Any], stamp: Mapping[str, Any]) -> None:
    """Store ``stamp`` in the notebook's metadata (replacing any previous one)."""
    nb.setdefault("metadata", {})[STAMP_KEY] = dict(stamp)


def stale_reasons(nb: Mapping[str, Any], repo_root: str | Path) -> list[str]:
    """Why the notebook's outputs no longer match its code; ``[]`` when the stamp is current.

    Reasons: no stamp, a malformed stamp, code cells changed, a recorded ``iclr22`` module
    changed or vanished. ``repo_root`` is the checkout the module paths are relative to.
    """
    stamp = get_stamp(nb)
    if stamp is None:
        return [f"no provenance stamp (metadata.{STAMP_KEY}); run `make execute`"]
    missing = [f for f in STAMP_FIELDS if f not in stamp]
    if missing and set(missing) <= set(MACHINE_FIELDS) and isinstance(stamp.get("modules"),
                                                                      Mapping):
        return [f"stamp from an older execute.py: it does not record {' and '.join(missing)} "
                "(results repeat exactly only on the same threads and CPU capability)"]
    if missing or not isinstance(stamp.get("modules"), Mapping):
        return [f"malformed provenance stamp (missing or bad: {', '.join(missing) or 'modules'})"]
    reasons = []
    if stamp["code_sha256"] != code_sha256(nb):
        reasons.append("code cells changed since the stamped run")
    for rel, digest in sorted(stamp["modules"].items()):
        path = Path(repo_root) / rel
        if not path.is_file():
            reasons.append(f"module {rel} vanished since the stamped run")
        elif file_sha256(path) != digest:
            reasons.append(f"module {rel} changed since the stamped run")
    return reasons


#: The title cell's run line, filled from the stamp by execute.py and checked by
#: check_notebooks.py:
#: ``<!-- run -->full profile, 98 s on cpu (2 cores, x86_64), 2 threads, AVX2<!-- /run -->``.
RUN_LINE = re.compile(r"(<!-- run -->)(.*?)(<!-- /run -->)", re.DOTALL)


def format_seconds(seconds: float) -> str:
    """``97.8`` -> ``"98 s"``, ``189.1`` -> ``"3 min 9 s"``."""
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60} s"


def run_line(stamp: Mapping[str, Any]) -> str:
    """What the title cell says about the committed run, from its stamp.

    An older stamp without threads and CPU capability gives the older, shorter line.
    """
    line = (f"{stamp['profile']} profile, {format_seconds(float(stamp['run_time_s']))} "
            f"on {stamp['device']}")
    if "threads" in stamp:
        threads = int(stamp["threads"])
        line += f", {threads} thread{'s' if threads != 1 else ''}"
    if stamp.get("cpu_capability"):
        line += f", {stamp['cpu_capability']}"
    return line


def set_run_line(nb: dict[str, Any], stamp: Mapping[str, Any]) -> bool:
    """Write :func:`run_line` between the run markers of the first markdown cell having them."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown" and RUN_LINE.search(_source(cell)):
            cell["source"] = RUN_LINE.sub(lambda m: m.group(1) + run_line(stamp) + m.group(3),
                                          _source(cell), count=1)
            return True
    return False


def run_line_problems(nb: Mapping[str, Any]) -> list[str]:
    """The run markers must exist and agree with the stamp."""
    stamp = get_stamp(nb)
    found = next((RUN_LINE.search(_source(c)) for c in nb["cells"]
                  if c["cell_type"] == "markdown" and RUN_LINE.search(_source(c))), None)
    if found is None:
        return ["title cell has no run line (`<!-- run --><!-- /run -->`, filled by execute.py)"]
    if stamp is not None and found.group(2) != run_line(stamp):
        return [f"run line says {found.group(2)!r} but the stamp says {run_line(stamp)!r}"]
    return []


def volatile_metadata(nb: Mapping[str, Any]) -> list[str]:
    """Descriptions of volatile metadata in ``nb`` (cell keys, unexpected notebook keys)."""
    found = []
    for index, cell in enumerate(nb.get("cells", [])):
        keys = [k for k in VOLATILE_CELL_KEYS if k in cell.get("metadata", {})]
        if keys:
            found.append(f"cell {index + 1} metadata {', '.join(keys)}")
    extra = sorted(set(nb.get("metadata", {})) - set(ALLOWED_NOTEBOOK_METADATA))
    if extra:
        found.append(f"notebook metadata {', '.join(extra)}")
    return found


def strip_volatile(nb: dict[str, Any]) -> list[str]:
    """Remove what :func:`volatile_metadata` reports, in place; return what was removed."""
    removed = volatile_metadata(nb)
    for cell in nb.get("cells", []):
        for key in VOLATILE_CELL_KEYS:
            cell.get("metadata", {}).pop(key, None)
    metadata = nb.get("metadata", {})
    for key in set(metadata) - set(ALLOWED_NOTEBOOK_METADATA):
        del metadata[key]
    return removed


def toc_entries(repo_root: str | Path) -> list[str]:
    """Every ``file:`` (and ``root:``) entry of ``repo_root/_toc.yml``, in order, no suffix."""
    toc = yaml.safe_load((Path(repo_root) / "_toc.yml").read_text(encoding="utf-8")) or {}
    entries: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    entries.append(node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return entries


def resolve_toc_entry(repo_root: str | Path, entry: str) -> Path | None:
    """The source file a ``_toc.yml`` entry names, or None when there is none."""
    base = Path(repo_root) / entry
    if base.suffix in TOC_SUFFIXES and base.is_file():
        return base
    return next((p for s in TOC_SUFFIXES if (p := base.with_name(base.name + s)).is_file()),
                None)
