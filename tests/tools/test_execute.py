"""Tests of tools/execute.py, including one real kernel run of a 2-cell notebook."""

from __future__ import annotations

from pathlib import Path

import check_notebooks
import execute
import nbformat
import provenance
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def chapter(book, make_notebook) -> Path:
    """The fake book's chapter, replaced by a 2-cell notebook that imports iclr22.runtime."""
    nb = make_notebook([book.setup, "print(runtime.profile())"])
    nb.metadata["colab"] = {"provenance": []}  # volatile: execute.py must drop it
    nbformat.write(nb, book.chapter)
    return book.chapter


def test_full_run_stamps_and_writes(book, chapter):
    result = execute.execute_notebook(chapter, repo_root=book.root, lib_root=REPO_ROOT)
    assert result.ok, result.detail
    nb = nbformat.read(chapter, as_version=4)
    assert len(nb.cells) == 3  # the probe cell is gone
    assert nb.cells[2].outputs[0]["text"] == "full\n"
    stamp = provenance.get_stamp(nb)
    assert stamp["profile"] == "full" and stamp["device"].startswith(("cpu", "cuda"))
    import torch

    assert stamp["threads"] == torch.get_num_threads()  # the kernel's, same machine
    assert stamp["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert provenance.run_line(stamp) in nb.cells[0].source   # "1 thread" or "2 threads"
    assert {"lib/iclr22/__init__.py", "lib/iclr22/runtime.py"} <= set(stamp["modules"])
    assert stamp["run_time_s"] > 0 and "ok" in result.summary()
    assert provenance.stale_reasons(nb, REPO_ROOT) == []
    assert provenance.volatile_metadata(nb) == []
    assert not list(chapter.parent.glob(".*.tmp"))


def test_failing_cell_leaves_notebook_untouched(book, make_notebook):
    nb = make_notebook(["a = 1", "raise ValueError('boom')", "b = 2"])
    nbformat.write(nb, book.chapter)
    before = book.chapter.read_bytes()
    result = execute.execute_notebook(book.chapter, repo_root=book.root, lib_root=REPO_ROOT)
    assert not result.ok
    assert "cell 3/4" in result.detail and "ValueError: boom" in result.detail
    assert "not written" in result.detail and result.summary().startswith("FAILED")
    assert book.chapter.read_bytes() == before


def test_quick_profile_times_without_writing(book, chapter):
    before = chapter.read_bytes()
    result = execute.execute_notebook(chapter, repo_root=book.root, lib_root=REPO_ROOT,
                                      profile="quick")
    assert result.ok and result.profile == "quick" and "not written" in result.detail
    assert chapter.read_bytes() == before


def test_iclr22_from_another_checkout_is_refused(book, chapter):
    before = chapter.read_bytes()
    result = execute.execute_notebook(chapter, repo_root=book.root)  # lib_root = fake book
    assert not result.ok and "imported iclr22 from outside" in result.detail
    assert chapter.read_bytes() == before


def test_kernel_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    env = execute.kernel_env("full", tmp_path, tmp_path / "fresh-cache")
    assert "MPLBACKEND" not in env
    assert env["ICLR22_CACHE"] == str(tmp_path / "fresh-cache")  # timed runs start cold
    assert env["ICLR22_PROFILE"] == "full" and env["ICLR22_RECORD"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["ICLR22_RESULTS_DIR"] == str(tmp_path.resolve() / "results")


def test_without_arguments_only_stale_chapters_run(book, capsys):
    assert execute.select_notebooks(book.root, "full") == []
    book.save(book.read(), profile="quick")
    assert execute.select_notebooks(book.root, "full") == [book.chapter]
    book.save(book.read())
    book.module.write_text("VALUE = 5\n")
    assert execute.select_notebooks(book.root, "full") == [book.chapter]
    assert execute.select_notebooks(book.root, "quick") == [book.chapter]
    assert "module lib/iclr22/mod.py changed" in capsys.readouterr().out


def test_executed_notebook_passes_the_checker(book, chapter, monkeypatch):
    """A run through main() leaves a notebook that check_notebooks accepts."""
    # Stamp against the fake root's lib so the checker (rooted there) can verify it.
    (book.root / "lib" / "iclr22").mkdir(exist_ok=True)
    for name in ("__init__.py", "runtime.py"):
        (book.root / "lib" / "iclr22" / name).write_bytes(
            (REPO_ROOT / "lib" / "iclr22" / name).read_bytes())
    monkeypatch.setenv("PYTHONPATH", str(book.root / "lib"))
    assert execute.main([], repo_root=book.root) == 0
    stamp = provenance.get_stamp(nbformat.read(book.chapter, as_version=4))
    assert "lib/iclr22/runtime.py" in stamp["modules"]
    problems, _ = check_notebooks.check(book.root)
    assert problems == []
