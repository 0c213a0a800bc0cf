"""Tests of tools/provenance.py: hashes, the stamp round-trip and staleness."""

from __future__ import annotations

import nbformat
import provenance
import pytest


def test_code_hash_ignores_markdown_outputs_and_line_endings(make_notebook):
    nb = make_notebook(["a = 1\nb = 2", "print(a)"])
    digest = provenance.code_sha256(nb)
    nb.cells[0].source = "# Another title"
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[1].source = "a = 1\r\nb = 2"
    assert provenance.code_sha256(nb) == digest


def test_code_hash_sees_edits_and_cell_boundaries(make_notebook):
    digest = provenance.code_sha256(make_notebook(["a = 1\nb = 2", "print(a)"]))
    assert provenance.code_sha256(make_notebook(["a = 1\nb = 3", "print(a)"])) != digest
    assert provenance.code_sha256(make_notebook(["a = 1", "b = 2\nprint(a)"])) != digest


def test_stamp_round_trip(book):
    nb = book.read()
    stamp = provenance.get_stamp(nb)
    assert stamp["modules"] == {"lib/iclr22/mod.py": provenance.file_sha256(book.module)}
    assert stamp["code_sha256"] == provenance.code_sha256(nb)
    assert stamp["executed_with"] == "tools/execute.py"
    assert set(stamp) == set(provenance.STAMP_FIELDS)
    assert provenance.stale_reasons(nb, book.root) == []


def test_changed_lib_module_makes_chapter_stale(book):
    book.module.write_text("VALUE = 2\n")
    assert provenance.stale_reasons(book.read(), book.root) == [
        "module lib/iclr22/mod.py changed since the stamped run"]


def test_vanished_lib_module_makes_chapter_stale(book):
    book.module.unlink()
    assert provenance.stale_reasons(book.read(), book.root) == [
        "module lib/iclr22/mod.py vanished since the stamped run"]


def test_changed_code_cell_makes_chapter_stale(book):
    nb = book.read()
    nb.cells[2].source = "print(x + 1)"
    assert provenance.stale_reasons(nb, book.root) == ["code cells changed since the stamped run"]


def test_changed_markdown_cell_does_not(book):
    nb = book.read()
    nb.cells[0].source = "# A better title\n\nMore words."
    assert provenance.stale_reasons(nb, book.root) == []


@pytest.mark.parametrize("stamp", [None, {"profile": "full"}])
def test_missing_or_malformed_stamp(book, stamp):
    nb = book.read()
    nb.metadata.pop("iclr22")
    if stamp is not None:
        nb.metadata["iclr22"] = stamp
    (reason,) = provenance.stale_reasons(nb, book.root)
    assert ("no provenance stamp" if stamp is None else "malformed") in reason


def test_module_hashes_keep_only_files_under_lib(book, tmp_path):
    outside = tmp_path / "site-packages" / "other.py"
    outside.parent.mkdir()
    outside.write_text("")
    assert list(provenance.module_hashes([book.module, outside], book.root)) == [
        "lib/iclr22/mod.py"]


def test_strip_volatile_removes_what_volatile_metadata_reports(make_notebook):
    nb = make_notebook(["a = 1"])
    nb.cells[1].metadata.update(execution={}, scrolled=True, tags=["keep"])
    nb.metadata["colab"] = {"name": "x"}
    assert provenance.volatile_metadata(nb) == ["cell 2 metadata execution, scrolled",
                                                "notebook metadata colab"]
    assert provenance.strip_volatile(nb)
    assert provenance.volatile_metadata(nb) == []
    assert nb.cells[1].metadata == {"tags": ["keep"]}
    assert "kernelspec" in nb.metadata


def test_toc_entries_and_resolution(book):
    assert provenance.toc_entries(book.root) == ["chapters/intro", "chapters/topic/chapter"]
    assert provenance.resolve_toc_entry(book.root, "chapters/intro").name == "intro.md"
    assert provenance.resolve_toc_entry(book.root, "chapters/topic/chapter") == book.chapter
    assert provenance.resolve_toc_entry(book.root, "chapters/missing") is None


def test_stamp_records_threads_and_cpu_capability(book):
    stamp = provenance.get_stamp(book.read())
    assert stamp["threads"] == 2 and stamp["cpu_capability"] == "AVX2"
    assert provenance.run_line(stamp) == ("full profile, 1 s on cpu (2 cores, x86_64), "
                                          "2 threads, AVX2")
    assert provenance.run_line({**stamp, "threads": 1}).endswith(", 1 thread, AVX2")


def test_stamp_from_before_threads_were_recorded_is_stale_with_its_reason(book):
    nb = book.read()
    old = {k: v for k, v in provenance.get_stamp(nb).items()
           if k not in provenance.MACHINE_FIELDS}
    provenance.set_stamp(nb, old)
    (reason,) = provenance.stale_reasons(nb, book.root)
    assert reason.startswith("stamp from an older execute.py: it does not record threads "
                             "and cpu_capability")
    assert provenance.run_line(old) == "full profile, 1 s on cpu (2 cores, x86_64)"  # readable
