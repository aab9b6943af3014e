"""The sweep report's plots (PNG): reward per method, the denoising curves, win-rates over best-of-K,
cost against quality and the relaxation's fidelity. Each returns the file name it wrote, or None when
the sweep has nothing to draw."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from entrgi.evaluation.metrics import mean_stderr
from entrgi.reporting.cost_vs_quality import CostPoint
from entrgi.reporting.loading import GUIDE, Setting, baseline_rows, trace_of
from entrgi.reporting.statistics import Z95, over_prompts, over_seeds
from entrgi.reporting.tables import row_name


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label_points(ax, xs, tops, texts, color) -> None:
    """Write each point's value just above its error bar (``tops``: the bar's upper ends)."""
    for x, top, text in zip(xs, tops, texts):
        ax.annotate(text, (x, top), textcoords="offset points", xytext=(0, 3), fontsize=7, color=color, ha="center",
                    va="bottom")


def _save(fig, title: str, out_dir: Path, name: str) -> str:
    """Give the figure its title (wrapped to its width) and one legend below the panels, and write it."""
    import textwrap

    plt = _pyplot()
    width, height = fig.get_size_inches()
    handles, labels = [], []
    for ax in fig.axes:  # one entry per label, whichever panel drew it
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    columns = max(1, min(len(labels), int(width / 2.6)))
    title_lines = textwrap.fill(title, width=int(width * 12))
    fig.suptitle(title_lines, fontsize=10)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    bottom = 0.22 * math.ceil(len(labels) / columns) / height
    top = 1 - (0.1 + 0.2 * (title_lines.count("\n") + 1)) / height  # below the figure's title
    fig.tight_layout(rect=(0, bottom, 1, top))
    fig.subplots_adjust(top=top - 0.3 / height)  # and the panels' own titles below that
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name


def plot_rewards(cells: dict, rows: list, benchmarks: list[str], out_dir: Path) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(max(4.5, 1.1 * len(rows) + 2.5) * len(benchmarks), 4.4),
                             squeeze=False)
    seeds = set()
    for ax, benchmark in zip(axes[0], benchmarks):
        present = [row for row in rows if (row, benchmark) in cells]
        for offset, (name, part, color) in enumerate([("top-1", lambda s: s.top1, "C0"),
                                                      ("mean@K", lambda s: s.mean_at_k, "C1")]):
            stats = [over_seeds(cells[(row, benchmark)], lambda s, r, part=part: part(s.scores(GUIDE, r)))
                     for row in present]
            seeds |= {s["seeds"] for s in stats}
            xs = [x + (offset - 0.5) * 0.3 for x in range(len(present))]
            ax.errorbar(xs, [s["mean"] for s in stats], yerr=[s["stderr"] for s in stats], fmt="o", capsize=4,
                        color=color, label=name)
            _label_points(ax, xs, [s["mean"] + s["stderr"] for s in stats],
                          [f"{s['mean']:.3f}{'†' if s['seeds'] == 1 else ''}" for s in stats], color)
        ax.set_xticks(range(len(present)), [row_name(row) for row in present], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(present) - 0.4)
        ax.margins(y=0.12)  # room for the values above the bars
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_title(benchmark)
        ax.set_ylabel("guiding reward")
    if seeds == {1}:
        over = "standard error over prompts (one seed)"
    elif 1 in seeds:
        over = "standard error over seeds († one seed: over prompts)"
    else:
        over = "standard error over seeds"
    return _save(fig, f"Guiding reward of the final answers per method: mean ± {over}", out_dir,
                 "reward_by_method.png")


def _band(settings: list[Setting], name: str) -> tuple[list[int], list[float], list[float]]:
    """Per denoising step: mean over prompts (each averaged over its seeds) and a 95% half-width."""
    by_step: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for setting in settings:
        for record in setting.records:
            for step, value in trace_of(record, name):
                by_step[step][record.id].append(value)
    steps = sorted(by_step)
    stats = [mean_stderr([sum(v) / len(v) for v in by_step[s].values()]) for s in steps]
    return steps, [s["mean"] for s in stats], [Z95 * s["stderr"] for s in stats]


# traced quantities that cannot leave a range: their normal-approximation bands are cut at its ends
RANGES = {"entropy_weight": (0.0, 1.0), "relaxation_correlation": (-1.0, 1.0)}


def band_figure(cells: dict, rows: list, benchmarks: list[str], names: tuple[str, ...]):
    """One column per benchmark, one panel per trace ``names[i]``: per row that traces ``names[0]`` (one
    colour each), the mean over denoising steps with its 95% band over prompts (see ``_band``; cut to
    the quantity's range, ``RANGES``). The figure and its axes, or None when no row traces it."""
    traced = [row for row in rows if any(_band(cells.get((row, b), []), names[0])[0] for b in benchmarks)]
    if not traced:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(names), len(benchmarks), figsize=(5.5 * len(benchmarks), 3.75 * len(names)),
                             squeeze=False, sharex="col")
    for col, benchmark in enumerate(benchmarks):
        for i, row in enumerate(traced):
            for ax, name in zip(axes[:, col], names):
                steps, means, half = _band(cells.get((row, benchmark), []), name)
                if steps:
                    low, high = RANGES.get(name, (-math.inf, math.inf))
                    ax.plot(steps, means, color=f"C{i}", label=row_name(row))
                    ax.fill_between(steps, [max(low, m - h) for m, h in zip(means, half)],
                                    [min(high, m + h) for m, h in zip(means, half)], color=f"C{i}", alpha=0.2,
                                    linewidth=0)
        axes[0][col].set_title(benchmark)
        axes[-1][col].set_xlabel("denoising step")
        axes[-1][col].xaxis.get_major_locator().set_params(integer=True)
    return fig, axes


def plot_denoising(cells: dict, rows: list, benchmarks: list[str], out_dir: Path) -> str | None:
    drawn = band_figure(cells, rows, benchmarks, ("guided_reward", "entropy_weight"))
    if drawn is None:
        return None
    fig, axes = drawn
    for col, benchmark in enumerate(benchmarks):
        bon = [row for row in rows if row in baseline_rows(cells) and (row, benchmark) in cells]
        for row in bon:
            for part, style, text in [(lambda s: s.mean_at_k, "--", "bon: mean reward of its K final samples"),
                                      (lambda s: s.top1, ":", "bon: reward of its top-1 final sample")]:
                stat = over_prompts(cells[(row, benchmark)], lambda s, r, part=part: part(s.scores(GUIDE, r)))
                axes[0][col].axhline(stat["mean"], color="black", linestyle=style, linewidth=1,
                                     label=text)
                if len(bon) > 1 and style == ":":  # which bon setting each top-1 line is (mean@K lines: alike)
                    axes[0][col].annotate(row[1], (1, stat["mean"]), xycoords=("axes fraction", "data"),
                                          xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom",
                                          fontsize=6)
        axes[0][col].set_ylabel("reward of the relaxed input\n(guiding reward model, mean over the K samples)",
                                fontsize=8)
        axes[1][col].set_ylabel("entropy weight w\n(mean over masked positions)", fontsize=8)
        axes[1][col].set_ylim(-0.05, 1.05)
    return _save(fig, "During guidance, per method: mean over prompts (each averaged over its seeds); "
                 "band: 95% interval over prompts (cut at the entropy weight's range, 0 to 1)", out_dir,
                 "denoising_curves.png")


def plot_relaxation(cells: dict, rows: list, benchmarks: list[str], out_dir: Path) -> str | None:
    """For each method run with ``diagnostics.relaxation=true``, per guided step: the gap between the
    relaxed score that drove the gradient and the hard sample's score as text, and their correlation."""
    drawn = band_figure(cells, rows, benchmarks, ("relaxation_gap", "relaxation_correlation"))
    if drawn is None:
        return None
    fig, axes = drawn
    for col in range(len(benchmarks)):
        axes[0][col].axhline(0, color="black", linewidth=0.6)
        axes[0][col].set_ylabel("relaxed - hard reward\n(mean over the inner steps and the K samples)", fontsize=8)
        axes[1][col].set_ylabel("correlation, relaxed vs hard reward\n(over a prompt's samples and inner steps)",
                                fontsize=8)
        axes[1][col].axhline(1, color="black", linewidth=0.6)  # relaxed and hard rank samples alike
        low, high = axes[1][col].get_ylim()  # zoomed on the data (correlations near 1 stay readable), within [-1, 1]
        axes[1][col].set_ylim(max(low, -1.02), min(high, 1.02))
    return _save(fig, "Fidelity of the relaxation, per method run with diagnostics.relaxation=true: mean over "
                 "prompts (each averaged over its seeds); band: 95% interval over prompts (cut at a correlation's "
                 "range, -1 to 1)", out_dir, "relaxation_fidelity.png")


def _log_axis_labels(axis, unit_format) -> None:
    """A log axis labelled at 1, 2 and 5 times each power of ten (a span within one decade still gets
    several labels), without minor labels."""
    import matplotlib.ticker

    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 5)))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: unit_format(v)))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _flops_label(value: float) -> str:
    exponent = math.floor(math.log10(value))
    mantissa = value / 10 ** exponent
    return f"{mantissa:.0f}e{exponent}" if abs(mantissa - round(mantissa)) < 1e-6 else f"{value:.1e}"


def plot_cost(benchmark: str, judge: str, points: list[CostPoint], out_dir: Path) -> str | None:
    """Top-1 reward and win-rate over bon against total FLOPs per prompt (dLLM and reward model: what a
    method spends, best-of-K's dLLM passes included) and against seconds per prompt, one point per method
    and setting; a method's settings (e.g. its K) joined by a line and named."""
    if not points:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex="col", squeeze=False)
    methods = list(dict.fromkeys(p.row[0] for p in points))
    for col, (x_of, xlabel, unit) in enumerate([
            (lambda p: p.flops["total"], "FLOPs per prompt (dLLM + reward model forward and backward)", _flops_label),
            (lambda p: p.seconds and p.seconds["mean"], "sampling seconds per prompt", lambda v: f"{v:g}")]):
        for r, (y_of, ylabel) in enumerate([(lambda p: p.top1, "top-1 guiding reward"),
                                            (lambda p: p.win_rate, "top-1 win-rate over bon (ties half)")]):
            ax = axes[r][col]
            for i, method in enumerate(methods):
                shown = sorted((p for p in points if p.row[0] == method and x_of(p) and y_of(p)), key=x_of)
                if not shown:
                    continue
                xs, stats = [x_of(p) for p in shown], [y_of(p) for p in shown]
                ys = [s.get("mean", s.get("rate")) for s in stats]
                lows, highs = ([s["low"] for s in stats], [s["high"] for s in stats]) if r else (
                    [y - s["stderr"] for y, s in zip(ys, stats)], [y + s["stderr"] for y, s in zip(ys, stats)])
                ax.errorbar(xs, ys, yerr=[[y - lo for y, lo in zip(ys, lows)], [hi - y for y, hi in zip(ys, highs)]],
                            fmt="o-", linewidth=0.8, capsize=3, color=f"C{i}", label=method)
                if len(shown) > 1:  # which setting is which point
                    for k, (x, y, p) in enumerate(zip(xs, ys, shown)):  # above and below in turn: neighbours apart
                        ax.annotate(p.row[1], (x, y), textcoords="offset points", xytext=(4, 5 - 10 * (k % 2)),
                                    fontsize=7, color=f"C{i}", ha="left", va="top" if k % 2 else "bottom")
            if r:
                ax.axhline(0.5, color="black", linestyle="--", linewidth=0.8)
            ax.set_xscale("log")
            _log_axis_labels(ax.xaxis, unit)
            ax.margins(x=0.15, y=0.1)  # room for the settings' names
            ax.set_ylabel(ylabel)
        axes[1][col].set_xlabel(xlabel)
    by = "the guiding reward model" if judge == GUIDE else f"{judge} (held out)"
    return _save(fig, f"{benchmark}: top-1 reward (± standard error) and win-rate over best-of-K judged by {by} "
                 "(95% bootstrap interval) against cost per prompt, one point per method and setting", out_dir,
                 f"cost_{benchmark}.png")


def plot_win_rates(cells: dict, rows: list, benchmarks: list[str], judges: list[str], judged: dict[tuple, dict],
                   out_dir: Path) -> str | None:
    """``judged``: (row, benchmark, judge) -> ``judge_stats``."""
    compared = [row for row in rows if row not in baseline_rows(cells)]
    rates = {(row, b, j): judged[(row, b, j)]["win_rate"]
             for row in compared for b in benchmarks for j in judges if (row, b) in cells}
    if not any(rates.values()):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(max(4.5, 1.3 * len(compared) + 2.5) * len(benchmarks), 4.4),
                             squeeze=False)
    width = 0.6 / len(judges)
    for ax, benchmark in zip(axes[0], benchmarks):
        for j, judge in enumerate(judges):
            points = [(x, rates.get((row, benchmark, judge))) for x, row in enumerate(compared)]
            points = [(x + (j - (len(judges) - 1) / 2) * width, r) for x, r in points if r]
            if not points:
                continue
            xs, stats = zip(*points)
            ys = [r["rate"] for r in stats]
            ax.errorbar(xs, ys, yerr=[[y - r["low"] for y, r in zip(ys, stats)], [r["high"] - y for y, r in zip(ys, stats)]],
                        fmt="o", capsize=4, color=f"C{j}",
                        label="guiding reward model" if judge == GUIDE else f"{judge} (held out)")
            _label_points(ax, xs, [r["high"] for r in stats], [f"{y:.3f}" for y in ys], f"C{j}")
        ax.axhline(0.5, color="black", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(compared)), [row_name(row) for row in compared], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(compared) - 0.4)
        ax.set_ylim(0, 1.1)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
        ax.set_ylabel("top-1 win-rate over best-of-K (ties half)")
        ax.set_title(benchmark)
    return _save(fig, "Top-1 win-rate over best-of-K by each judge, with 95% bootstrap intervals over prompts "
                 "(dashed: a tie)", out_dir, "win_rates.png")


