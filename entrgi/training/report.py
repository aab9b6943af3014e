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

MODES = ("unguided", "guided")


def training_runs(root: Path) -> list[Path]:
    """The entrgi.train run directories under ``root`` (or ``root`` itself): those with an ``eval.jsonl``."""
    return sorted(path.parent for path in Path(root).rglob("eval.jsonl"))


def run_label(run: Path) -> str:
    return run.name  # unique: a function of the settings, or the directory a run was given


def _stat(stats: dict | None) -> str:
    if not stats:
        return "-"
    if "rate" in stats:
        return f"{stats['rate']:.3f} [{stats['low']:.3f}, {stats['high']:.3f}]"
    return f"{stats['mean']:+.3f} ± {stats['stderr']:.3f}"


def curves(run: Path) -> dict[str, list[tuple[int, dict]]]:
    """Per mode: (step, summary) for every evaluated step, in step order (the last line of a step wins)."""
    by_key = {(r["mode"], r["step"]): r["summary"] for r in read_jsonl(run / "eval.jsonl")}
    return {mode: sorted((step, s) for (m, step), s in by_key.items() if m == mode) for mode in MODES}


def table(runs: list[Path]) -> str:
    header = ["run", "step"] + [f"{mode} {what}" for mode in MODES for what in
                                ("top-1 reward", "mean@K reward", "win-rate vs untrained", "judge", "judge win-rate")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        series = curves(run)
        if not series["unguided"]:
            continue
        step = series["unguided"][-1][0]
        last = {mode: dict(series[mode]).get(step, {}) for mode in MODES}
        cells = [run_label(run), str(step)]
        for mode in MODES:
            s = last[mode]
            cells += [_stat(s.get(k)) for k in ("top1_reward", "mean_reward", "win_rate_reward", "judge",
                                                 "win_rate_judge")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(runs: list[Path], path: Path) -> None:
    """Held-out top-1 reward (and the judge, when there is one) against training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("top1_reward", "held-out top-1 reward")]
    if any("judge" in s for run in runs for _, s in curves(run)["unguided"]):
        metrics.append(("judge", "held-out judge (top-1)"))
    figure, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for (metric, title), ax in zip(metrics, axes[0]):
        for i, run in enumerate(runs):
            for mode, style in zip(MODES, ("-", "--")):
                points = [(step, s[metric]) for step, s in curves(run)[mode] if metric in s]
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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_curves(runs, out_dir / "learning_curves.png")
    write_atomic(out_dir / "curves.json", json.dumps({run_label(r): curves(r) for r in runs}, indent=1) + "\n")
    text = (f"# Post-training report: {root}\n\n{len(runs)} run(s). Held-out evaluation at the last evaluated step; "
            f"win-rates are the top-1 against the untrained policy's unguided top-1, prompt by prompt, with "
            f"bootstrap 95% intervals.\n\n{table(runs)}\n\n![learning curves](learning_curves.png)\n")
    write_atomic(out_dir / "report.md", text)
    return out_dir / "report.md"
