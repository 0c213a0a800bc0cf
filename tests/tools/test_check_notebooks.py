"""Tests of tools/check_notebooks.py: each failure reason on its own, on a fake book."""

from __future__ import annotations

import check_notebooks
import nbformat
import pytest


def problems(book) -> list[str]:
    """The checker's problem lines for the fake book."""
    found, _ = check_notebooks.check(book.root)
    return found


def only_problem(book) -> str:
    """The single problem line of the fake book (fails if there are none or several)."""
    found = problems(book)
    assert len(found) == 1, found
    return found[0]


def test_clean_book_passes(book, capsys):
    assert problems(book) == []
    assert check_notebooks.main(["--root", str(book.root)]) == 0
    assert "1 notebook(s) and _toc.yml ok" in capsys.readouterr().out


def test_missing_stamp(book):
    nb = book.read()
    del nb.metadata["iclr22"]
    book.save(nb, stamp=False)
    assert only_problem(book).startswith(
        "chapters/topic/chapter.ipynb: missing provenance stamp")


def test_stale_stamp_from_code(book):
    nb = book.read()
    nb.cells[2].source = "print(x * 2)"
    book.save(nb, stamp=False)
    assert "stale stamp: code cells changed" in only_problem(book)


def test_stale_stamp_from_lib_module(book):
    book.module.write_text("VALUE = 3\n")
    assert "stale stamp: module lib/iclr22/mod.py changed" in only_problem(book)


def test_quick_profile_stamp(book):
    book.save(book.read(), profile="quick")
    assert "from a 'quick' profile run" in only_problem(book)


def test_error_output(book):
    nb = book.read()
    nb.cells[2].outputs.append(nbformat.v4.new_output(
        "error", ename="ValueError", evalue="bad", traceback=["ValueError: bad"]))
    book.save(nb)
    assert "cell 3 has an error output (ValueError: bad)" in only_problem(book)


@pytest.mark.parametrize("where", ["ExecuteTime", "collapsed", "execution", "scrolled", "colab"])
def test_volatile_metadata(book, where):
    nb = book.read()
    target = nb.metadata if where == "colab" else nb.cells[2].metadata
    target[where] = {}
    book.save(nb)
    line = only_problem(book)
    assert "volatile metadata" in line and where in line


def test_allowed_metadata_is_not_volatile(book):
    nb = book.read()
    nb.metadata.update(widgets={"state": {}}, jupytext={"formats": "ipynb"},
                       language_info={"name": "python"})
    nb.cells[2].metadata["tags"] = ["nbval-check-output"]
    book.save(nb)
    assert problems(book) == []


def test_big_output(book):
    nb = book.read()
    nb.cells[2].outputs.append(nbformat.v4.new_output(
        "display_data", data={"text/plain": "x" * 2_100_000}))
    book.save(nb)
    assert "cell 3 has a 2.1 MB output (limit 2 MB)" in only_problem(book)


def test_toc_entry_without_file(book):
    (book.root / "chapters" / "intro.md").unlink()
    assert only_problem(book).startswith("_toc.yml: entry 'chapters/intro' names no file")


def test_notebook_not_in_toc(book):
    extra = book.root / "chapters" / "topic" / "draft.ipynb"
    extra.write_bytes(book.chapter.read_bytes())
    assert only_problem(book) == "chapters/topic/draft.ipynb: not listed in _toc.yml"


def test_build_and_checkpoint_folders_are_skipped(book):
    for folder in ("_build", ".ipynb_checkpoints"):
        copy = book.root / "chapters" / "topic" / folder / "chapter.ipynb"
        copy.parent.mkdir()
        copy.write_text("not even json")
    assert problems(book) == []


def test_unreadable_notebook(book):
    book.chapter.write_text("{not json")
    assert "unreadable notebook" in only_problem(book)


@pytest.mark.parametrize(("url", "ok"), [
    ("https://github.com/example/book", True),
    ("https://github.com/example/book.git", True),
    ("https://github.com/other/book", False),
])
def test_colab_install_line_uses_config_url(book, url, ok):
    (book.root / "_config.yml").write_text(f"title: Book\nrepository:\n  url: {url}\n")
    if ok:
        assert problems(book) == []
    else:
        assert "iclr22 @ git+https://github.com/other/book" in only_problem(book)


def test_colab_setup_cell_missing(book):
    (book.root / "_config.yml").write_text("repository:\n  url: https://github.com/example/book\n")
    nb = book.read()
    nb.cells[1].source = "x = 1"
    book.save(nb)
    assert "no Colab setup cell" in only_problem(book)


def test_main_reports_and_fails(book, capsys):
    book.module.write_text("VALUE = 4\n")
    assert check_notebooks.main(["--root", str(book.root)]) == 1
    out = capsys.readouterr().out
    assert "chapters/topic/chapter.ipynb: stale stamp" in out
    assert "1 problem(s) in 1 notebook(s)" in out


def test_run_line_is_filled_from_the_stamp(book):
    text = book.read().cells[0].source
    assert "<!-- run -->full profile, 1 s on cpu (2 cores, x86_64)<!-- /run -->" in text


def test_run_line_that_disagrees_with_the_stamp(book):
    nb = book.read()
    nb.cells[0].source = nb.cells[0].source.replace("1 s on", "36 s on")
    book.save(nb, stamp=False)
    assert "run line says 'full profile, 36 s on" in only_problem(book)


def test_missing_run_line(book):
    nb = book.read()
    nb.cells[0].source = "# Title"
    book.save(nb, stamp=False)
    assert "has no run line" in only_problem(book)


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (59.4, "59 s"), (97.8, "1 min 38 s"),
                                           (189.1, "3 min 9 s")])
def test_format_seconds(seconds, text):
    import provenance

    assert provenance.format_seconds(seconds) == text
