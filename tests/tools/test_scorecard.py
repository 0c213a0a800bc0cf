"""tools/scorecard.py: the appendix pages generated from results/*.json fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import scorecard  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "results"


@pytest.fixture
def pages(tmp_path: Path) -> dict[str, str]:
    """Both pages generated from the fixtures, in a checkout with the cold_brew notebook."""
    (tmp_path / "chapters" / "graphs").mkdir(parents=True)
    (tmp_path / "chapters" / "graphs" / "cold_brew.ipynb").write_text("{}")
    out = tmp_path / "chapters" / "appendix"
    paths = scorecard.write_pages(FIXTURES, out, root=tmp_path)
    return {p.name: p.read_text() for p in paths}


def test_scorecard_rows_paper_ours_profile_device(pages):
    text = pages["scorecard.md"]
    # the chapter is named on its first row; a metric the paper lacks gets a dash
    assert "| {doc}`cold_brew </chapters/graphs/cold_brew>` | `isolated_acc/mlp` | – " \
           "| 0.5312 | full | cpu (2 cores, x86_64) |" in text
    assert "|  | `isolated_acc/student` | 0.696 | 0.6108 | full | cpu (2 cores, x86_64) |" in text
    assert "How to read it" in text


def test_scorecard_lists_chapters_with_quick_runs_only(pages):
    text = pages["scorecard.md"]
    assert "`test_acc/diva`" not in text
    assert "only quick runs so far: `diva`" in text  # no notebook yet: plain name, no link


def test_runtimes_per_profile_and_device(pages):
    text = pages["runtimes.md"]
    assert ("| {doc}`cold_brew </chapters/graphs/cold_brew>` | 38 s | 3 min 07 s | – | 42 s "
            "| NVIDIA H100, cpu (2 cores, x86_64) |") in text
    assert "| `diva` | 52 s | – | – | – | cpu (2 cores, x86_64) |" in text


def test_no_results_says_so(tmp_path):
    empty = tmp_path / "results"
    empty.mkdir()
    paths = scorecard.write_pages(empty, tmp_path / "out", root=tmp_path)
    for path in paths:
        assert scorecard.NO_RESULTS in path.read_text()


def test_pages_are_generated_and_marked(pages):
    for text in pages.values():
        assert text.startswith(scorecard.GENERATED)


def test_malformed_results_file_is_an_error(tmp_path):
    (tmp_path / "bad.json").write_text('{"chapter": "bad"}')
    with pytest.raises(ValueError, match="runs"):
        scorecard.write_pages(tmp_path, tmp_path / "out", root=tmp_path)


@pytest.mark.parametrize("seconds, text", [(None, "–"), (4.4, "4 s"), (59.6, "1 min 00 s"),
                                           (187.4, "3 min 07 s")])
def test_fmt_seconds(seconds, text):
    assert scorecard.fmt_seconds(seconds) == text


def test_with_a_toc_only_listed_chapters_appear(tmp_path):
    """Results of a chapter not (yet) in _toc.yml stay off the appendix pages."""
    for name in ("cold_brew", "diva"):
        (tmp_path / "chapters" / "x").mkdir(parents=True, exist_ok=True)
        (tmp_path / "chapters" / "x" / f"{name}.ipynb").write_text("{}")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: chapters/x/cold_brew\n")
    paths = scorecard.write_pages(FIXTURES, tmp_path / "out", root=tmp_path)
    text = paths[0].read_text()
    assert "cold_brew" in text and "diva" not in text


def test_check_flags_pages_that_lag_the_results(tmp_path):
    (tmp_path / "chapters" / "graphs").mkdir(parents=True)
    (tmp_path / "chapters" / "graphs" / "cold_brew.ipynb").write_text("{}")
    out = tmp_path / "out"
    assert scorecard.stale_pages(FIXTURES, out, root=tmp_path) == [out / "scorecard.md",
                                                                   out / "runtimes.md"]
    scorecard.write_pages(FIXTURES, out, root=tmp_path)
    assert scorecard.stale_pages(FIXTURES, out, root=tmp_path) == []
    (out / "runtimes.md").write_text("edited by hand\n")
    assert scorecard.stale_pages(FIXTURES, out, root=tmp_path) == [out / "runtimes.md"]
