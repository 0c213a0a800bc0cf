import json

import pytest

from iclr22 import results


def test_record_without_write_returns_run_and_writes_nothing(tmp_path):
    run = results.record("demo", {"acc": 0.5}, paper={"acc": 0.6}, wall_time_s=1.234)
    assert run["metrics"] == {"acc": 0.5} and run["wall_time_s"] == 1.23
    assert not (tmp_path / "results").exists()


def test_record_writes_when_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("ICLR22_RECORD", "1")
    monkeypatch.setenv("ICLR22_PROFILE", "full")
    results.record("demo", {"acc": 0.5, "n": 3}, paper={"acc": 0.6}, settings={"data": "x"})
    data = json.loads((tmp_path / "results" / "demo.json").read_text())
    assert data["metrics"] == {"acc": 0.5, "n": 3.0}
    assert data["paper"] == {"acc": 0.6} and data["settings"] == {"data": "x"}
    assert data["profile"] == "full"
    assert set(data["runs"]) <= {"full-cpu", "full-cuda"} and len(data["runs"]) == 1


def test_quick_run_is_merged_without_replacing_full_metrics(monkeypatch, tmp_path):
    monkeypatch.setenv("ICLR22_RECORD", "1")
    monkeypatch.setenv("ICLR22_PROFILE", "full")
    results.record("demo", {"acc": 0.9}, wall_time_s=100)
    monkeypatch.setenv("ICLR22_PROFILE", "quick")
    results.record("demo", {"acc": 0.7}, wall_time_s=10)
    data = results.load(tmp_path / "results" / "demo.json")
    assert data["metrics"] == {"acc": 0.9}
    kinds = {key.split("-")[0]: run["wall_time_s"] for key, run in data["runs"].items()}
    assert kinds == {"full": 100, "quick": 10}


@pytest.mark.parametrize(
    "metrics, paper, error",
    [
        ({"acc": float("nan")}, None, ValueError),
        ({"acc": "high"}, None, TypeError),
        ({"acc": True}, None, TypeError),
        ({"": 1.0}, None, ValueError),
        ({"acc": 1.0}, {"other": 1.0}, ValueError),
        ([("acc", 1.0)], None, TypeError),
    ],
)
def test_bad_metrics_are_rejected(metrics, paper, error):
    with pytest.raises(error):
        results.record("demo", metrics, paper=paper)


@pytest.mark.parametrize("chapter", ["", "../evil", "a b", None])
def test_bad_chapter_names_are_rejected(chapter):
    with pytest.raises(ValueError):
        results.record(chapter, {"acc": 1.0})


def test_load_rejects_malformed_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        results.load(bad)
    bad.write_text("[]")
    with pytest.raises(ValueError, match="runs"):
        results.load(bad)


def test_load_all_reads_every_chapter(monkeypatch, tmp_path):
    monkeypatch.setenv("ICLR22_RECORD", "1")
    results.record("one", {"a": 1.0})
    results.record("two", {"b": 2.0})
    assert sorted(results.load_all()) == ["one", "two"]
