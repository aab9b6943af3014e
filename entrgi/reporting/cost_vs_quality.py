"""Cost against quality: FLOPs per prompt by the cost model and seconds per prompt, each relative to
best-of-K of the same setup, beside the top-1 reward and win-rate they bought."""

from __future__ import annotations

from dataclasses import dataclass

from entrgi.costs import unguided_sample_flops
from entrgi.reporting.loading import GUIDE, Setting, baseline_rows
from entrgi.reporting.statistics import over_prompts, over_seeds
from entrgi.reporting.tables import markdown_table, row_name


def flops_of(summary: dict) -> dict | None:
    """FLOPs per prompt by the cost model (``dllm``, ``reward_forward``, ``reward_backward``, ``total``)
    and, as ``bon``, those of best-of-K of the same setup (K unguided samples); None for a summary
    written before jobs recorded FLOPs."""
    if "flops" not in summary:
        return None
    return {**summary["flops"]["per_prompt"], "bon": summary["num_samples"] * unguided_sample_flops(summary)}


def setting_flops(setting: Setting) -> dict | None:
    """FLOPs per prompt of a setting (see ``flops_of``), its shards weighted by their prompts; None if
    a shard's summary has none."""
    flops = [flops_of(summary) for summary in setting.summaries]
    if not flops or None in flops:
        return None
    weights = [len(summary["prompt_ids"]) for summary in setting.summaries]
    return {k: sum(f[k] * w for f, w in zip(flops, weights)) / sum(weights) for k in flops[0]}


def seconds_per_prompt(settings: list[Setting]) -> dict | None:
    return over_prompts(settings, lambda s, r: r.cost.get("seconds"))  # the prompt's share of its batch's time


@dataclass
class CostPoint:
    """One method and setting on one benchmark: its cost per prompt and what it bought."""

    row: tuple[str, str]
    flops: dict  # per prompt, mean over seeds (see ``flops_of``)
    seconds: dict | None  # per prompt: mean over prompts (each averaged over its seeds), stderr, interval
    relative_seconds: float | None  # over the sweep's bon run that sampled this setting's baseline
    top1: dict | None  # guiding reward, as in the top-1 table
    win_rate: dict | None  # over bon, by the plot's judge

    @property
    def relative_flops(self) -> float:
        return self.flops["total"] / self.flops["bon"]


def cost_points(cells: dict, rows: list, benchmark: str, held_out: list[str],
                judged: dict[tuple, dict]) -> tuple[str, list[CostPoint]]:
    """The judge of the win-rates (the first held-out judge that scored this benchmark, else the guiding
    reward model) and one point per row on ``benchmark`` whose summaries record FLOPs. ``judged``:
    (row, benchmark, judge) -> ``judge_stats``."""
    flops = {row: [setting_flops(s) for s in cells[(row, benchmark)]] for row in rows if (row, benchmark) in cells}
    present = [row for row in flops if all(flops[row])]
    baseline = baseline_rows(cells)
    for judge in [*held_out, GUIDE]:
        wins = {row: judged[(row, benchmark, judge)]["win_rate"] if row not in baseline else None for row in present}
        if any(wins.values()):
            break
    bons = {s.baseline.get("digest"): s for row in present if row in baseline for s in cells[(row, benchmark)]}
    points = []
    for row in present:
        cell = cells[(row, benchmark)]
        seconds = seconds_per_prompt(cell)
        bon = [bons[d] for d in sorted({s.baseline.get("digest") for s in cell} & set(bons))]
        bon_seconds = seconds_per_prompt(bon) if bon else None
        points.append(CostPoint(
            row, {k: sum(f[k] for f in flops[row]) / len(flops[row]) for k in flops[row][0]}, seconds,
            seconds["mean"] / bon_seconds["mean"] if seconds and bon_seconds and bon_seconds["mean"] else None,
            over_seeds(cell, lambda s, r: s.scores(GUIDE, r).top1), wins[row]))
    return judge, points


def cost_relative_table(points_by_benchmark: dict[str, list[CostPoint]]) -> str | None:
    """FLOPs and seconds per prompt with the columns "cost relative to bon"; None without FLOPs."""
    table = [[row_name(p.row), benchmark, *(f"{p.flops[k]:.3g}" for k in ("dllm", "reward_forward", "reward_backward",
                                                                           "total")),
              f"{p.seconds['mean']:.2f}" if p.seconds else "—", f"{p.relative_flops:.2f}",
              "—" if p.relative_seconds is None else f"{p.relative_seconds:.2f}"]
             for benchmark, points in points_by_benchmark.items() for p in points]
    if not table:
        return None
    return ("## Cost relative to bon\n\nFLOPs per prompt by the cost model (docs/cost-model.md; mean over seeds) "
            "and sampling seconds per prompt (mean over prompts). Cost relative to bon: over best-of-K of the same "
            "setup and K, by FLOPs (K unguided samples by the same cost model) and by seconds (the sweep's bon run "
            "that sampled this setting's baseline, when there is one; compare seconds only on one device).\n\n"
            + markdown_table(["method", "benchmark", "dLLM FLOPs", "reward fwd FLOPs", "reward bwd FLOPs",
                              "total FLOPs", "seconds", "cost relative to bon (FLOPs)",
                              "cost relative to bon (seconds)"], table))


