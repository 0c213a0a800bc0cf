"""iclr22.claims on hand-made fixtures: the t interval, each verdict, pairing and checking."""

from __future__ import annotations

import copy
import json
import math

import pytest

from iclr22 import claims

#: t_{0.975, 4}, the 97.5 % quantile of Student's t with 4 degrees of freedom (n = 5 seeds),
#: from printed tables, so the interval is checked without scipy.
T_975_DF4 = 2.7764451051977987
#: t_{0.975, 2} (n = 3 seeds).
T_975_DF2 = 4.302652729749464
SEEDS5 = [0, 1, 2, 3, 4]
SETTING = "fixture data, 5 seeds"


def hand_interval(d: list[float], t: float) -> tuple[float, float, float]:
    """Mean and t interval computed by hand: m +- t * sd(ddof=1) / sqrt(n)."""
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1))
    half = t * sd / math.sqrt(n)
    return mean, mean - half, mean + half


# --- the interval ---------------------------------------------------------------------------


def test_t_interval_matches_a_hand_computation_for_five_seeds():
    d = [1.0, 2.0, 3.0, 2.0, 2.0]  # mean 2, sd sqrt(0.5)
    mean, low, high = claims.t_interval(d)
    assert mean == pytest.approx(2.0)
    assert (low, high) == pytest.approx((2 - T_975_DF4 * math.sqrt(0.5 / 5),
                                         2 + T_975_DF4 * math.sqrt(0.5 / 5)), rel=1e-12)
    assert (mean, low, high) == pytest.approx(hand_interval(d, T_975_DF4), rel=1e-12)
    assert low == pytest.approx(1.12201, abs=1e-5) and high == pytest.approx(2.87799, abs=1e-5)


def test_t_interval_three_seeds_and_zero_spread():
    d = [0.5, 1.5, 4.0]
    assert claims.t_interval(d) == pytest.approx(hand_interval(d, T_975_DF2), rel=1e-12)
    assert claims.t_interval([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)


def test_t_interval_widens_with_confidence():
    d = [0.1, 0.4, -0.2, 0.3, 0.0]
    _, low95, high95 = claims.t_interval(d)
    _, low99, high99 = claims.t_interval(d, confidence=0.99)
    assert low99 < low95 < high95 < high99


@pytest.mark.parametrize("bad", [[1.0], [], [1.0, float("nan")], [[1.0, 2.0], [3.0, 4.0]]])
def test_t_interval_needs_two_finite_values(bad):
    with pytest.raises(ValueError):
        claims.t_interval(bad)


# --- verdicts -------------------------------------------------------------------------------

BASE = [70.0, 71.0, 72.0, 73.0, 74.0]
UP = [b + d for b, d in zip(BASE, [1.0, 2.0, 3.0, 2.0, 2.0], strict=True)]        # d: clearly > 0
DOWN = [b - d for b, d in zip(BASE, [1.0, 2.0, 3.0, 2.0, 2.0], strict=True)]      # d: clearly < 0
MIXED = [b + d for b, d in zip(BASE, [1.0, -1.0, 2.0, -2.0, 0.5], strict=True)]   # interval holds 0


@pytest.mark.parametrize("ours, better, expected", [
    (UP, "higher", "reproduced"),
    (DOWN, "higher", "not reproduced"),
    (MIXED, "higher", "inconclusive"),
    (DOWN, "lower", "reproduced"),
    (UP, "lower", "not reproduced"),
    (MIXED, "lower", "inconclusive"),
])
def test_difference_verdicts(ours, better, expected):
    claim = claims.compare("A beats B", ours, BASE, seeds=SEEDS5, setting=SETTING,
                           better=better, unit="points")
    assert claim.verdict == expected
    d = [a - b for a, b in zip(ours, BASE, strict=True)]
    mean, low, high = hand_interval(d, T_975_DF4)
    assert (claim.ours.mean, claim.ours.low, claim.ours.high) == pytest.approx(
        (mean, low, high), abs=1e-6)
    assert claim.ours.num_seeds == 5 and claim.kind == "difference" and claim.threshold == 0.0
    assert claim.statistic == "ours - baseline"


def test_difference_against_a_margin_threshold():
    """d has mean 2 and interval [1.12, 2.88]: above 1 holds, above 1.5 is inconclusive."""
    assert claims.compare("A beats B by 1", UP, BASE, seeds=SEEDS5, setting=SETTING,
                          threshold=1.0).verdict == "reproduced"
    assert claims.compare("A beats B by 1.5", UP, BASE, seeds=SEEDS5, setting=SETTING,
                          threshold=1.5).verdict == "inconclusive"
    assert claims.compare("A beats B by 3", UP, BASE, seeds=SEEDS5, setting=SETTING,
                          threshold=3.0).verdict == "not reproduced"


def test_verdict_function_at_the_boundary_is_inconclusive():
    assert claims.verdict(0.0, 1.0, 0.0, "higher") == "inconclusive"
    assert claims.verdict(-1.0, 0.0, 0.0, "lower") == "inconclusive"
    with pytest.raises(ValueError, match="better"):
        claims.verdict(0.0, 1.0, 0.0, "bigger")


def test_ratio_claim_is_judged_on_the_log_scale():
    fast = [1.0, 1.2, 0.9, 1.1, 1.0]                  # seconds
    slow = [10.0, 9.0, 11.0, 10.5, 9.5]
    claim = claims.compare("B is 5 times slower than A", slow, fast, seeds=SEEDS5,
                           setting=SETTING, ratio=True, threshold=5.0, unit="x",
                           names=("slow", "fast"))
    logs = [math.log(s / f) for s, f in zip(slow, fast, strict=True)]
    mean, low, high = hand_interval(logs, T_975_DF4)
    assert claim.kind == "ratio" and claim.statistic == "slow / fast"
    assert claim.ours.mean == pytest.approx(math.exp(mean), abs=1e-6)  # geometric mean ratio
    assert (claim.ours.low, claim.ours.high) == pytest.approx((math.exp(low), math.exp(high)),
                                                              abs=1e-6)
    assert claim.verdict == "reproduced"  # exp(low) ~ 7.9 > 5
    assert claims.compare("B is 20 times slower", slow, fast, seeds=SEEDS5, setting=SETTING,
                          ratio=True, threshold=20.0).verdict == "not reproduced"
    assert claims.compare("A is faster than B", fast, slow, seeds=SEEDS5, setting=SETTING,
                          ratio=True, better="lower").verdict == "reproduced"


def test_ratio_claim_rejects_non_positive_values_and_threshold():
    with pytest.raises(ValueError, match="positive"):
        claims.compare("r", [1.0, 0.0], [1.0, 1.0], seeds=[0, 1], setting=SETTING, ratio=True)
    with pytest.raises(ValueError, match="positive"):
        claims.compare("r", [1.0, 2.0], [1.0, 1.0], seeds=[0, 1], setting=SETTING, ratio=True,
                       threshold=0.0)


@pytest.mark.parametrize("values, better, expected", [
    ([0.90, 0.92, 0.91], "higher", "reproduced"),
    ([0.60, 0.70, 0.65], "higher", "not reproduced"),
    ([0.70, 0.90, 0.82], "higher", "inconclusive"),
    ([0.60, 0.70, 0.65], "lower", "reproduced"),
])
def test_level_claims(values, better, expected):
    paper = claims.PaperValue(0.85, "Table 2", "Cora")
    claim = claims.at_least("accuracy of at least 0.8", values, 0.8, seeds=[0, 1, 2],
                            setting=SETTING, better=better, paper=paper, name="acc")
    assert claim.verdict == expected and claim.kind == "level" and claim.statistic == "acc"
    assert (claim.ours.mean, claim.ours.low, claim.ours.high) == pytest.approx(
        hand_interval(values, T_975_DF2), abs=1e-6)
    assert claim.paper == {"value": 0.85, "source": "Table 2", "dataset": "Cora",
                           "threshold": 0.8}


# --- pairing and input errors -----------------------------------------------------------------


def test_unequal_lengths_do_not_pair():
    with pytest.raises(ValueError, match="pair"):
        claims.compare("x", [1.0, 2.0, 3.0], [1.0, 2.0], seeds=[0, 1, 2], setting=SETTING)


def test_seeds_must_match_the_values_and_be_distinct():
    with pytest.raises(ValueError, match="pair"):
        claims.compare("x", [1.0, 2.0, 3.0], [0.0, 1.0, 2.0], seeds=[0, 1], setting=SETTING)
    with pytest.raises(ValueError, match="distinct"):
        claims.compare("x", [1.0, 2.0, 3.0], [0.0, 1.0, 2.0], seeds=[0, 1, 1], setting=SETTING)


def test_one_seed_is_not_enough():
    with pytest.raises(ValueError, match=">= 2 seeds"):
        claims.compare("x", [1.0], [0.0], seeds=[0], setting=SETTING)
    with pytest.raises(ValueError, match=">= 2 seeds"):
        claims.at_least("x", [1.0], 0.5, seeds=[0], setting=SETTING)


def test_a_claim_needs_text_and_setting_and_a_known_direction():
    with pytest.raises(ValueError, match="setting"):
        claims.compare("x", UP, BASE, seeds=SEEDS5, setting="")
    with pytest.raises(ValueError, match="text"):
        claims.compare("", UP, BASE, seeds=SEEDS5, setting=SETTING)
    with pytest.raises(ValueError, match="better"):
        claims.compare("x", UP, BASE, seeds=SEEDS5, setting=SETTING, better="more")


@pytest.mark.parametrize("args", [(float("nan"), "T1", "Cora"), (True, "T1", "Cora"),
                                  ("69", "T1", "Cora"), (1.0, "", "Cora"), (1.0, "T1", "")])
def test_paper_value_checks(args):
    with pytest.raises((TypeError, ValueError)):
        claims.PaperValue(*args)


def test_over_seeds_collects_paired_values_and_rejects_drift():
    runs = claims.over_seeds(lambda seed: {"a": seed + 1.0, "b": 2.0 * seed}, [0, 1, 2])
    assert runs == {"a": [1.0, 2.0, 3.0], "b": [0.0, 2.0, 4.0]}
    with pytest.raises(ValueError, match="seed 1"):
        claims.over_seeds(lambda seed: {"a": 1.0} if seed == 0 else {"b": 1.0}, [0, 1])


# --- recorded form, checking and summary ----------------------------------------------------


def cold_brew_like() -> claims.Claim:
    return claims.compare(
        "The student beats a GCN on isolated nodes", UP, BASE, seeds=SEEDS5,
        names=("student", "gcn"), setting=SETTING, unit="points",
        paper=claims.PaperValue(69.62, "Table 3", "Cora"),
        paper_baseline=claims.PaperValue(58.02, "Table 3", "Cora"))


def test_to_dict_round_trip_through_json_checks_clean():
    entry = json.loads(json.dumps(cold_brew_like().to_dict()))
    assert {"text", "verdict", "seeds", "ours", "paper", "setting"} <= set(entry)
    assert entry["seeds"] == {"seed": SEEDS5, "student": UP, "gcn": BASE}
    assert entry["paper"]["statistic"] == pytest.approx(69.62 - 58.02)
    assert entry["paper"]["source"] == "Table 3" and entry["paper"]["dataset"] == "Cora"
    assert entry["ours"]["interval"] == claims.INTERVAL_NAME
    assert claims.check_claim(entry) == []
    assert claims.as_dicts([cold_brew_like(), entry]) == [entry, entry]


def test_check_claim_survives_sorted_keys():
    """results files are written with sorted keys: 'gcn' then 'seed' then 'student'."""
    entry = json.loads(json.dumps(cold_brew_like().to_dict(), sort_keys=True))
    assert list(entry["seeds"]) == ["gcn", "seed", "student"]
    assert entry["sides"] == ["student", "gcn"] and claims.check_claim(entry) == []
    del entry["sides"]  # without it the order comes from the statistic, "student - gcn"
    assert claims.check_claim(entry) == []


def test_check_claim_catches_a_tampered_verdict():
    entry = cold_brew_like().to_dict()
    entry["verdict"] = "not reproduced"
    (problem,) = claims.check_claim(entry)
    assert "recorded verdict 'not reproduced'" in problem and "'reproduced'" in problem


def test_check_claim_catches_a_tampered_mean_and_tampered_seeds():
    entry = cold_brew_like().to_dict()
    entry["ours"]["mean"] += 0.5
    (problem,) = claims.check_claim(entry)
    assert "ours.mean" in problem
    entry = cold_brew_like().to_dict()
    entry["seeds"]["student"] = list(DOWN)  # numbers changed, verdict and interval kept
    problems = claims.check_claim(entry)
    assert any("recorded verdict" in p for p in problems)
    assert any("ours.low" in p for p in problems)


def test_check_claim_reports_missing_keys_and_unusable_values():
    entry = cold_brew_like().to_dict()
    del entry["verdict"]
    assert "lacks ['verdict']" in claims.check_claim(entry)[0]
    entry = cold_brew_like().to_dict()
    entry["seeds"]["gcn"] = BASE[:3]
    assert "unusable" in claims.check_claim(entry)[0]


def test_check_claim_for_ratio_and_level_claims():
    ratio = claims.compare("r", [10.0, 9.0, 11.0], [1.0, 1.2, 0.9], seeds=[0, 1, 2],
                           setting=SETTING, ratio=True, threshold=2.0).to_dict()
    level = claims.at_least("l", [0.9, 0.92, 0.91], 0.8, seeds=[0, 1, 2],
                            setting=SETTING).to_dict()
    assert claims.check_claim(ratio) == [] and claims.check_claim(level) == []
    flipped = copy.deepcopy(ratio)
    flipped["threshold"] = 50.0
    assert "give 'not reproduced'" in claims.check_claim(flipped)[0]


def test_summary_counts_every_verdict():
    made = [claims.compare(f"c{i}", ours, BASE, seeds=SEEDS5, setting=SETTING)
            for i, ours in enumerate([UP, UP, DOWN, MIXED, UP])]
    assert claims.summary(claims.as_dicts(made)) == {"reproduced": 3, "inconclusive": 1,
                                                      "not reproduced": 1}
    assert claims.summary([]) == {"reproduced": 0, "inconclusive": 0, "not reproduced": 0}


def test_table_and_descriptions():
    frame = claims.table([cold_brew_like()])
    assert list(frame.columns) == ["claim", "paper", "ours", "our setting", "verdict"]
    row = frame.iloc[0]
    assert row["verdict"] == "reproduced" and row["our setting"] == SETTING
    assert row["ours"].startswith("+2 points [") and row["ours"].endswith(", 5 seeds")
    assert row["paper"] == "student - gcn = 11.6 points (69.62 vs 58.02); Table 3, Cora"
    no_paper = claims.at_least("l", [0.9, 0.92, 0.91], 0.8, seeds=[0, 1, 2], setting=SETTING)
    assert claims.describe_paper(no_paper.to_dict()) == "–"


def test_describe_ours_for_a_ratio_names_the_factor_once():
    entry = claims.compare("r", [10.0, 9.0, 11.0], [1.0, 1.0, 1.0], seeds=[0, 1, 2],
                           setting=SETTING, ratio=True, unit="x").to_dict()
    assert claims.describe_ours(entry).startswith("×9.97 [")


@pytest.mark.parametrize("key, value", [("better", "bigger"), ("threshold", "high"),
                                        ("kind", "product"), ("seeds", [1, 2, 3])])
def test_check_claim_reports_bad_fields_instead_of_raising(key, value):
    entry = cold_brew_like().to_dict()
    entry[key] = value
    (problem,) = claims.check_claim(entry)
    assert "unusable" in problem


def test_check_claim_ratio_with_a_non_positive_threshold_is_unusable():
    entry = claims.compare("r", [10.0, 9.0, 11.0], [1.0, 1.2, 0.9], seeds=[0, 1, 2],
                           setting=SETTING, ratio=True).to_dict()
    entry["threshold"] = 0.0
    assert "unusable" in claims.check_claim(entry)[0]
