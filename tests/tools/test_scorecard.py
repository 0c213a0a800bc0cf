"""tools/scorecard.py: the appendix pages generated from results/*.json fixtures."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import scorecard  # noqa: E402

from iclr22 import claims  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "results"
CLAIM_TEXT = "The student beats an MLP on isolated nodes"


def fixture_claims() -> list[dict]:
    """One claim of each verdict, made by iclr22.claims (so they check clean)."""
    base = [50.0, 52.0, 51.0]
    seeds = [0, 1, 2]
    paper = claims.PaperValue(69.62, "Table 3", "Cora")
    paper_mlp = claims.PaperValue(68.4, "Table 3", "Cora")
    return [c.to_dict() for c in (
        claims.compare(CLAIM_TEXT, [55.0, 58.0, 56.0], base, seeds=seeds,
                       names=("student", "mlp"), setting="WordNet verbs | 80 epochs",
                       unit="points", paper=paper, paper_baseline=paper_mlp),
        claims.compare("The student beats a GCN on isolated nodes", [51.0, 50.0, 53.0],
                       base, seeds=seeds, setting="WordNet verbs, 80 epochs", unit="points"),
        claims.compare("The student is 10 times faster than the teacher", [2.0, 2.2, 1.9],
                       [1.0, 1.0, 1.0], seeds=seeds, ratio=True, threshold=10.0,
                       setting="WordNet verbs, 10k nodes", unit="x"),
    )]


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    """The fixtures, with claims, units, threads and CPU capability added to cold_brew."""
    folder = tmp_path / "results"
    shutil.copytree(FIXTURES, folder)
    path = folder / "cold_brew.json"
    data = json.loads(path.read_text())
    data.update(claims=fixture_claims(), threads=2, cpu_capability="AVX2",
                units={"isolated_acc/mlp": "% accuracy"},
                better={"isolated_acc/mlp": "higher"})
    data["runs"]["full-cpu"].update(threads=2, cpu_capability="AVX2")
    path.write_text(json.dumps(data))
    return folder


@pytest.fixture
def pages(tmp_path: Path, results_dir: Path) -> dict[str, str]:
    """Both pages generated from the fixtures, in a checkout with the cold_brew notebook."""
    (tmp_path / "chapters" / "graphs").mkdir(parents=True)
    (tmp_path / "chapters" / "graphs" / "cold_brew.ipynb").write_text("{}")
    out = tmp_path / "chapters" / "appendix"
    paths = scorecard.write_pages(results_dir, out, root=tmp_path)
    return {p.name: p.read_text() for p in paths}


def test_summary_line_counts_claims_over_chapters(pages):
    text = pages["scorecard.md"]
    assert ("**1 claim reproduced, 1 inconclusive, 1 not reproduced, over 1 chapter.**"
            in text)
    assert text.index("claim reproduced") < text.index("How to read it")


def test_chapter_heading_and_machine_once(pages):
    text = pages["scorecard.md"]
    assert "## {doc}`/chapters/graphs/cold_brew`" in text  # the link shows the chapter title
    assert ("Full run: profile **full**, device cpu (2 cores, x86_64), 2 torch threads, "
            "CPU capability AVX2, torch 2.13.0.") in text
    assert text.count("cpu (2 cores, x86_64)") == 1  # not repeated on every row


def test_claims_table_in_words_with_paper_interval_and_coloured_verdict(pages):
    text = pages["scorecard.md"]
    assert "| claim | paper | ours | our setting | verdict |" in text
    row = next(line for line in text.splitlines() if line.startswith(f"| {CLAIM_TEXT} |"))
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert cells[1] == "student - mlp = 1.22 points (69.62 vs 68.4); Table 3, Cora"
    assert cells[2].startswith("+5.33 points [") and cells[2].endswith(", 3 seeds")
    assert cells[3] == "WordNet verbs \\| 80 epochs"  # a pipe in a cell is escaped
    assert cells[4] == '<span class="verdict verdict-reproduced">reproduced</span>'
    assert '<span class="verdict verdict-inconclusive">inconclusive</span> |' in text
    assert '<span class="verdict verdict-not-reproduced">not reproduced</span> |' in text


def test_other_metrics_show_units_and_direction(pages):
    text = pages["scorecard.md"]
    assert "| metric | unit | better | paper | ours |" in text
    assert "| `isolated_acc/mlp` | % accuracy | higher is better | – | 0.5312 |" in text
    assert "| `isolated_acc/student` | – | – | 0.696 | 0.6108 |" in text


def test_a_chapter_without_claims_says_so(tmp_path):
    paths = scorecard.write_pages(FIXTURES, tmp_path / "out", root=tmp_path)
    text = paths[0].read_text()
    assert "No claims recorded yet" in text
    assert "**0 claims reproduced, 0 inconclusive, 0 not reproduced, over 1 chapter.** " \
           "(1 of them has no claims recorded yet.)" in text
    assert "threads not recorded, CPU capability not recorded" in text


def test_verdict_classes_are_styled():
    css = (ROOT / "_static" / "verdicts.css").read_text()
    for verdict in claims.VERDICTS:
        assert scorecard.verdict_span(verdict).startswith(
            f'<span class="verdict verdict-{verdict.replace(" ", "-")}">')
        assert f".verdict-{verdict.replace(' ', '-')} " in css


def test_scorecard_lists_chapters_with_quick_runs_only(pages):
    text = pages["scorecard.md"]
    assert "`test_acc/diva`" not in text
    assert "only quick runs so far: `diva`" in text  # no notebook yet: plain name, no link


def test_runtimes_per_profile_and_device_with_threads(pages):
    text = pages["runtimes.md"]
    assert ("| {doc}`cold_brew </chapters/graphs/cold_brew>` | 38 s | 3 min 07 s | – | 42 s "
            "| NVIDIA H100, cpu (2 cores, x86_64) | quick-cpu: not recorded; "
            "full-cpu: 2 threads, AVX2; full-cuda: not recorded |") in text
    assert "| `diva` | 52 s | – | – | – | cpu (2 cores, x86_64) | quick-cpu: not recorded |" \
           in text
    assert "threads, CPU capability" in text


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


def test_with_a_toc_only_listed_chapters_appear_in_book_order(tmp_path, results_dir):
    """Results of a chapter not (yet) in _toc.yml stay off the appendix pages."""
    for name in ("cold_brew", "diva", "grda"):
        (tmp_path / "chapters" / "x").mkdir(parents=True, exist_ok=True)
        (tmp_path / "chapters" / "x" / f"{name}.ipynb").write_text("{}")
    grda = json.loads((results_dir / "cold_brew.json").read_text())
    grda.update(chapter="grda", claims=[])
    (results_dir / "grda.json").write_text(json.dumps(grda))
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: chapters/x/grda\n"
        "  - file: chapters/x/cold_brew\n")
    paths = scorecard.write_pages(results_dir, tmp_path / "out", root=tmp_path)
    for path in paths:
        text = path.read_text()
        assert "diva" not in text
        assert text.index("chapters/x/grda") < text.index("chapters/x/cold_brew")


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
    assert scorecard.main(["--check", str(FIXTURES), str(out)]) == 1
