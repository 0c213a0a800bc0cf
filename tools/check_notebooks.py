"""Check the committed chapter notebooks and ``_toc.yml`` (run by ``make check`` and CI).

    python tools/check_notebooks.py [--root DIR]

Exit status 1, with one ``<file>: <reason>`` line per problem, when:

* a notebook has no provenance stamp (``metadata.iclr22``, written by ``make execute``);
* its stamp is stale: the code cells, or an ``iclr22`` module the run imported, changed or
  vanished since the run;
* its stamp comes from a ``quick`` profile run (the book shows full runs only);
* an output is an error;
* it carries volatile metadata: cell metadata ``execution``, ``ExecuteTime``, ``collapsed``,
  ``scrolled``, or notebook metadata other than ``kernelspec``, ``language_info``,
  ``widgets``, ``iclr22`` and ``jupytext`` (Colab's ``colab``/``accelerator`` keys mean the
  notebook was saved from an interactive session);
* a single output is larger than 2 MB (its JSON serialisation);
* its Colab setup cell does not ``%pip install "iclr22 @ git+<url>"`` with ``_config.yml``'s
  ``repository.url`` (checked only when ``_config.yml`` has one);
* a ``_toc.yml`` entry names a file that does not exist, or a notebook under ``chapters/``
  is not listed in ``_toc.yml``.

Notebooks checked: ``chapters/**/*.ipynb`` (without ``_build`` and ``.ipynb_checkpoints``)
and every notebook ``_toc.yml`` lists. ``make execute`` fixes all but the toc problems.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_OUTPUT_BYTES = 2_000_000
SKIP_DIRS = {"_build", ".ipynb_checkpoints"}


def chapter_notebooks(repo_root: Path) -> list[Path]:
    """``chapters/**/*.ipynb`` outside build folders and Jupyter checkpoints, sorted."""
    found = (repo_root / "chapters").rglob("*.ipynb")
    return sorted(p for p in found if not SKIP_DIRS & set(p.relative_to(repo_root).parts))


def repository_url(repo_root: Path) -> str | None:
    """``repository.url`` of ``_config.yml`` without a trailing ``/`` or ``.git``, if any."""
    config_path = repo_root / "_config.yml"
    if not config_path.is_file():
        return None
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    repository = config.get("repository") if isinstance(config, Mapping) else None
    url = repository.get("url") if isinstance(repository, Mapping) else None
    return url.rstrip("/").removesuffix(".git") if isinstance(url, str) and url else None


def stamp_problems(nb: Any, repo_root: Path) -> list[str]:
    """Missing stamp, stale stamp, or a stamp from a quick run."""
    if provenance.get_stamp(nb) is None:
        return ["missing provenance stamp (metadata.iclr22): run `make execute NB=...`"]
    problems = [f"stale stamp: {r}; run `make execute NB=...`"
                for r in provenance.stale_reasons(nb, repo_root)]
    profile = provenance.get_stamp(nb).get("profile")
    if profile != "full":
        problems.append(f"outputs come from a {profile!r} profile run; the book needs 'full'")
    return problems


def output_problems(nb: Any) -> list[str]:
    """Error outputs and outputs larger than MAX_OUTPUT_BYTES."""
    problems = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"cell {index + 1} has an error output "
                                f"({output.get('ename')}: {output.get('evalue')})")
            size = len(json.dumps(output, ensure_ascii=False).encode("utf-8"))
            if size > MAX_OUTPUT_BYTES:
                problems.append(f"cell {index + 1} has a {size / 1e6:.1f} MB output "
                                f"(limit {MAX_OUTPUT_BYTES / 1e6:.0f} MB)")
    return problems


def colab_problems(nb: Any, url: str | None) -> list[str]:
    """The Colab setup cell must pip-install ``iclr22 @ git+<url>``; skipped without a url."""
    if url is None:
        return []
    setup = next((c for c in nb.cells if c.cell_type == "code" and "google.colab" in c.source),
                 None)
    if setup is None:
        return ["no Colab setup cell (a code cell that checks 'google.colab' in sys.modules)"]
    expected = f"iclr22 @ git+{url}"
    lines = [line.strip() for line in setup.source.splitlines() if "pip install" in line]
    if any(expected in line or f"{expected}.git" in line for line in lines):
        return []
    found = f"found {lines[0]!r}" if lines else "it has no `%pip install` line"
    return [f"Colab setup cell must `%pip install -q \"{expected}\"` "
            f"(_config.yml repository.url); {found}"]


def notebook_problems(path: Path, repo_root: Path, url: str | None) -> list[str]:
    """Every problem of one notebook (see the module docstring)."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:  # invalid JSON or schema: report, keep checking the others
        return [f"unreadable notebook: {err}"]
    volatile = [f"volatile metadata: {v}; run `make execute` or clear it"
                for v in provenance.volatile_metadata(nb)]
    return (stamp_problems(nb, repo_root) + output_problems(nb) + volatile
            + colab_problems(nb, url) + provenance.run_line_problems(nb))


def toc_problems(repo_root: Path, notebooks: list[Path]) -> tuple[list[str], list[Path]]:
    """Problems between ``_toc.yml`` and ``chapters/``; also the notebooks the toc lists."""
    if not (repo_root / "_toc.yml").is_file():
        return ["_toc.yml: missing"], []
    problems, listed = [], []
    for entry in provenance.toc_entries(repo_root):
        source = provenance.resolve_toc_entry(repo_root, entry)
        if source is None:
            suffixes = "/".join(provenance.TOC_SUFFIXES)
            problems.append(f"_toc.yml: entry {entry!r} names no file ({entry}{{{suffixes}}})")
        elif source.suffix == ".ipynb":
            listed.append(source.resolve())
    for path in notebooks:
        if path.resolve() not in listed:
            problems.append(f"{path.relative_to(repo_root)}: not listed in _toc.yml")
    return problems, listed


def check(repo_root: Path = REPO_ROOT) -> tuple[list[str], int]:
    """All problems as ``<file>: <reason>`` lines, and the number of notebooks checked."""
    repo_root = repo_root.resolve()
    notebooks = chapter_notebooks(repo_root)
    problems, listed = toc_problems(repo_root, notebooks)
    url = repository_url(repo_root)
    to_check = sorted({p.resolve() for p in notebooks} | set(listed))
    for path in to_check:
        name = path.relative_to(repo_root) if path.is_relative_to(repo_root) else path
        problems += [f"{name}: {p}" for p in notebook_problems(path, repo_root, url)]
    return problems, len(to_check)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the book checkout")
    args = parser.parse_args(argv)
    problems, count = check(args.root)
    for line in problems:
        print(line)
    if problems:
        print(f"check_notebooks: {len(problems)} problem(s) in {count} notebook(s) and _toc.yml")
        return 1
    print(f"check_notebooks: {count} notebook(s) and _toc.yml ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
