"""Tests of tools/check_notebooks.py: each failure reason on its own, on a fake book."""

from __future__ import annotations

import json

import check_notebooks
import nbformat
import provenance
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
    assert ("<!-- run -->full profile, 1 s on cpu (2 cores, x86_64), 2 threads, AVX2"
            "<!-- /run -->") in text


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


def test_old_stamp_without_threads_is_stale_with_a_clear_reason(book):
    nb = book.read()
    for key in provenance.MACHINE_FIELDS:
        del nb.metadata["iclr22"][key]
    provenance.set_run_line(nb, nb.metadata["iclr22"])  # the older, shorter run line
    book.save(nb, stamp=False)
    line = only_problem(book)
    assert "stale stamp: stamp from an older execute.py" in line
    assert "threads and cpu_capability" in line


# --- the setup cell ---------------------------------------------------------------------------


def with_setup(book, source: str, tags=("remove-input",)) -> None:
    nb = book.read()
    nb.cells[1].source = source
    nb.cells[1].metadata["tags"] = list(tags)
    book.save(nb)


def test_setup_cell_of_the_old_shape_fails_on_its_first_differing_line(book):
    old = book.setup.replace("library and this chapter's data", "library from the repository")
    with_setup(book, old)
    line = only_problem(book)
    assert line.startswith("chapters/topic/chapter.ipynb: setup cell 2 (\"# Colab: install")
    assert "line 1 must be" in line and "found" in line


def test_setup_cell_needs_install_data_inside_the_colab_branch(book):
    with_setup(book, book.setup.replace('    colab.install_data("iclr22.mod")\n', ""))
    line = only_problem(book)
    assert "line 6 must be '    colab.install_data(\"iclr22.<chapter module>\")'" in line


def test_setup_cell_install_data_must_name_a_library_module(book):
    with_setup(book, book.setup.replace("iclr22.mod", "iclr22.graphs.nothing"))
    assert "names 'iclr22.graphs.nothing', which is not a module" in only_problem(book)


def test_setup_cell_with_extra_lines_or_without_its_tag(book):
    with_setup(book, book.setup + "import torch\n")
    assert "1 line(s) after 'print(runtime.banner())'" in only_problem(book)
    with_setup(book, book.setup, tags=())
    assert "must be tagged 'remove-input'" in only_problem(book)


# --- notebook rules ---------------------------------------------------------------------------


def with_cell(book, source: str) -> str:
    """The single problem after appending a code cell with ``source``."""
    nb = book.read()
    nb.cells.append(nbformat.v4.new_code_cell(source))
    book.save(nb)
    return only_problem(book)


@pytest.mark.parametrize("source, what", [
    ("def train(model):\n    return model", "defines `def train`"),
    ("if True:\n    def inner():\n        pass", "defines `def inner`"),
    ("async def fetch():\n    pass", "defines `async def fetch`"),
    ("class Model:\n    pass", "defines `class Model`"),
    ("score = lambda a: a + 1", "assigns a lambda"),
])
def test_definitions_in_cells_fail_naming_the_cell(book, source, what):
    line = with_cell(book, source)
    first = source.splitlines()[0]
    assert line.startswith(f"chapters/topic/chapter.ipynb: cell 4 ({first!r}): ")
    assert what in line


def test_a_lambda_as_an_argument_is_fine(book):
    nb = book.read()
    nb.cells.append(nbformat.v4.new_code_cell("xs = sorted([3, 1], key=lambda v: -v)"))
    book.save(nb)
    assert problems(book) == []


def test_a_40_line_cell_fails(book):
    line = with_cell(book, "\n".join(f"a{i} = {i}" for i in range(40)))
    assert "cell 4 ('a0 = 0'): 40 lines of code (at most 30 a cell)" in line


def test_blank_lines_do_not_count(book):
    nb = book.read()
    nb.cells.append(nbformat.v4.new_code_cell("\n\n".join(f"a{i} = {i}" for i in range(30))))
    book.save(nb)
    assert problems(book) == []


def test_a_210_line_chapter_fails(book):
    nb = book.read()
    for start in range(0, 199, 20):  # 199 lines in cells of <= 20, plus the 11 already there
        nb.cells.append(nbformat.v4.new_code_cell(
            "\n".join(f"b{i} = {i}" for i in range(start, min(start + 20, 199)))))
    book.save(nb)
    assert only_problem(book) == ("chapters/topic/chapter.ipynb: 210 lines of code in the "
                                  "chapter (at most 200); move logic into the library")


@pytest.mark.parametrize("source, what", [
    ("for key, value in run['metrics'].items():\n    print(key, value)", "`.items()`"),
    ("for key in metrics.keys():\n    print(key)", "`.keys()`"),
    ("rows = {k: v for k, v in metrics.items()}", "`.items()`"),
    ("for claim in data['claims']:\n    print(claim)", "a results entry ['claims']"),
])
def test_loops_over_metric_keys_fail(book, source, what):
    assert f"loops over {what}" in with_cell(book, source)


@pytest.mark.parametrize("source, word", [
    ('label = "reproduced" if gain > 0 else "unclear"', "reproduced"),
    ('label = "Not reproduced" if gain < 0 else ""', "Not reproduced"),
    ('print(f"The claim is inconclusive at {n} seeds")', "inconclusive"),
])
def test_typed_verdicts_fail(book, source, word):
    assert f"types the verdict word {word!r}" in with_cell(book, source)


def test_verdicts_read_from_the_claims_pass(book):
    nb = book.read()
    nb.cells.append(nbformat.v4.new_code_cell("print(claim.verdict)\nclaims.table([claim])"))
    book.save(nb)
    assert problems(book) == []


def test_printed_getsource_fails_and_highlighted_code_passes(book):
    line = with_cell(book, "import inspect\nprint(inspect.getsource(inspect.getdoc))")
    assert "cell 4 ('import inspect'): prints inspect.getsource (line 2)" in line
    nb = book.read()
    nb.cells[-1].source = ("import inspect\nfrom IPython.display import Code\n"
                           "Code(inspect.getsource(inspect.getdoc), language='python')")
    book.save(nb)
    assert problems(book) == []


@pytest.mark.parametrize("source", ["from tqdm.auto import tqdm", "import tqdm"])
def test_tqdm_in_cells_fails(book, source):
    assert "imports tqdm (line 1)" in with_cell(book, source)


def test_cells_that_do_not_parse_get_the_textual_checks(book):
    line = with_cell(book, "def broken(:\n    pass")
    assert "defines a function or class" in line and "does not parse" in line


# --- results: claims over seeds that agree with their numbers ---------------------------------


def test_missing_results_file(book):
    book.results.unlink()
    assert only_problem(book).startswith("results/chapter.json: no results/chapter.json")


def test_results_without_claims(book):
    book.write_results([])
    assert "results/chapter.json: no claims recorded" in only_problem(book)


def test_a_claim_with_two_seeds_is_too_few(book, make_claim):
    book.write_results([make_claim(num_seeds=2)])
    assert "has 2 seed(s); a claim needs >= 3" in only_problem(book)


def test_a_claim_whose_verdict_disagrees_with_its_numbers_fails(book, make_claim):
    entry = make_claim()
    assert entry["verdict"] == "reproduced"
    entry["verdict"] = "not reproduced"
    book.write_results([entry])
    found = problems(book)
    assert len(found) == 2  # the top-level claims and those of the full-cpu run
    assert all("recorded verdict 'not reproduced' but its seeds give 'reproduced'" in line
               for line in found)
    assert found[1].endswith("(run full-cpu)")


def test_a_claim_whose_numbers_were_edited_fails(book, make_claim):
    entry = make_claim()
    entry["seeds"]["method"] = [60.0, 61.0, 62.0]  # below the baseline, verdict kept
    book.write_results([entry])
    assert any("recorded verdict 'reproduced'" in line for line in problems(book))


def test_results_that_are_not_json(book):
    book.results.write_text("{oops")
    assert "results/chapter.json: not valid JSON" in only_problem(book)


def test_results_of_chapters_outside_the_toc_are_not_checked(book):
    (book.root / "results" / "draft.json").write_text(json.dumps({"runs": {}}))
    assert problems(book) == []


@pytest.mark.parametrize("content, reason", [
    ("[]", "expected a JSON object"),
    ('{"runs": {}, "claims": ["not a claim"]}', "is not an object"),
    ('{"runs": {}, "claims": [{"text": "t", "seeds": 3}]}', "has 0 seed(s)"),
])
def test_malformed_results_are_reported_not_crashed_on(book, content, reason):
    book.results.write_text(content)
    assert any(reason in line for line in problems(book))
