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


# --- claims, units and the machine a run depends on ------------------------------------------

def _claim(text="A beats B", ours=(3.0, 4.0, 5.0), baseline=(1.0, 2.0, 2.0)):
    from iclr22 import claims

    return claims.compare(text, list(ours), list(baseline), seeds=[0, 1, 2],
                          names=("student", "gcn"), setting="fixture, 3 seeds",
                          paper=claims.PaperValue(69.6, "Table 3", "Cora"), unit="points")


def test_record_writes_claims_that_check_clean_after_reading(monkeypatch, tmp_path):
    from iclr22 import claims

    monkeypatch.setenv("ICLR22_RECORD", "1")
    monkeypatch.setenv("ICLR22_PROFILE", "full")
    results.record("demo", {"acc": 0.5}, claims=[_claim(), _claim("B loses to A").to_dict()])
    data = results.load(tmp_path / "results" / "demo.json")
    assert [c["text"] for c in data["claims"]] == ["A beats B", "B loses to A"]
    assert data["claims"][0]["seeds"] == {"seed": [0, 1, 2], "student": [3.0, 4.0, 5.0],
                                          "gcn": [1.0, 2.0, 2.0]}
    assert data["claims"][0]["paper"]["source"] == "Table 3"
    assert all(claims.check_claim(c) == [] for c in data["claims"])
    (run,) = data["runs"].values()
    assert run["claims"] == data["claims"]


def test_inconsistent_claims_are_refused_before_anything_is_written(monkeypatch, tmp_path):
    monkeypatch.setenv("ICLR22_RECORD", "1")
    tampered = _claim().to_dict()
    tampered["verdict"] = "not reproduced"
    with pytest.raises(ValueError, match="inconsistent claims.*recorded verdict"):
        results.record("demo", {"acc": 0.5}, claims=[tampered])
    with pytest.raises(ValueError, match="unique"):
        results.record("demo", {"acc": 0.5}, claims=[_claim(), _claim()])
    assert not (tmp_path / "results").exists()


def test_record_stores_threads_and_cpu_capability(monkeypatch, tmp_path):
    import torch

    monkeypatch.setenv("ICLR22_RECORD", "1")
    monkeypatch.setenv("ICLR22_PROFILE", "full")
    run = results.record("demo", {"acc": 0.5})
    assert run["threads"] == torch.get_num_threads()
    assert run["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    data = results.load(tmp_path / "results" / "demo.json")
    assert data["threads"] == run["threads"] and data["cpu_capability"] == run["cpu_capability"]
    assert data["torch"] == torch.__version__ and data["schema"] == results.SCHEMA_VERSION


def test_units_and_better_are_optional_and_stored(monkeypatch, tmp_path):
    monkeypatch.setenv("ICLR22_RECORD", "1")
    monkeypatch.setenv("ICLR22_PROFILE", "full")
    results.record("plain", {"acc": 0.5})
    plain = results.load(tmp_path / "results" / "plain.json")
    assert plain["units"] == {} and plain["better"] == {}
    results.record("demo", {"acc": 50.0, "slowdown": 66.0},
                   units={"acc": "% accuracy", "slowdown": "x (student time / teacher time)"},
                   better={"acc": "higher", "slowdown": "lower"})
    data = results.load(tmp_path / "results" / "demo.json")
    assert data["units"]["slowdown"] == "x (student time / teacher time)"
    assert data["better"] == {"acc": "higher", "slowdown": "lower"}


@pytest.mark.parametrize("units, better, error", [
    ({"other": "%"}, None, ValueError),
    ({"acc": 3}, None, TypeError),
    (None, {"acc": "bigger"}, ValueError),
    (None, {"other": "higher"}, ValueError),
    (["acc"], None, TypeError),
])
def test_bad_units_and_better_are_rejected(units, better, error):
    with pytest.raises(error):
        results.record("demo", {"acc": 1.0}, units=units, better=better)
