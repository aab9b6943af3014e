"""The report of post-training runs: a table of the last held-out evaluation and the learning curves.

    python -m entrgi.report outputs/train_sweeps/<name>    # any directory holding entrgi.train runs

Each run's ``eval.jsonl`` holds, per evaluated step and mode (unguided, guided), the held-out summary
(``entrgi.training.evaluation.summarize_held_out``): the table shows the last step's, the plot the
held-out top-1 reward against steps, one line per run, unguided solid and guided dashed.
"""

from __future__ import annotations

import json
from pathlib import Path

from entrgi.bookkeeping.storage import read_jsonl, write_atomic
from entrgi.reporting.tables import markdown_table
from entrgi.training.evaluation import MODES


def training_runs(root: Path) -> list[Path]:
    """The entrgi.train run directories under ``root`` (or ``root`` itself): those with an ``eval.jsonl``."""
    return sorted(path.parent for path in Path(root).rglob("eval.jsonl"))


def run_label(run: Path) -> str:
    return run.name  # unique: a function of the settings, or the directory a run was given


def stat_cell(stats: dict | None) -> str:
    if not stats:
        return "-"
    if "rate" in stats:
        return f"{stats['rate']:.3f} [{stats['low']:.3f}, {stats['high']:.3f}]"
    return f"{stats['mean']:+.3f} ± {stats['stderr']:.3f}"


def curves(run: Path) -> dict[str, list[tuple[int, dict]]]:
    """Per mode: (step, summary) for every evaluated step, in step order (the last line of a step wins)."""
    by_key = {(r["mode"], r["step"]): r["summary"] for r in read_jsonl(run / "eval.jsonl")}
    return {mode: sorted((step, s) for (m, step), s in by_key.items() if m == mode) for mode in MODES}


def table(series_of: dict[Path, dict]) -> str:
    """``series_of``: run -> its :func:`curves`."""
    header = ["run", "step"] + [f"{mode} {what}" for mode in MODES for what in
                                ("top-1 reward", "mean@K reward", "win-rate vs untrained", "judge", "judge win-rate")]
    rows = []
    for run, series in series_of.items():
        if not series["unguided"]:
            continue
        step = series["unguided"][-1][0]
        last = {mode: dict(series[mode]).get(step, {}) for mode in MODES}
        cells = [run_label(run), str(step)]
        for mode in MODES:
            s = last[mode]
            cells += [stat_cell(s.get(k)) for k in ("top1_reward", "mean_reward", "win_rate_reward", "judge",
                                                 "win_rate_judge")]
        rows.append(cells)
    return markdown_table(header, rows)


def plot_curves(series_of: dict[Path, dict], path: Path) -> None:
    """Held-out top-1 reward (and the judge, when there is one) against training steps; ``series_of``:
    run -> its :func:`curves`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("top1_reward", "held-out top-1 reward")]
    if any("judge" in s for series in series_of.values() for _, s in series["unguided"]):
        metrics.append(("judge", "held-out judge (top-1)"))
    figure, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for (metric, title), ax in zip(metrics, axes[0]):
        for i, (run, series) in enumerate(series_of.items()):
            for mode, style in zip(MODES, ("-", "--")):
                points = [(step, s[metric]) for step, s in series[mode] if metric in s]
                if not points:
                    continue
                steps = [p for p, _ in points]
                mean = [v["mean"] for _, v in points]
                err = [v["stderr"] for _, v in points]
                ax.plot(steps, mean, style, color=f"C{i}", marker="o", ms=3, label=f"{run_label(run)} {mode}")
                ax.fill_between(steps, [m - e for m, e in zip(mean, err)], [m + e for m, e in zip(mean, err)],
                                color=f"C{i}", alpha=0.12)
        ax.set_xlabel("training step")
        ax.set_title(title)
        ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_training_report(root: Path, out_dir: Path) -> Path:
    """``report.md`` (the table and the plot) and ``curves.json`` for the runs under ``root``."""
    runs = training_runs(root)
    series_of = {run: curves(run) for run in runs}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_curves(series_of, out_dir / "learning_curves.png")
    write_atomic(out_dir / "curves.json", json.dumps({run_label(r): s for r, s in series_of.items()}, indent=1) + "\n")
    text = (f"# Post-training report: {root}\n\n{len(runs)} run(s). Held-out evaluation at the last evaluated step; "
            f"win-rates are the top-1 against the untrained policy's unguided top-1, prompt by prompt, with "
            f"bootstrap 95% intervals.\n\n{table(series_of)}\n\n![learning curves](learning_curves.png)\n")
    write_atomic(out_dir / "report.md", text)
    return out_dir / "report.md"
