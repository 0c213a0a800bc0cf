"""Claims: a paper's comparison, judged over seeds with an interval and a computed verdict.

A chapter never judges a paper on one run. It states each headline comparison of the paper
as a :class:`Claim` and evaluates it on several seeds, *paired* (both sides of a comparison
see the same seeds, splits and data draws)::

    runs = claims.over_seeds(run_one, seeds=range(5))   # {"student": [...], "gcn": [...]}
    claim = claims.compare(
        "The Cold Brew student beats a GCN on isolated nodes",
        runs["student"], runs["gcn"], seeds=range(5),
        paper=PAPER["isolation_acc/student"], paper_baseline=PAPER["isolation_acc/gcn"],
        setting="WordNet verbs, 40 epochs", unit="points")

The statistic
-------------
For seeds ``s = 1..n`` let ``d_s`` be the per-seed statistic on the paper's scale:

* ``compare(a, b)``:         ``d_s = a_s - b_s``                  (a difference, paired)
* ``compare(a, b, ratio=True)``: ``d_s = log(a_s / b_s)``          (a ratio, on a log scale)
* ``at_least(a, threshold)``: ``d_s = a_s``                         (a level)

Our estimate is the mean ``m = 1/n sum_s d_s`` and its 95 % **Student-t** interval
``m +- t_{0.975, n-1} * sd(d) / sqrt(n)`` (``sd`` with ``n - 1`` in the denominator; for a
ratio the interval is computed on the log scale and exponentiated, i.e. it is an interval on
the geometric-mean ratio). The t interval is exact for normal differences and, with the
3-10 seeds a CPU budget allows, is wider (more honest) than a percentile bootstrap, which
under-covers badly at such ``n``.

The verdict
-----------
The paper's side of the claim is "above ``threshold``" (``better="higher"``) or "below
``threshold``" (``better="lower"``); ``threshold`` is 0 for a difference, 1 for a ratio and
the stated level for :func:`at_least`. Then

* ``reproduced``     when the whole interval lies on the paper's side,
* ``not reproduced`` when the whole interval lies on the other side,
* ``inconclusive``   otherwise (the interval contains the threshold).

Verdicts are computed here, never typed; :func:`check_claim` recomputes a recorded claim
from its per-seed values and names any disagreement (``tools/check_notebooks.py`` runs it
over ``results/*.json``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

VERDICTS = ("reproduced", "inconclusive", "not reproduced")
KINDS = ("difference", "ratio", "level")
CONFIDENCE = 0.95
MIN_SEEDS = 2
INTERVAL_NAME = "95% Student-t interval over seeds"


@dataclass(frozen=True)
class PaperValue:
    """One number the paper reports: the value, where it is (table/figure) and on what data.

    Each paper module keeps its numbers once, e.g.
    ``PAPER = {"isolation_acc/student": PaperValue(69.62, "Table 3", "Cora")}``.
    """

    value: float
    source: str
    dataset: str

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise TypeError(f"PaperValue.value must be a number, got {self.value!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"PaperValue.value must be finite, got {self.value}")
        if not self.source or not self.dataset:
            raise ValueError("PaperValue needs a source (table/figure) and a dataset")


@dataclass(frozen=True)
class Estimate:
    """Mean of the per-seed statistic and its 95 % interval (on the claim's scale)."""

    mean: float
    low: float
    high: float
    num_seeds: int
    interval: str = INTERVAL_NAME


@dataclass
class Claim:
    """A paper's comparison, evaluated paired over seeds. Build it with :func:`compare` or
    :func:`at_least`; :meth:`to_dict` is what ``results/<chapter>.json`` stores."""

    text: str
    kind: str
    better: str
    threshold: float
    seeds: list[int]
    values: dict[str, list[float]]
    ours: Estimate
    verdict: str
    paper: dict[str, Any]
    setting: str
    unit: str = ""
    statistic: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``text, verdict, seeds, ours, paper, setting`` and the rest.

        ``sides`` names the per-seed lists of ``seeds`` in statistic order (ours first):
        the results files are written with sorted keys, which would lose that order.
        """
        out = asdict(self)
        out["seeds"] = {"seed": list(self.seeds), **{k: list(v) for k, v in self.values.items()}}
        out["sides"] = list(self.values)
        del out["values"]
        return out


# --- the statistic, the interval and the verdict -------------------------------------------


def _check_values(name: str, values: Iterable[float]) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    if array.ndim != 1 or array.size < MIN_SEEDS:
        raise ValueError(f"{name} needs one value per seed for >= {MIN_SEEDS} seeds, "
                         f"got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has non-finite values: {array.tolist()}")
    return array


def _check_seeds(seeds: Iterable[int], num_values: int) -> list[int]:
    seeds = [int(s) for s in seeds]
    if len(seeds) != num_values:
        raise ValueError(f"{len(seeds)} seeds for {num_values} values per side: they must pair")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return seeds


def _check_better(better: str) -> None:
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")


def per_seed_statistic(kind: str, ours: Sequence[float],
                       baseline: Sequence[float] | None = None) -> np.ndarray:
    """``d_s`` of the module docstring: a - b, log(a / b) or a, one per seed. Shapes: (n,)."""
    a = _check_values("ours", ours)
    if kind == "level":
        return a
    b = _check_values("baseline", baseline if baseline is not None else [])
    if a.shape != b.shape:
        raise ValueError(f"ours {a.shape} and baseline {b.shape} must pair seed by seed")
    if kind == "difference":
        return a - b
    if kind == "ratio":
        if np.any(a <= 0) or np.any(b <= 0):
            raise ValueError("a ratio claim needs positive values on both sides")
        return np.log(a / b)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float,
                                                                                float]:
    """Mean and Student-t interval ``m +- t_{(1+c)/2, n-1} sd / sqrt(n)`` of ``values``."""
    d = _check_values("values", values)
    mean = float(d.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return mean, mean - half, mean + half


def verdict(low: float, high: float, threshold: float, better: str) -> str:
    """``reproduced`` / ``not reproduced`` / ``inconclusive`` from where the interval lies."""
    _check_better(better)
    above, below = low > threshold, high < threshold
    if better == "higher":
        return "reproduced" if above else "not reproduced" if below else "inconclusive"
    return "reproduced" if below else "not reproduced" if above else "inconclusive"


def estimate(kind: str, d: np.ndarray) -> Estimate:
    """Mean and interval of ``d`` on the claim's scale (exponentiated for a ratio)."""
    mean, low, high = t_interval(d)
    if kind == "ratio":
        mean, low, high = math.exp(mean), math.exp(low), math.exp(high)
    return Estimate(round(mean, 6), round(low, 6), round(high, 6), int(d.size))


# --- building claims -----------------------------------------------------------------------


def _paper_dict(paper: PaperValue | None, paper_baseline: PaperValue | None, kind: str,
                threshold: float) -> dict[str, Any]:
    if paper is None:
        return {}
    out: dict[str, Any] = {"value": paper.value, "source": paper.source, "dataset": paper.dataset}
    if paper_baseline is not None:
        out["baseline"] = paper_baseline.value
        if kind == "difference":
            out["statistic"] = round(paper.value - paper_baseline.value, 6)
        elif kind == "ratio" and paper_baseline.value > 0:
            out["statistic"] = round(paper.value / paper_baseline.value, 6)
    elif kind == "level":
        out["threshold"] = threshold
    return out


def _build(text: str, kind: str, ours: Sequence[float], baseline: Sequence[float] | None, *,
           names: tuple[str, ...], seeds: Iterable[int], better: str, threshold: float,
           paper: PaperValue | None, paper_baseline: PaperValue | None, setting: str,
           unit: str, notes: str) -> Claim:
    if not text or not setting:
        raise ValueError("a claim needs its text and our setting (dataset and budget)")
    _check_better(better)
    d = per_seed_statistic(kind, ours, baseline)
    seed_list = _check_seeds(seeds, d.size)
    est = estimate(kind, d)
    raw_threshold = math.log(threshold) if kind == "ratio" else threshold
    _, low, high = t_interval(d)
    values = {names[0]: [float(v) for v in ours]}
    if baseline is not None:
        values[names[1]] = [float(v) for v in baseline]
    op = {"difference": " - ", "ratio": " / "}.get(kind, "")
    statistic = names[0] + (op + names[1] if kind != "level" else "")
    return Claim(text=text, kind=kind, better=better, threshold=float(threshold),
                 seeds=seed_list, values=values, ours=est,
                 verdict=verdict(low, high, raw_threshold, better),
                 paper=_paper_dict(paper, paper_baseline, kind, threshold),
                 setting=setting, unit=unit, statistic=statistic, notes=notes)


def compare(text: str, ours: Sequence[float], baseline: Sequence[float], *,
            seeds: Iterable[int], setting: str, names: tuple[str, str] = ("ours", "baseline"),
            better: str = "higher", ratio: bool = False, threshold: float | None = None,
            paper: PaperValue | None = None, paper_baseline: PaperValue | None = None,
            unit: str = "", notes: str = "") -> Claim:
    """"A beats B" (``better="higher"``: a - b > threshold; ``"lower"``: a - b < threshold),
    or with ``ratio=True`` "A is k times B" (a / b above or below ``threshold``, default 1).

    ours, baseline: (n,) per-seed values of the two sides, paired seed by seed.
    """
    kind = "ratio" if ratio else "difference"
    if threshold is None:
        threshold = 1.0 if ratio else 0.0
    if ratio and threshold <= 0:
        raise ValueError(f"a ratio threshold must be positive, got {threshold}")
    return _build(text, kind, ours, baseline, names=names, seeds=seeds, better=better,
                  threshold=threshold, paper=paper, paper_baseline=paper_baseline,
                  setting=setting, unit=unit, notes=notes)


def at_least(text: str, ours: Sequence[float], threshold: float, *, seeds: Iterable[int],
             setting: str, name: str = "ours", better: str = "higher",
             paper: PaperValue | None = None, unit: str = "", notes: str = "") -> Claim:
    """"metric >= threshold" (``better="higher"``) or "metric <= threshold" (``"lower"``).

    ours: (n,) per-seed values.
    """
    return _build(text, "level", ours, None, names=(name,), seeds=seeds, better=better,
                  threshold=threshold, paper=paper, paper_baseline=None, setting=setting,
                  unit=unit, notes=notes)


def over_seeds(run: Callable[[int], Mapping[str, float]],
               seeds: Iterable[int]) -> dict[str, list[float]]:
    """Call ``run(seed)`` for each seed; return ``{metric: [value per seed]}``.

    Every call must return the same metric names (the runs are paired by construction).
    """
    seeds = list(seeds)
    table: dict[str, list[float]] = {}
    for i, seed in enumerate(seeds):
        metrics = dict(run(seed))
        if i and set(metrics) != set(table):
            raise ValueError(f"seed {seed} returned metrics {sorted(metrics)}, "
                             f"the first seed {sorted(table)}")
        for key, value in metrics.items():
            table.setdefault(key, []).append(float(value))
    return table


# --- checking recorded claims --------------------------------------------------------------

REQUIRED_KEYS = ("text", "verdict", "seeds", "ours", "paper", "setting", "kind", "better",
                 "threshold", "statistic")


def _sides(entry: Mapping[str, Any]) -> list[str]:
    """Names of the per-seed lists in statistic order: ``sides``, else parsed from
    ``statistic`` (``"a - b"``, ``"a / b"`` or ``"a"``); never the (sorted) key order."""
    if "sides" in entry:
        return list(entry["sides"])
    op = {"difference": " - ", "ratio": " / "}.get(entry["kind"])
    return entry["statistic"].split(op, 1) if op else [entry["statistic"]]


def check_claim(entry: Mapping[str, Any]) -> list[str]:
    """Problems with one recorded claim (empty when it is consistent).

    Recomputes the statistic, the interval and the verdict from the per-seed values and
    compares them with what was recorded.
    """
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        return [f"claim {entry.get('text', '?')!r} lacks {missing}"]
    name = entry["text"]
    if entry["verdict"] not in VERDICTS:
        return [f"claim {name!r}: verdict {entry['verdict']!r} is not one of {VERDICTS}"]
    try:
        sides = _sides(entry)
        ours = entry["seeds"][sides[0]]
        baseline = entry["seeds"][sides[1]] if len(sides) > 1 else None
        d = per_seed_statistic(entry["kind"], ours, baseline)
        _check_seeds(entry["seeds"]["seed"], d.size)
        _check_better(entry["better"])
        threshold = float(entry["threshold"])
        raw = math.log(threshold) if entry["kind"] == "ratio" else threshold
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        return [f"claim {name!r}: per-seed values unusable ({err})"]
    _, low, high = t_interval(d)
    problems = []
    expected = verdict(low, high, raw, entry["better"])
    if expected != entry["verdict"]:
        problems.append(f"claim {name!r}: recorded verdict {entry['verdict']!r} but its seeds "
                        f"give {expected!r}")
    est = estimate(entry["kind"], d)
    recorded = entry["ours"]
    for key in ("mean", "low", "high"):
        if not math.isclose(float(recorded.get(key, math.nan)), getattr(est, key),
                            rel_tol=1e-4, abs_tol=1e-6):
            problems.append(f"claim {name!r}: recorded ours.{key}={recorded.get(key)} but its "
                            f"seeds give {getattr(est, key)}")
    return problems


def summary(claims: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``{verdict: count}`` over recorded claims, every verdict present (zeros included)."""
    counts = dict.fromkeys(VERDICTS, 0)
    for entry in claims:
        counts[entry["verdict"]] += 1
    return counts


def as_dicts(claims: Iterable[Claim | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Claims as JSON-ready dicts (a :class:`Claim` or an already recorded dict)."""
    return [c.to_dict() if isinstance(c, Claim) else dict(c) for c in claims]


def _fmt(value: float, unit: str) -> str:
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def describe_ours(entry: Mapping[str, Any]) -> str:
    """``"+1.9 points [−0.5, 4.3], 5 seeds"`` for a recorded claim (its statistic's scale)."""
    ours, unit = entry["ours"], entry.get("unit", "")
    sign = "+" if entry["kind"] == "difference" and ours["mean"] > 0 else ""
    prefix = "×" if entry["kind"] == "ratio" else ""
    if prefix and unit.strip().lower() in ("x", "×", "times"):
        unit = ""  # "×2.03", not "×2.03 x"
    return (f"{prefix}{sign}{_fmt(ours['mean'], unit)} [{ours['low']:.3g}, {ours['high']:.3g}]"
            f", {ours['num_seeds']} seeds")


def describe_paper(entry: Mapping[str, Any]) -> str:
    """The paper's number(s) for a recorded claim, with table/figure and dataset."""
    paper = entry.get("paper") or {}
    if not paper:
        return "–"
    unit = entry.get("unit", "")
    if "statistic" in paper:
        head = f"{entry['statistic']} = {_fmt(paper['statistic'], unit)}"
        head += f" ({paper['value']:g} vs {paper['baseline']:g})"
    else:
        head = _fmt(paper["value"], unit)
    return f"{head}; {paper['source']}, {paper['dataset']}"


def table(claims: Iterable[Claim | Mapping[str, Any]]):
    """A pandas DataFrame of claims for a chapter: claim, paper, ours, setting, verdict."""
    import pandas as pd

    rows = [{"claim": c["text"], "paper": describe_paper(c), "ours": describe_ours(c),
             "our setting": c["setting"], "verdict": c["verdict"]} for c in as_dicts(claims)]
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "our setting", "verdict"])
