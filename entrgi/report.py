"""Turn a sweep directory into the paper's tables and plots.

    python -m entrgi.report outputs/sweeps/<name>            # writes into <sweep>/report/
    python -m entrgi.report outputs/sweeps/<name> --out DIR

Reads every job directory under the sweep (any depth), merges the shards of a setting, and
writes ``report.md`` (tables and plots), ``table.csv`` (method x benchmark, top-1 reward),
``results.csv`` (every metric in long form) and PNG plots. Whatever is unfinished or
inconsistent (a job without a summary, a results file cut short, a missing shard, a baseline
computed with other settings) is left out and listed, and the rest is still reported.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from omegaconf import OmegaConf

from entrgi.bookkeeping.settings import differences, digest
from entrgi.bookkeeping.storage import write_atomic
from entrgi.evaluation.metrics import mean_stderr, win_rate

METHOD_ORDER = ["base", "bon", "expectation", "aps", "entrgi"]
# config keys that name a cell of the table, or do not change results: never part of a row's label
NOT_VARIANT = ("method.name", "method.family", "schedule.", "benchmark.", "seed", "shard.", "logger.", "batch_size", "sweep",
               "baseline.", "hydra.")


@dataclass
class Job:
    dir: Path
    config: dict
    summary: dict
    records: list[dict]


@dataclass
class Setting:
    """One method on one benchmark with one seed: the merged shards of a job."""

    method: str
    benchmark: str
    seed: int
    config: dict
    records: list[dict]
    dirs: list[Path]
    baseline: dict
    variant: str = ""
    problems: list[str] = field(default_factory=list)  # why its win-rates are left out, if they are

    @property
    def label(self) -> str:
        return f"{self.method} on {self.benchmark}, seed {self.seed}"


def _read_records(path: Path) -> tuple[list[dict], bool]:
    """Complete JSON lines, and whether the file ended in a line cut short."""
    if not path.exists():
        return [], False
    records, cut = [], False
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            cut = True
    return records, cut


def load_jobs(sweep_dir: Path) -> tuple[list[Job], list[str]]:
    """Finished jobs under ``sweep_dir``, and a message for each job that is not."""
    jobs, problems = [], []
    dirs = sorted({p.parent for name in ("settings.json", "results.jsonl", "summary.json")
                   for p in sweep_dir.rglob(name) if "wandb" not in p.parts and ".submitit" not in p.parts})
    for job_dir in dirs:
        where = job_dir.relative_to(sweep_dir)
        records, cut = _read_records(job_dir / "results.jsonl")
        cut_note = "; its last line is cut short" if cut else ""
        if not (job_dir / "summary.json").exists():
            problems.append(f"{where}: unfinished (no summary.json; results.jsonl has {len(records)} complete "
                            f"prompt(s){cut_note}) -- re-launch the sweep to finish it")
            continue
        summary = json.loads((job_dir / "summary.json").read_text())
        by_id = {r["id"]: r for r in records}
        missing = [i for i in summary["prompt_ids"] if i not in by_id]
        if missing:
            problems.append(f"{where}: results.jsonl lacks {len(missing)} of {len(summary['prompt_ids'])} prompts "
                            f"that summary.json lists{cut_note} -- delete summary.json and re-launch to redo them")
            continue
        config = OmegaConf.to_container(OmegaConf.load(job_dir / "config.yaml"))
        jobs.append(Job(job_dir, config, summary, [by_id[i] for i in summary["prompt_ids"]]))
    return jobs, problems


def merge_shards(jobs: list[Job], sweep_dir: Path) -> tuple[list[Setting], list[str]]:
    groups: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        unsharded = {k: v for k, v in job.config.items() if k not in ("shard", "batch_size", "logger", "sweep",
                                                                      "baseline")}
        groups[digest(unsharded)].append(job)
    settings, problems = [], []
    for group in groups.values():
        first = group[0]
        count = first.config["shard"]["count"]
        have = {job.config["shard"]["index"]: job for job in group}
        name = f"{first.summary['method']} on {first.summary['benchmark']}, seed {first.summary['seed']}"
        if len(group) != len(have) or {j.config["shard"]["count"] for j in group} != {count}:
            problems.append(f"{name}: shards of different counts or duplicate shards in "
                            f"{', '.join(str(j.dir.relative_to(sweep_dir)) for j in group)} -- keep one sharding")
            continue
        missing = sorted(set(range(count)) - set(have))
        if missing:
            problems.append(f"{name}: shard(s) {', '.join(map(str, missing))} of {count} missing "
                            f"(have {', '.join(map(str, sorted(have)))}) -- re-launch the sweep to run them")
            continue
        ordered = [have[i] for i in range(count)]
        settings.append(Setting(
            method=first.summary["method"], benchmark=first.summary["benchmark"], seed=first.summary["seed"],
            config=first.config, records=[r for job in ordered for r in job.records], dirs=[j.dir for j in ordered],
            baseline=first.summary.get("baseline", {})))
    return settings, problems


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value)
    return flat


def label_variants(settings: list[Setting]) -> None:
    """Name each setting's row: the method, plus any config key the sweep varied besides the table's
    own axes (method, benchmark, seed)."""
    by_cell: dict[tuple, list[dict]] = defaultdict(list)
    flat = [_flatten(s.config) for s in settings]
    for setting, values in zip(settings, flat):
        by_cell[(setting.method, setting.benchmark, setting.seed)].append(values)
    varied = sorted({key for cell in by_cell.values() for key in set().union(*cell)
                     if not key.startswith(NOT_VARIANT) and len({v.get(key) for v in cell}) > 1})
    for setting, values in zip(settings, flat):
        setting.variant = ", ".join(f"{k}={json.loads(values[k]) if k in values else None}" for k in varied)


def check_baselines(settings: list[Setting]) -> list[str]:
    """A method's win-rates count only if its baseline is the sweep's own bon run of that setting."""
    problems = []
    bons = {(s.benchmark, s.seed, s.variant): s for s in settings if s.method == "bon"}
    for setting in settings:
        bon = bons.get((setting.benchmark, setting.seed, setting.variant))
        if setting.method == "bon" or bon is None:
            continue
        if setting.baseline.get("digest") != bon.baseline.get("digest"):
            keys = differences(setting.baseline.get("settings", {}), bon.baseline.get("settings", {}))
            message = (f"{setting.label}: its baseline was sampled with other settings than the sweep's bon run "
                       f"(differing: {', '.join(keys) or 'unknown'}) -- win-rates left out; re-run one of them "
                       f"with matching settings")
            setting.problems.append(message)
            problems.append(message)
    return problems


def row_order(labels) -> list[tuple[str, str]]:
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(labels, key=lambda mv: (rank.get(mv[0], len(rank)), mv[0], mv[1]))


def over_seeds(settings: list[Setting], metric: str) -> dict:
    """Mean +- standard error over seeds of a per-prompt metric's mean (over prompts for one seed)."""
    per_seed = [mean_stderr([r[metric] for r in s.records])["mean"] for s in settings]
    if len(settings) == 1:
        within = mean_stderr([r[metric] for r in settings[0].records])
        return {**within, "seeds": 1}
    return {**mean_stderr(per_seed), "seeds": len(settings)}


def pooled_win_rate(settings: list[Setting], kind: str) -> dict | None:
    if any(s.problems for s in settings) or not all(s.records and kind in s.records[0].get("outcome", {})
                                                    for s in settings):
        return None
    return win_rate([r["outcome"][kind] for s in settings for r in s.records])


def paired_over_prompts(settings: list[Setting], value) -> dict | None:
    """Mean +- standard error over prompts of ``value(record)``, each prompt first averaged over the
    seeds, with a normal 95% interval: the paired comparison (same prompts, same seeds) that
    separates a method from its baseline far more sharply than per-seed means do."""
    if any(s.problems for s in settings):
        return None
    by_prompt: dict[str, list[float]] = defaultdict(list)
    for setting in settings:
        for record in setting.records:
            measured = value(record)
            if measured is None:
                return None
            by_prompt[record["id"]].append(measured)
    if not by_prompt:
        return None
    stat = mean_stderr([sum(v) / len(v) for v in by_prompt.values()])
    return {**stat, "low": stat["mean"] - 1.96 * stat["stderr"], "high": stat["mean"] + 1.96 * stat["stderr"]}


def fmt(stat: dict | None) -> str:
    if stat is None:
        return "—"
    if "rate" in stat:
        return f"{stat['rate']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"
    if "low" in stat:
        return f"{stat['mean']:+.4f} ± {stat['stderr']:.4f} [{stat['low']:+.4f}, {stat['high']:+.4f}]"
    mark = "†" if stat.get("seeds") == 1 else ""
    return f"{stat['mean']:+.4f} ± {stat['stderr']:.4f}{mark}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def step_curve(settings: list[Setting], name: str) -> tuple[list[int], list[float]]:
    sums: dict[int, list[float]] = defaultdict(list)
    for setting in settings:
        for record in setting.records:
            trace = record.get("trace", {})
            for step, value in zip(trace.get("step", []), trace.get(name, [])):
                if value is not None and not math.isnan(value):  # None: a step left unguided; NaN: undefined
                    sums[step].append(value)
    steps = sorted(sums)
    return steps, [sum(sums[s]) / len(sums[s]) for s in steps]


def plot(cells: dict, rows: list, benchmarks: list[str], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(max(4.5, 0.9 * len(rows) + 2) * len(benchmarks), 4.2),
                             squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks):
        present = [row for row in rows if (row, benchmark) in cells]
        xs = range(len(present))
        for offset, (metric, name, alpha) in enumerate([("top1_reward", "top-1", 1.0), ("mean_reward", "mean@K", 0.45)]):
            stats = [over_seeds(cells[(row, benchmark)], metric) for row in present]
            ax.bar([x + (offset - 0.5) * 0.38 for x in xs], [s["mean"] for s in stats], 0.38,
                   yerr=[s["stderr"] for s in stats], capsize=3, alpha=alpha, color="C0", label=name)
        ax.set_xticks(list(xs), [" ".join(filter(None, row)) for row in present], rotation=30, ha="right")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(benchmark)
        ax.set_ylabel("guiding reward")
        ax.legend(fontsize=8)
    fig.suptitle("Reward by method (mean ± standard error over seeds)")
    fig.tight_layout()
    fig.savefig(out_dir / "reward_by_method.png", dpi=110)
    plt.close(fig)
    names.append("reward_by_method.png")

    guided = [row for row in rows if any(step_curve(cells.get((row, b), []), "entropy_weight")[0] for b in benchmarks)]
    if guided:
        fig, axes = plt.subplots(2, len(benchmarks), figsize=(5 * len(benchmarks), 7), squeeze=False, sharex="col")
        for col, benchmark in enumerate(benchmarks):
            for i, row in enumerate(guided):
                for r, (name, ylabel) in enumerate([("guided_reward", "mean guided reward"),
                                                    ("entropy_weight", "mean entropy weight w")]):
                    steps, values = step_curve(cells.get((row, benchmark), []), name)
                    if steps:
                        axes[r][col].plot(steps, values, label=" ".join(filter(None, row)), color=f"C{i}")
                    axes[r][col].set_ylabel(ylabel)
            axes[0][col].set_title(benchmark)
            axes[1][col].set_xlabel("denoising step")
            axes[0][col].legend(fontsize=8)
        fig.suptitle("Over denoising steps (mean over prompts and seeds)")
        fig.tight_layout()
        fig.savefig(out_dir / "denoising_curves.png", dpi=110)
        plt.close(fig)
        names.append("denoising_curves.png")
    return names


# -- cost against quality: FLOPs and seconds per prompt, relative to bon, and the plots ------------

def setting_flops(setting: Setting) -> dict | None:
    """FLOPs per prompt of a setting (its shards' summaries weighted by their prompts), with ``bon``: K
    unguided samples of the same setup by the same cost model; None if a summary has none."""
    from entrgi.bookkeeping.costs import SequenceFlops

    summaries = [json.loads((d / "summary.json").read_text()) for d in setting.dirs]
    if not summaries or any("flops" not in s for s in summaries):
        return None
    prompts = sum(s["num_prompts"] for s in summaries)
    flops = {k: sum(s["flops"]["per_prompt"][k] * s["num_prompts"] for s in summaries) / prompts
             for k in summaries[0]["flops"]["per_prompt"]}
    first = summaries[0]
    steps = first["cost"]["dllm_forwards"] / first["num_prompts"] / first["num_samples"]
    flops["bon"] = first["num_samples"] * SequenceFlops(**first["flops"]["per_sequence"]).unguided_sample(steps)
    return flops


def seconds_per_prompt(settings: list[Setting]) -> float:
    records = [r for s in settings for r in s.records]
    return sum(r["cost"]["seconds"] for r in records) / len(records)


def cost_points(cells: dict, rows: list, benchmark: str) -> list[dict]:
    """One point per method and setting on ``benchmark``: FLOPs and seconds per prompt (means over
    seeds), both relative to bon at the same K (bon's seconds: the sweep's bon run with that K),
    top-1 reward and the win-rate over bon (by the held-out judge if the benchmark has one, else by
    the guiding reward: ``win_rate_by``)."""
    here = [s for (_, bench), cell in cells.items() if bench == benchmark for s in cell]
    by = "judge" if any(s.records and "judge" in s.records[0].get("outcome", {}) for s in here) else "guide"
    bon_seconds = defaultdict(list)  # bon's settings on this benchmark, by K
    for setting in here:
        if setting.method == "bon":
            bon_seconds[setting.config["num_samples"]].append(setting)
    points = []
    for row in rows:
        cell = cells.get((row, benchmark))
        flops = [setting_flops(s) for s in cell or []]
        if not cell or None in flops:
            continue
        mean = {k: sum(f[k] for f in flops) / len(flops) for k in flops[0]}
        seconds = seconds_per_prompt(cell)
        bon = bon_seconds.get(cell[0].config["num_samples"])
        points.append({"row": row, "label": " ".join(filter(None, row)), "flops": mean,
                       "reward_flops": mean["reward_forward"] + mean["reward_backward"], "seconds": seconds,
                       "relative_flops": mean["total"] / mean["bon"],
                       "relative_seconds": seconds / seconds_per_prompt(bon) if bon else None,
                       "top1": over_seeds(cell, "top1_reward"), "win_rate": pooled_win_rate(cell, by),
                       "win_rate_by": by})
    return points


def cost_relative_section(cells: dict, rows: list, benchmarks: list[str]) -> str:
    """The table of FLOPs and seconds per prompt with the column "cost relative to bon"."""
    table = []
    for benchmark in benchmarks:
        for point in cost_points(cells, rows, benchmark):
            f = point["flops"]
            seconds = point["relative_seconds"]
            table.append([point["label"], benchmark, f"{f['dllm']:.3g}", f"{f['reward_forward']:.3g}",
                          f"{f['reward_backward']:.3g}", f"{f['total']:.3g}", f"{point['seconds']:.2f}",
                          f"{point['relative_flops']:.2f}", "—" if seconds is None else f"{seconds:.2f}"])
    if not table:
        return ""
    return ("## Cost relative to bon\n\nFLOPs per prompt by the cost model (docs/cost-model.md), mean over seeds; "
            "cost relative to bon: over best-of-K at the same K, by FLOPs (the same cost model) and by seconds "
            "(the sweep's bon run at that K, when there is one).\n\n" + markdown_table(
                ["method", "benchmark", "dLLM FLOPs", "reward fwd FLOPs", "reward bwd FLOPs", "total FLOPs",
                 "seconds", "cost relative to bon (FLOPs)", "cost relative to bon (seconds)"], table))


def plot_cost(cells: dict, rows: list, benchmarks: list[str], out_dir: Path) -> list[str]:
    """Per benchmark: top-1 reward and win-rate over bon against reward-model FLOPs and against seconds
    per prompt, one point per method and setting (``cost_<benchmark>.png``)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for benchmark in benchmarks:
        points = cost_points(cells, rows, benchmark)
        if not points:
            continue
        fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex="col", squeeze=False)
        colors = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(p["row"][0] for p in points))}
        for col, (x, xlabel) in enumerate([("reward_flops", "reward-model FLOPs per prompt (forward + backward)"),
                                           ("seconds", "seconds per prompt")]):
            for r, (name, ylabel) in enumerate([("top1", "top-1 guiding reward"), ("win_rate", "win-rate over bon")]):
                ax = axes[r][col]
                for p in points:
                    stat = p[name]
                    if stat is None:
                        continue
                    y = stat.get("mean", stat.get("rate"))
                    err = stat["stderr"] if "stderr" in stat else [[y - stat["low"]], [stat["high"] - y]]
                    ax.errorbar(p[x], y, yerr=err, fmt="o", color=colors[p["row"][0]], capsize=3)
                    ax.annotate(p["label"], (p[x], y), fontsize=7, xytext=(3, 3), textcoords="offset points")
                if name == "win_rate":
                    ax.axhline(0.5, color="black", linewidth=0.6)
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded minor labels
                ax.set_ylabel(ylabel)
            axes[1][col].set_xlabel(xlabel)
        judged = "the held-out judge" if points[0]["win_rate_by"] == "judge" else "the guiding reward"
        fig.suptitle(f"{benchmark}: top-1 reward, and win-rate over bon at the same K by {judged}, against cost")
        fig.tight_layout()
        name = f"cost_{benchmark}.png"
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def plot_step_curves(cells: dict, rows: list, benchmarks: list[str], out_dir: Path, panels: list[tuple[str, str]],
                     title: str, name: str) -> list[str]:
    """One panel row per traced statistic ``(trace name, y label)``, one column per benchmark: the
    statistic over denoising steps (mean over prompts and seeds), one line per row that traced the
    first statistic. Written to ``name``; nothing when no row traced it."""
    traced = [row for row in rows if any(step_curve(cells.get((row, b), []), panels[0][0])[0] for b in benchmarks)]
    if not traced:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), len(benchmarks), figsize=(max(6.5, 5 * len(benchmarks)), 3.5 * len(panels)),
                             squeeze=False, sharex="col")
    for col, benchmark in enumerate(benchmarks):
        for i, row in enumerate(traced):
            for r, (stat, ylabel) in enumerate(panels):
                steps, values = step_curve(cells.get((row, benchmark), []), stat)
                if steps:
                    axes[r][col].plot(steps, values, label=" ".join(filter(None, row)), color=f"C{i}")
                axes[r][col].set_ylabel(ylabel)
        axes[0][col].set_title(benchmark)
        axes[-1][col].set_xlabel("denoising step")
        axes[0][col].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return [name]


def plot_relaxation(cells: dict, rows: list, benchmarks: list[str], out_dir: Path) -> list[str]:
    """Per denoising step, for each method run with ``diagnostics.relaxation=true``: the mean gap between
    the relaxed score that drove the gradient and the hard sample's, and their correlation over each
    prompt's rows and inner steps (``relaxation_fidelity.png``)."""
    return plot_step_curves(cells, rows, benchmarks, out_dir,
                            [("relaxation_gap", "relaxed - hard reward (mean)"),
                             ("relaxation_correlation", "correlation, relaxed vs hard")],
                            "Relaxed score vs the hard sample's (mean over prompts and seeds)", "relaxation_fidelity.png")


def build(sweep_dir: Path, out_dir: Path) -> tuple[str, list[str]]:
    """Write the report; returns the Markdown and the list of what was left out."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a directory; pass a sweep directory (outputs/sweeps/<name>)")
    jobs, problems = load_jobs(sweep_dir)
    settings, shard_problems = merge_shards(jobs, sweep_dir)
    problems += shard_problems
    label_variants(settings)
    problems += check_baselines(settings)
    out_dir.mkdir(parents=True, exist_ok=True)

    if not settings:
        text = f"# Sweep report: {sweep_dir}\n\nNo finished job to report.\n"
        if problems:
            text += "\n## Left out\n\n" + "".join(f"- {p}\n" for p in problems)
        write_atomic(out_dir / "report.md", text)
        return text, problems or [f"{sweep_dir} holds no job results (no summary.json below it)"]

    cells: dict[tuple, list[Setting]] = defaultdict(list)
    for setting in settings:
        cells[((setting.method, setting.variant), setting.benchmark)].append(setting)
    for cell in cells.values():
        cell.sort(key=lambda s: s.seed)
    rows = row_order({row for row, _ in cells})
    benchmarks = sorted({b for _, b in cells})
    judges = sorted({s.records[0]["judge"]["name"] for s in settings if s.records and "judge" in s.records[0]})

    long_rows = []

    def method_table(stat_of, metric: str, with_bon: bool) -> str:
        """One row per method, one column per benchmark; each cell also goes to results.csv."""
        table = []
        for row in rows:
            if row[0] == "bon" and not with_bon:
                continue
            line = [" ".join(filter(None, row))]
            for benchmark in benchmarks:
                cell = cells.get((row, benchmark))
                stat = stat_of(cell) if cell else None
                line.append(fmt(stat))
                if stat:
                    long_rows.append([row[0], row[1], benchmark, metric, stat.get("mean", stat.get("rate")),
                                      stat.get("stderr", ""), stat.get("seeds", len(cell)), stat.get("low", ""),
                                      stat.get("high", "")])
            table.append(line)
        return markdown_table(["method", *benchmarks], table)

    sections = [f"## {title}\n\n" + method_table(partial(over_seeds, metric=metric), metric, with_bon=True)
                for metric, title in [("top1_reward", "Top-1 reward (best of K by the guiding reward model)"),
                                      ("mean_reward", "Mean@K reward")]]

    def gain(record):
        return record["top1_reward"] - record["baseline"]["top1_reward"] if "baseline" in record else None

    def judge_top1(name):
        return lambda r: r["judge"]["top1"] if r.get("judge", {}).get("name") == name else None

    paired = [("top1_reward_gain", "Top-1 reward gain over best-of-K, paired by prompt", gain, False),
              *[("judge_top1", f"Score of the top-1 answer by {name} (held out)", judge_top1(name), True)
                for name in judges]]
    for metric, title, value, with_bon in paired:
        sections.append(f"## {title}\n\nMean ± standard error over prompts, each prompt averaged over the seeds first; "
                        "[normal 95% interval].\n\n"
                        + method_table(partial(paired_over_prompts, value=value), metric, with_bon))

    for kind, title in [("guide", "Win-rate of top-1 vs best-of-K, judged by the guiding reward model"),
                        *[("judge", f"Win-rate of top-1 vs best-of-K, judged by {name} (held out)") for name in judges]]:
        sections.append(f"## {title}\n\nTies count half; 95% bootstrap interval over prompts (all seeds pooled).\n\n"
                        + method_table(partial(pooled_win_rate, kind=kind), f"win_rate_{kind}", False))

    cost_table = []
    for row in rows:
        records = [r for b in benchmarks for s in cells.get((row, b), []) for r in s.records]
        peak = max(json.loads((d / "summary.json").read_text())["cost_total"]["peak_memory_bytes"]
                   for b in benchmarks for s in cells.get((row, b), []) for d in s.dirs)
        per_prompt = {k: sum(r["cost"][k] for r in records) / len(records) for k in records[0]["cost"]}
        cost_table.append([" ".join(filter(None, row)), f"{per_prompt['dllm_forwards']:.0f}",
                           f"{per_prompt['reward_forwards']:.0f}", f"{per_prompt['reward_backwards']:.0f}",
                           f"{per_prompt['seconds']:.2f}", f"{peak / 2**20:.0f}"])
    sections.append("## Cost per prompt\n\nSequences through each model (K samples each); best-of-K's costs are "
                    "those of its shared samples. Peak memory is the largest of any job (GPU allocated, else "
                    "resident set).\n\n" + markdown_table(
                        ["method", "dLLM forwards", "reward forwards", "reward backwards", "seconds", "peak MiB"],
                        cost_table))
    sections += filter(None, [cost_relative_section(cells, rows, benchmarks)])

    images = plot(cells, rows, benchmarks, out_dir) + plot_cost(cells, rows, benchmarks, out_dir)
    images += plot_relaxation(cells, rows, benchmarks, out_dir)
    cfg = settings[0].config
    guided = [s.config for s in settings if "inner_steps" in s.config["method"]]
    header = (f"# Sweep report: {sweep_dir}\n\n{len(settings)} setting(s) from {sum(len(s.dirs) for s in settings)} "
              f"job(s). Model `{cfg['model']['name']}`, guiding reward `{cfg['reward']['name']}`, "
              f"K={cfg['num_samples']}, L={cfg['sampler']['gen_length']}, T={cfg['sampler']['steps']}, "
              + "".join(f"M={c['method']['inner_steps']}, eta={c['method']['lr']}, " for c in guided[:1])
              + f"seeds "
              f"{', '.join(map(str, sorted({s.seed for s in settings})))}.\n\n"
              "Cells are mean ± standard error over seeds of the per-seed mean over prompts"
              + (" († one seed: standard error over prompts)" if any(len(c) == 1 for c in cells.values()) else "")
              + ".\n")
    text = "\n\n".join([header, *sections, *[f"![{name}]({name})" for name in images]]) + "\n"
    if problems:
        text += "\n## Left out\n\n" + "".join(f"- {p}\n" for p in problems)
    write_atomic(out_dir / "report.md", text)

    buffer = io.StringIO()
    writer = csv.writer(buffer)  # the paper's layout, top-1 reward: one row per method, mean and stderr per benchmark
    writer.writerow(["method", *[f"{b} {part}" for b in benchmarks for part in ("mean", "stderr", "seeds")]])
    for row in rows:
        line = [" ".join(filter(None, row))]
        for benchmark in benchmarks:
            stat = over_seeds(cells[(row, benchmark)], "top1_reward") if (row, benchmark) in cells else None
            line += [stat["mean"], stat["stderr"], stat["seeds"]] if stat else ["", "", ""]
        writer.writerow(line)
    write_atomic(out_dir / "table.csv", buffer.getvalue())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "variant", "benchmark", "metric", "value", "stderr", "seeds", "low95", "high95"])
    writer.writerows(long_rows)
    write_atomic(out_dir / "results.csv", buffer.getvalue())
    return text, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m entrgi.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory, e.g. outputs/sweeps/<name>")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: <sweep_dir>/report)")
    args = parser.parse_args(argv)
    try:
        text, problems = build(args.sweep_dir, args.out or args.sweep_dir / "report")
    except FileNotFoundError as error:
        print(f"entrgi.report: error: {error}", file=sys.stderr)
        return 2
    out = args.out or args.sweep_dir / "report"
    for problem in problems:
        print(f"entrgi.report: left out: {problem}", file=sys.stderr)
    if "No finished job" in text:
        print(f"entrgi.report: error: no finished job in {args.sweep_dir}; nothing to report", file=sys.stderr)
        return 1
    print(f"report written to {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
