"""Fixtures for the tools' tests: ``tools/`` on sys.path and a tiny fake book checkout."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tools"))

import provenance  # noqa: E402

TOC = """\
format: jb-book
root: chapters/intro
parts:
  - caption: Topic
    chapters:
      - file: chapters/topic/chapter
"""
SETUP = """\
import sys
if "google.colab" in sys.modules:
    %pip install -q "iclr22 @ git+https://github.com/example/book"
x = 1
"""


TITLE = "# Title\n\nCommitted run: <!-- run --><!-- /run -->"


def new_notebook(code: list[str], markdown: str = TITLE) -> nbformat.NotebookNode:
    """A notebook with one markdown cell then the given code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(markdown)]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in code]
    return nb


def stamp_notebook(nb, root: Path, modules: list[Path], profile: str = "full") -> None:
    """Stamp ``nb`` as if ``execute.py`` had run it with ``modules`` imported."""
    stamp = provenance.build_stamp(
        nb, profile=profile, device="cpu (2 cores, x86_64)", torch="2.x", run_time_s=1.23,
        module_files=modules, repo_root=root)
    provenance.set_stamp(nb, stamp)
    provenance.set_run_line(nb, stamp)


class FakeBook:
    """A scratch checkout: _toc.yml, chapters/intro.md, one stamped chapter, one lib module."""

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
