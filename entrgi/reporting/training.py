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


def judge_of(run: Path) -> str | None:
    """The held-out judge a run evaluated with (its ``config.yaml``), None without one."""
    import yaml

    path = run / "config.yaml"
    name = ((yaml.safe_load(path.read_text()) or {}).get("eval_reward") or {}).get("name") if path.exists() else None
    return None if name in (None, "none") else name


MODE_STYLES = {"unguided": ("-", "o"), "guided": ("--", "^")}  # line and marker: told apart in print and legend


def plot_curves(series_of: dict[Path, dict], path: Path) -> None:
    """Held-out top-1 reward (and the judge's score of it, when there is one) against training steps, mean
    ± standard error over the held-out prompts; ``series_of``: run -> its :func:`curves`. Colour: the run;
    line and marker: sampled unguided or guided (two legends below the panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    judges = sorted({j for j in map(judge_of, series_of) if j})
    metrics = [("top1_reward", "held-out top-1 reward", "guiding reward of the top-1 answer")]
    if any("judge" in s for series in series_of.values() for _, s in series["unguided"]):
        metrics.append(("judge", "held-out judge score of the top-1",
                        f"{' / '.join(judges) or 'judge'} score of the top-1 answer"))
    figure, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.6), squeeze=False)
    for (metric, title, ylabel), ax in zip(metrics, axes[0]):
        for i, (run, series) in enumerate(series_of.items()):
            for mode, (line, marker) in MODE_STYLES.items():
                points = [(step, s[metric]) for step, s in series[mode] if metric in s]
                if not points:
                    continue
                steps = [p for p, _ in points]
                mean = [v["mean"] for _, v in points]
                err = [v["stderr"] for _, v in points]
                ax.plot(steps, mean, line, color=f"C{i}", marker=marker, ms=4)
                ax.fill_between(steps, [m - e for m, e in zip(mean, err)], [m + e for m, e in zip(mean, err)],
                                color=f"C{i}", alpha=0.1, linewidth=0)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{ylabel}\n(mean ± s.e. over held-out prompts)", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(title)
    runs = [Line2D([], [], color=f"C{i}", linewidth=2, label=run_label(run)) for i, run in enumerate(series_of)]
    modes = [Line2D([], [], color="black", linestyle=line, marker=marker, label=f"sampled {mode}")
             for mode, (line, marker) in MODE_STYLES.items()]
    columns = max(1, min(len(runs), 3))
    rows = -(-len(runs) // columns)
    bottom = (0.35 + 0.22 * rows) / 4.6
    figure.legend(handles=runs, loc="lower left", bbox_to_anchor=(0.02, 0), ncol=columns, fontsize=8, frameon=False,
                  title="run", title_fontsize=8)
    figure.legend(handles=modes, loc="lower right", bbox_to_anchor=(0.98, 0), fontsize=8, frameon=False, handlelength=4)
    figure.tight_layout(rect=(0, bottom, 1, 1))
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
