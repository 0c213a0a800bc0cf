"""Fixtures for the tools' tests: ``tools/`` on sys.path and a tiny fake book checkout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tools"))

import check_notebooks  # noqa: E402
import provenance  # noqa: E402

TOC = """\
format: jb-book
root: chapters/intro
parts:
  - caption: Topic
    chapters:
      - file: chapters/topic/chapter
"""
#: The fake chapter's setup cell: the required shape, for the fake book's url and module.
SETUP = check_notebooks.SETUP_TEMPLATE.format(url="https://github.com/example/book",
                                              module="iclr22.mod") + "\n"


TITLE = "# Title\n\nCommitted run: <!-- run --><!-- /run -->"


def new_notebook(code: list[str], markdown: str = TITLE) -> nbformat.NotebookNode:
    """A notebook with one markdown cell then the given code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(markdown)]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in code]
    for cell in nb.cells[1:]:
        if "google.colab" in cell.source:
            cell.metadata["tags"] = ["remove-input"]
    return nb


def claim_entry(text: str = "The method beats its baseline", num_seeds: int = 3) -> dict:
    """A consistent recorded claim (what results.record stores) over ``num_seeds`` seeds."""
    from iclr22 import claims

    ours = [71.0 + 0.5 * s for s in range(num_seeds)]
    baseline = [69.0 + 0.4 * s for s in range(num_seeds)]
    return claims.compare(text, ours, baseline, seeds=range(num_seeds),
                          names=("method", "baseline"), setting="fixture data",
                          unit="points",
                          paper=claims.PaperValue(80.0, "Table 1", "Cora"),
                          paper_baseline=claims.PaperValue(75.0, "Table 1", "Cora")).to_dict()


def write_results(root: Path, chapter: str, claim_list: list[dict], **extra) -> Path:
    """``results/<chapter>.json`` in the shape results.record writes, with ``claim_list``."""
    path = root / "results" / f"{chapter}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    run = {"profile": "full", "device": "cpu (2 cores, x86_64)", "device_kind": "cpu",
           "torch": "2.x", "threads": 2, "cpu_capability": "AVX2", "wall_time_s": 12.0,
           "metrics": {"acc": 0.5}, "claims": claim_list}
    data = {"chapter": chapter, "schema": 2, "runs": {"full-cpu": run}, "profile": "full",
            **{k: v for k, v in run.items() if k not in ("profile", "device_kind")},
            "paper": {}, "settings": {}, **extra}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def stamp_notebook(nb, root: Path, modules: list[Path], profile: str = "full") -> None:
    """Stamp ``nb`` as if ``execute.py`` had run it with ``modules`` imported."""
    stamp = provenance.build_stamp(
        nb, profile=profile, device="cpu (2 cores, x86_64)", torch="2.x", threads=2,
        cpu_capability="AVX2", run_time_s=1.23, module_files=modules, repo_root=root)
    provenance.set_stamp(nb, stamp)
    provenance.set_run_line(nb, stamp)


class FakeBook:
    """A scratch checkout: _toc.yml, chapters/intro.md, one stamped chapter, one lib module
    and the chapter's ``results/chapter.json`` with one consistent claim over 3 seeds."""

    def __init__(self, root: Path):
        self.root = root
        (root / "chapters" / "topic").mkdir(parents=True)
        (root / "chapters" / "intro.md").write_text("# Intro\n")
        (root / "_toc.yml").write_text(TOC)
        self.module = root / "lib" / "iclr22" / "mod.py"
        self.module.parent.mkdir(parents=True)
        self.module.write_text("VALUE = 1\n")
        self.chapter = root / "chapters" / "topic" / "chapter.ipynb"
        nb = new_notebook([SETUP, "print(x)"])
        nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
        self.save(nb)
        self.results = self.write_results([claim_entry()])

    #: The chapter's setup cell, of the shape check_notebooks.py requires.
    setup = SETUP

    def write_results(self, claim_list: list[dict], **extra) -> Path:
        """Replace ``results/chapter.json`` by one whose full run recorded ``claim_list``."""
        return write_results(self.root, "chapter", claim_list, **extra)

    def read(self) -> nbformat.NotebookNode:
        """The chapter notebook as on disk."""
        return nbformat.read(self.chapter, as_version=4)

    def save(self, nb, stamp: bool = True, profile: str = "full") -> None:
        """Write the chapter, stamped against the current lib module unless ``stamp`` is off."""
        if stamp:
            stamp_notebook(nb, self.root, [self.module], profile)
        nbformat.write(nb, self.chapter)


@pytest.fixture
def book(tmp_path) -> FakeBook:
    """A fresh fake book checkout whose notebook check passes."""
    return FakeBook(tmp_path / "book")


@pytest.fixture
def make_notebook():
    """The :func:`new_notebook` factory."""
    return new_notebook


@pytest.fixture
def make_claim():
    """The :func:`claim_entry` factory (a consistent recorded claim)."""
    return claim_entry
