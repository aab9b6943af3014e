"""The report's statistics over settings: per-seed means, paired per-prompt comparisons with
best-of-K and their intervals, and the judge tables' columns."""

from __future__ import annotations

from collections import defaultdict

from entrgi.evaluation.metrics import mean_stderr, win_rate
from entrgi.reporting.loading import Setting

METHOD_ORDER = ["base", "bon", "expectation", "aps", "entrgi", "fk"]
Z95 = 1.96


def row_order(labels) -> list[tuple[str, str]]:
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(labels, key=lambda mv: (rank.get(mv[0], len(rank)), mv[0], mv[1]))


def over_seeds(settings: list[Setting], value) -> dict | None:
    """Mean +- standard error over seeds of the per-seed mean over prompts of ``value(setting, record)``;
    with one seed, the standard error over its prompts (``seeds: 1``)."""
    per_seed = [[value(s, r) for r in s.records] for s in settings]
    if not settings or any(v is None for values in per_seed for v in values):
        return None
    if len(settings) == 1:
        return {**mean_stderr(per_seed[0]), "seeds": 1}
    return {**mean_stderr([sum(v) / len(v) for v in per_seed]), "seeds": len(settings)}


def per_prompt(settings: list[Setting], value) -> list[float] | None:
    """``value(setting, record)`` per prompt, averaged over the seeds that drew it; None if any is missing."""
    by_prompt: dict[str, list[float]] = defaultdict(list)
    for setting in settings:
        for record in setting.records:
            measured = value(setting, record)
            if measured is None:
                return None
            by_prompt[record.id].append(measured)
    return [sum(v) / len(v) for v in by_prompt.values()] or None


def over_prompts(settings: list[Setting], value) -> dict | None:
    """Mean +- standard error over prompts (each averaged over its seeds first), with a normal 95%
    interval: the paired comparison (same prompts, same seeds) that separates a method from its
    baseline far more sharply than per-seed means do."""
    values = per_prompt(settings, value)
    if values is None:
        return None
    stat = mean_stderr(values)
    return {**stat, "low": stat["mean"] - Z95 * stat["stderr"], "high": stat["mean"] + Z95 * stat["stderr"]}


def win_over_prompts(settings: list[Setting], value) -> dict | None:
    """Win-rate (ties half) of per-prompt outcomes averaged over seeds, with its standard error and a
    seeded percentile-bootstrap 95% interval over prompts."""
    values = per_prompt(settings, value)
    if values is None:
        return None
    rate = win_rate(values)
    return {"rate": rate["rate"], "stderr": mean_stderr(values)["stderr"], "low": rate["low"],
            "high": rate["high"], "n": rate["n"]}

JUDGE_COLUMNS = [  # (results.csv metric, header, value of (scores) or None, needs a sound baseline)
    ("top1", "top-1", lambda s: s.top1, False),
    ("mean_at_k", "mean@K", lambda s: s.mean_at_k, False),
    ("baseline_top1", "bon top-1 (same prompts)", lambda s: s.baseline_top1, True),
    ("gain", "top-1 gain over bon [95% CI]", lambda s: None if s.baseline_top1 is None else s.top1 - s.baseline_top1,
     True),
]


def judge_stats(cell: list[Setting], judge: str) -> dict[str, dict | None]:
    def value_of(part):
        def value(setting, record):
            scores = setting.scores(judge, record)
            return None if scores is None else part(scores)
        return value

    sound = not any(s.problems for s in cell)
    stats = {metric: over_prompts(cell, value_of(part)) if sound or not paired else None
             for metric, _, part, paired in JUDGE_COLUMNS}
    stats["win_rate"] = win_over_prompts(cell, value_of(lambda s: s.outcome)) if sound else None
    return stats


def verdict(label: str, stats: dict) -> str | None:
    gain, win = stats["gain"], stats["win_rate"]
    if gain is None or win is None:
        return None
    moved = "raises" if gain["low"] > 0 else "lowers" if gain["high"] < 0 else "does not significantly change"
    side = "above" if win["low"] > 0.5 else "below" if win["high"] < 0.5 else "not distinguishable from"
    return (f"- `{label}` {moved} the top-1 score over bon (95% CI [{gain['low']:+.3f}, {gain['high']:+.3f}]); "
            f"its win-rate over bon is {side} 0.5 ([{win['low']:.3f}, {win['high']:.3f}]).")

