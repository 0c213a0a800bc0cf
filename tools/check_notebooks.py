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
* its setup cell (the first code cell that mentions ``google.colab``) does not have exactly
  the shape of :data:`SETUP_TEMPLATE` (``%pip install -q "iclr22 @ git+<url>"`` with
  ``_config.yml``'s ``repository.url``, any URL when it has none, then
  ``colab.install_data("iclr22.<module>")`` naming a module of ``lib/iclr22``, inside the
  ``google.colab`` branch), or is not tagged ``remove-input``;
* the notebook rules of ``CONTRIBUTING.md`` (cells hold prose, calls and displays; logic
  lives in the library) are broken: a function or class definition (``def``, ``async def``,
  ``class``, at any indentation) or a lambda assigned to a name; a code cell longer than
  :data:`MAX_CELL_LINES` lines or a chapter longer than :data:`MAX_CHAPTER_LINES` lines of
  code (non-blank lines); a loop or comprehension over ``.items()``/``.keys()`` or over a
  results entry (``x["metrics"]``, ``["claims"]``, ...); a verdict word (``reproduced``,
  ``not reproduced``, ``inconclusive``) in a string literal (verdicts are computed by
  ``iclr22.claims``, never typed); a printed ``inspect.getsource`` (show code with
  ``IPython.display.Code`` or ``{literalinclude}``); a tqdm import (progress bars come from
  ``runtime.progress`` in the library). Each such line names the cell by number and first
  line;
* a notebook chapter of ``_toc.yml`` has no ``results/<chapter>.json``, or its ``claims``
  list is missing or empty, a claim has fewer than :data:`MIN_CLAIM_SEEDS` seeds, or a
  recorded claim (of any run) disagrees with its own per-seed numbers
  (:func:`iclr22.claims.check_claim`);
* a ``_toc.yml`` entry names a file that does not exist, or a notebook under ``chapters/``
  is not listed in ``_toc.yml``.

Notebooks checked: ``chapters/**/*.ipynb`` (without ``_build`` and ``.ipynb_checkpoints``)
and every notebook ``_toc.yml`` lists. ``make execute`` fixes the stamp, output and results
problems; the rest need an edit.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "lib"))
import provenance  # noqa: E402

from iclr22 import claims  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_OUTPUT_BYTES = 2_000_000
SKIP_DIRS = {"_build", ".ipynb_checkpoints"}
MAX_CELL_LINES = 30
MAX_CHAPTER_LINES = 200
MIN_CLAIM_SEEDS = 3
SETUP_TAG = "remove-input"
#: The setup cell, line by line (``{url}`` and ``{module}`` are filled in; see CONTRIBUTING).
SETUP_TEMPLATE = """\
# Colab: install the book's library and this chapter's data (Colab's torch is kept).
import sys
if "google.colab" in sys.modules:
    %pip install -q "iclr22 @ git+{url}"
    from iclr22 import colab
    colab.install_data("{module}")
from iclr22 import runtime
runtime.seed_everything(0)
DEVICE = runtime.device()
print(runtime.banner())"""
#: Results entries a cell must not loop over: the chapter's numbers are shown by library
#: calls (``claims.table``), not assembled key by key in cells.
RESULT_KEYS = ("metrics", "claims", "paper", "runs", "settings")
VERDICT_WORDS = re.compile(r"\b(not reproduced|reproduced|inconclusive)\b", re.IGNORECASE)


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


def describe_cell(nb: Any, index: int) -> str:
    """``cell 3 ('first line of its source')``: how every cell-level problem names a cell."""
    first = nb.cells[index].source.strip().splitlines()[:1] or [""]
    return f"cell {index + 1} ({first[0][:60]!r})"


def _setup_line_pattern(line: str, url: str | None) -> re.Pattern[str]:
    """A template line as a regex: the url (with an optional ``.git``) and the module vary."""
    pattern = re.escape(line)
    url_pattern = (re.escape(url) + r"(?:\.git)?") if url else r"\S+?"
    pattern = pattern.replace(re.escape("{url}"), url_pattern)
    return re.compile(pattern.replace(re.escape("{module}"), r"(iclr22(?:\.\w+)+)") + "$")


def _module_exists(module: str, repo_root: Path) -> bool:
    """Whether ``iclr22.<a>.<b>`` is a module (file or package) of ``repo_root/lib``."""
    base = repo_root / "lib" / Path(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def setup_problems(nb: Any, url: str | None, repo_root: Path) -> list[str]:
    """The setup cell must have exactly the shape of :data:`SETUP_TEMPLATE`."""
    index = next((i for i, c in enumerate(nb.cells)
                  if c.cell_type == "code" and "google.colab" in c.source), None)
    if index is None:
        return ["no Colab setup cell (a code cell that checks 'google.colab' in sys.modules)"]
    cell, where = nb.cells[index], describe_cell(nb, index)
    expected = SETUP_TEMPLATE.splitlines()
    found = [line.rstrip() for line in cell.source.strip().splitlines()]
    problems = []
    for number, line in enumerate(expected):  # the first line that differs, if any
        shown = line.format(url=url or "<repository url>", module="iclr22.<chapter module>")
        got = found[number] if number < len(found) else None
        match = _setup_line_pattern(line, url).match(got) if got is not None else None
        if match is None:
            what = f"found {got!r}" if got is not None else "the cell ends before it"
            note = " (_config.yml repository.url)" if "{url}" in line else ""
            problems.append(f"setup {where}: line {number + 1} must be {shown!r}{note}; "
                            f"{what} (the setup cell's shape is in CONTRIBUTING.md)")
            break
        if match.groups() and not _module_exists(match.group(1), repo_root):
            problems.append(f"setup {where}: colab.install_data names {match.group(1)!r}, "
                            f"which is not a module of lib/iclr22")
    else:
        if len(found) > len(expected):
            problems.append(f"setup {where}: {len(found) - len(expected)} line(s) after "
                            f"{expected[-1]!r}; the setup cell has exactly {len(expected)} "
                            "lines")
    if SETUP_TAG not in cell.metadata.get("tags", []):
        problems.append(f"setup {where}: must be tagged {SETUP_TAG!r}")
    return problems


# --- notebook rules: cells hold prose, calls and displays ------------------------------------


def parse_cell(source: str) -> ast.Module | None:
    """The cell as Python (IPython magics turned into calls), or None if it does not parse."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None


def code_lines(source: str) -> int:
    """Lines of code of a cell: its non-blank lines."""
    return sum(1 for line in source.splitlines() if line.strip())


def _is_call_to(node: ast.AST, names: tuple[str, ...]) -> bool:
    """``x.<name>(...)`` or ``<name>(...)`` for one of ``names``."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr in names) or (
        isinstance(func, ast.Name) and func.id in names)


def _loops_over_results(iterable: ast.AST) -> str | None:
    """Why a ``for`` over ``iterable`` is a metric-key loop, or None."""
    if _is_call_to(iterable, ("items", "keys")):
        return f"`.{iterable.func.attr}()`"  # type: ignore[attr-defined]
    for node in ast.walk(iterable):
        if (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                and node.slice.value in RESULT_KEYS):
            return f"a results entry [{node.slice.value!r}]"
    return None


def rule_findings(tree: ast.Module) -> list[str]:
    """What a parsed cell does that cells must not (definitions, loops, verdicts, dumps)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kind = {"FunctionDef": "def", "AsyncFunctionDef": "async def",
                    "ClassDef": "class"}[type(node).__name__]
            found.append(f"defines `{kind} {node.name}` (line {node.lineno}); definitions "
                         "belong in the library")
        elif (isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr))
              and isinstance(node.value, ast.Lambda)):
            found.append(f"assigns a lambda (line {node.lineno}); define it in the library")
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            why = _loops_over_results(node.iter)
            if why:
                line = getattr(node, "lineno", None) or node.iter.lineno
                found.append(f"loops over {why} (line {line}); show results with a library "
                             "call (one table), not key by key")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            word = VERDICT_WORDS.search(node.value)
            if word:
                found.append(f"types the verdict word {word.group(1)!r} (line {node.lineno}); "
                             "verdicts come from iclr22.claims, never typed")
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                name.split(".")[0] == "tqdm"
                for name in ([a.name for a in node.names] if isinstance(node, ast.Import)
                             else [node.module or ""])):
            found.append(f"imports tqdm (line {node.lineno}); long loops in the library wrap "
                         "their iterable in runtime.progress(...)")
        elif (_is_call_to(node, ("print",))
              and any(_is_call_to(arg, ("getsource",)) for a in node.args
                      for arg in ast.walk(a))):
            found.append(f"prints inspect.getsource (line {node.lineno}); show library code "
                         "with IPython.display.Code(..., language='python') or {literalinclude}")
    return found


#: When a cell does not parse as Python, these textual checks stand in for the AST ones.
FALLBACK_RULES = (
    (re.compile(r"^\s*(?:async\s+def|def|class)\s+\w+", re.MULTILINE),
     "defines a function or class; definitions belong in the library"),
    (re.compile(r"^\s*\w+\s*=\s*lambda\b", re.MULTILINE), "assigns a lambda"),
    (re.compile(r"\bfor\b.*\bin\b.*\.(?:items|keys)\(\)"), "loops over `.items()`/`.keys()`"),
    (re.compile(r"print\s*\(\s*(?:inspect\.)?getsource"), "prints inspect.getsource"),
)


def cell_rule_problems(nb: Any) -> list[str]:
    """The notebook rules, cell by cell, then the chapter's total lines of code."""
    problems, total = [], 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where, lines = describe_cell(nb, index), code_lines(cell.source)
        total += lines
        if lines > MAX_CELL_LINES:
            problems.append(f"{where}: {lines} lines of code (at most {MAX_CELL_LINES} a cell); "
                            "move logic into the library or split the cell")
        tree = parse_cell(cell.source)
        if tree is not None:
            found = rule_findings(tree)
        else:
            found = [f"{text} (the cell does not parse as Python)"
                     for pattern, text in FALLBACK_RULES if pattern.search(cell.source)]
        problems += [f"{where}: {text}" for text in dict.fromkeys(found)]  # each once
    if total > MAX_CHAPTER_LINES:
        problems.append(f"{total} lines of code in the chapter (at most {MAX_CHAPTER_LINES}); "
                        "move logic into the library")
    return problems


# --- results: every chapter states claims, and they agree with their numbers --------------


def results_problems(chapter: str, results_path: Path) -> list[str]:
    """The chapter's ``results/<chapter>.json`` must carry consistent claims over seeds."""
    if not results_path.is_file():
        return [f"no results/{chapter}.json: run `make execute NB=...` (the chapter records "
                "its claims with results.record(..., claims=[...]))"]
    try:
        data = json.loads(results_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        return [f"not valid JSON ({err})"]
    if not isinstance(data, Mapping):
        return ["expected a JSON object (as iclr22.results.record writes)"]
    recorded = data.get("claims")
    if not isinstance(recorded, list) or not recorded:
        return ["no claims recorded (a non-empty `claims` list from the full run): state the "
                "paper's comparisons with iclr22.claims and pass them to results.record"]
    problems = []
    for entry in recorded:
        if not isinstance(entry, Mapping):
            continue  # reported below
        text, seeds = entry.get("text", "?"), entry.get("seeds")
        seeds = seeds.get("seed", []) if isinstance(seeds, Mapping) else []
        if len(seeds) < MIN_CLAIM_SEEDS:
            problems.append(f"claim {text!r} has {len(seeds)} seed(s); a claim needs "
                            f">= {MIN_CLAIM_SEEDS}")
    runs = data.get("runs") if isinstance(data.get("runs"), Mapping) else {}
    groups = [("", recorded)] + [(f" (run {key})", run.get("claims") or [])
                                 for key, run in sorted(runs.items()) if isinstance(run, Mapping)]
    for label, entries in groups:
        for entry in entries:
            if not isinstance(entry, Mapping):
                problems.append(f"a claim{label} is not an object: {entry!r}")
                continue
            problems += [f"{problem}{label}" for problem in claims.check_claim(entry)]
    return problems


def toc_results_problems(repo_root: Path, listed: list[Path]) -> list[str]:
    """:func:`results_problems` for every notebook chapter ``_toc.yml`` lists."""
    problems = []
    for path in listed:
        chapter = path.stem
        problems += [f"results/{chapter}.json: {p}"
                     for p in results_problems(chapter, repo_root / "results" / f"{chapter}.json")]
    return problems


def notebook_problems(path: Path, repo_root: Path, url: str | None) -> list[str]:
    """Every problem of one notebook (see the module docstring)."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:  # invalid JSON or schema: report, keep checking the others
        return [f"unreadable notebook: {err}"]
    volatile = [f"volatile metadata: {v}; run `make execute` or clear it"
                for v in provenance.volatile_metadata(nb)]
    return (stamp_problems(nb, repo_root) + output_problems(nb) + volatile
            + setup_problems(nb, url, repo_root) + provenance.run_line_problems(nb)
            + cell_rule_problems(nb))


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
    problems += toc_results_problems(repo_root, listed)
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
