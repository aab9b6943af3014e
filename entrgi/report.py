"""Turn a sweep directory into the paper's tables, paired comparisons with best-of-K, and plots.

    python -m entrgi.report outputs/sweeps/<name>                  # writes into <sweep>/report/
    python -m entrgi.report outputs/sweeps/<name> --out DIR
    python -m entrgi.report outputs/sweeps/<name> --judge lexical  # also score every answer with a judge

Reads every job directory under the sweep (any depth), merges the shards of a setting, and
writes ``report.md`` (tables and plots), ``table.csv`` (method x benchmark, top-1 reward),
``results.csv`` (every number in long form) and PNG plots. Besides the paper's tables (mean and
standard error over seeds) there is one table per judge -- the guiding reward model and each
held-out judge -- pairing every method with best-of-K prompt by prompt: top-1 and mean@K scores,
bon's top-1 on the same prompts, the gain over it and the win-rate, with 95% intervals over
prompts (each prompt's value averaged over its seeds first). Then cost: per prompt, and, where the
summaries record FLOPs, FLOPs and seconds per prompt relative to best-of-K of the same setup, with a
plot of top-1 reward and win-rate against both; and, for runs with ``diagnostics.relaxation=true``,
the relaxation's fidelity over the denoising steps. ``--judge NAME`` (a config of
``conf/eval_reward``) scores every stored answer with that judge after the fact, so a judge the
sweep did not run, and the judge's mean over all K answers, are reported too.

Whatever is unfinished or inconsistent is left out, named under "Left out" and on stderr, and the
rest is still reported: a job of the sweep's grid (``sweep.json``, written by the resuming sweeper)
that left no results, a job without a summary, a results file cut short, a missing shard, a baseline
computed with other settings. A cell built from fewer seeds than the sweep ran says so.
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
from pathlib import Path

from omegaconf import OmegaConf

from entrgi.bookkeeping.records import PromptResult, flatten
from entrgi.bookkeeping.settings import NOT_RESULTS, differences, digest
from entrgi.bookkeeping.storage import parse_jsonl, read_json, write_atomic
from entrgi.bookkeeping.sweep_record import read_jobs
from entrgi.costs import unguided_sample_flops
from entrgi.errors import ConfigError
from entrgi.evaluation.metrics import mean_stderr, outcomes, win_rate

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
METHOD_ORDER = ["base", "bon", "expectation", "aps", "entrgi", "fk"]
# the table's own axes, and keys that do not change results: never part of a row's label
AXES = ("method.name", "benchmark.name")
NOT_VARIANT = ("seed", "shard.", *(f"{key}." for key in NOT_RESULTS), *NOT_RESULTS)
GUIDE = "guide"  # the judge name of the guiding reward model in tables and results.csv
Z95 = 1.96


# ---- Results records (entrgi.bookkeeping.records.PromptResult): what the report derives from one

def answer_index(method: str, record: PromptResult) -> int:
    """The response a method answered with (as the run compared it with best-of-K's); records written
    before runs recorded it: the top-1, except ``base``, which answers with its first sample."""
    if record.answer_index is not None:
        return record.answer_index
    return 0 if method == "base" else record.best_index


@dataclass
class Scores:
    """One judge's view of one prompt's result: the answer's score, the mean over the K samples, bon's
    top-1 on the same prompt and the outcome against it (1 / 0.5 / 0). None: not measured."""

    top1: float | None  # None: the judge declined the answer
    mean_at_k: float | None = None
    baseline_top1: float | None = None
    outcome: float | None = None


def guide_scores(method: str, record: PromptResult) -> Scores:
    base = (record.baseline or {}).get("top1_reward")
    return Scores(record.rewards[answer_index(method, record)], record.mean_reward, base,
                  (record.outcome or {}).get("guide"))


def recorded_judge(record: PromptResult) -> str | None:
    """The name of the held-out judge the run scored this record with, if any."""
    return (record.judge or {}).get("name")


def recorded_judge_scores(record: PromptResult, name: str) -> Scores | None:
    if recorded_judge(record) != name:
        return None
    judge = record.judge
    return Scores(judge["top1"], None, judge.get("baseline_top1"), (record.outcome or {}).get("judge"))


def trace_of(record: PromptResult, name: str) -> list[tuple[int, float]]:
    """(denoising step, value) of a traced quantity; steps left unguided (value None) and values
    undefined there (NaN: a correlation of constant scores) are skipped."""
    trace = record.trace or {}
    return [(step, value) for step, value in zip(trace.get("step", []), trace.get(name, []))
            if value is not None and not math.isnan(value)]


def flops_of(summary: dict) -> dict | None:
    """FLOPs per prompt by the cost model (``dllm``, ``reward_forward``, ``reward_backward``, ``total``)
    and, as ``bon``, those of best-of-K of the same setup (K unguided samples); None for a summary
    written before jobs recorded FLOPs."""
    if "flops" not in summary:
        return None
    return {**summary["flops"]["per_prompt"], "bon": summary["num_samples"] * unguided_sample_flops(summary)}


# ---- Jobs and settings

@dataclass
class Job:
    dir: Path
    config: dict
    summary: dict
    records: list[PromptResult]


@dataclass
class Setting:
    """One method on one benchmark with one seed: the merged shards of a job."""

    method: str
    benchmark: str
    seed: int
    config: dict
    records: list[PromptResult]
    dirs: list[Path]
    baseline: dict
    summaries: list[dict]  # its shards'
    variant: str = ""
    problems: list[str] = field(default_factory=list)  # why its comparisons with bon are left out, if they are
    judged: dict[str, dict[str, Scores]] = field(default_factory=dict)  # --judge name -> record id -> scores

    @property
    def label(self) -> str:
        return cell_label(self.method, self.benchmark, self.seed)

    def scores(self, judge: str, record: PromptResult) -> Scores | None:
        if judge == GUIDE:
            return guide_scores(self.method, record)
        if judge in self.judged:
            return self.judged[judge].get(record.id)
        return recorded_judge_scores(record, judge)


def cell_label(method: str, benchmark: str, seed: int) -> str:
    """How the report names one method (or row) on one benchmark with one seed."""
    return f"{method} on {benchmark}, seed {seed}"


def identity(settings: dict) -> tuple[str, str, int]:
    """Method, benchmark and seed of a job's settings (or resolved config)."""
    return settings["method"]["name"], settings["benchmark"]["name"], settings["seed"]


def cell_key(settings: dict) -> str:
    """What a job shares with the other seeds and shards of its table cell."""
    return digest({k: v for k, v in settings.items() if k not in (*NOT_RESULTS, "seed", "shard")})


def _read_records(path: Path) -> tuple[list[PromptResult], bool]:
    """The complete records of a results file, and whether any line was cut short."""
    records, bad = parse_jsonl(path.read_text()) if path.exists() else ([], [])
    return [PromptResult.from_json(r) for r in records], bool(bad)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Every directory under the sweep that a job claimed or wrote results into."""
    return sorted({p.parent for name in ("settings.json", "results.jsonl", "summary.json")
                   for p in sweep_dir.rglob(name) if "wandb" not in p.parts and ".submitit" not in p.parts})


def load_jobs(sweep_dir: Path, dirs: list[Path]) -> tuple[list[Job], list[str]]:
    """The finished jobs among ``dirs``, and a message for each one that is not."""
    jobs, problems = [], []
    for job_dir in dirs:
        where = job_dir.relative_to(sweep_dir)
        if (job_dir / "settings.json").exists():  # name the job's setting, so its cell's gap is accounted for
            settings = read_json(job_dir / "settings.json", "a job's settings").get("settings", {})
            where = f"{where} ({cell_label(*identity(settings))})"
        records, cut = _read_records(job_dir / "results.jsonl")
        cut_note = "; its last line is cut short" if cut else ""
        if not (job_dir / "summary.json").exists():
            problems.append(f"{where}: unfinished (no summary.json; results.jsonl has {len(records)} complete "
                            f"prompt(s){cut_note}) -- re-launch the sweep to finish it")
            continue
        summary = read_json(job_dir / "summary.json", "a job's summary")
        if not isinstance(summary.get("prompt_ids"), list):
            raise ConfigError(f"{job_dir / 'summary.json'} lists no prompt_ids: not a finished job's summary; "
                              f"delete it and re-launch the sweep to write it again (results are kept)")
        by_id = {r.id: r for r in records}
        missing = [i for i in summary["prompt_ids"] if i not in by_id]
        if missing:
            problems.append(f"{where}: results.jsonl lacks {len(missing)} of {len(summary['prompt_ids'])} prompts "
                            f"that summary.json lists{cut_note} -- delete summary.json and re-launch to redo them")
            continue
        config = OmegaConf.to_container(OmegaConf.load(job_dir / "config.yaml"))
        jobs.append(Job(job_dir, config, summary, [by_id[i] for i in summary["prompt_ids"]]))
    return jobs, problems


def missing_from_grid(grid: list[dict], found: list[Path], sweep_dir: Path) -> list[str]:
    """A message for each job of the sweep's record that left no directory with results behind."""
    have = {str(d.relative_to(sweep_dir)) for d in found}
    problems = []
    for job in grid:
        if job["dir"] not in have:
            problems.append(f"{job['dir']}: missing ({cell_label(*identity(job['settings']))}; the sweep launched it "
                            f"with {' '.join(job['overrides']) or 'no overrides'}, and it left no results) -- "
                            f"re-launch the sweep to run it")
    return problems


def merge_shards(jobs: list[Job], sweep_dir: Path) -> tuple[list[Setting], list[str]]:
    groups: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        unsharded = {k: v for k, v in job.config.items() if k not in (*NOT_RESULTS, "shard")}
        groups[digest(unsharded)].append(job)
    settings, problems = [], []
    for group in groups.values():
        first = group[0]
        count = first.config["shard"]["count"]
        have = {job.config["shard"]["index"]: job for job in group}
        method, benchmark, seed = identity(first.config)
        name = cell_label(method, benchmark, seed)
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
            method=method, benchmark=benchmark, seed=seed, config=first.config,
            records=[r for job in ordered for r in job.records], dirs=[j.dir for j in ordered],
            baseline=first.summary.get("baseline", {}), summaries=[j.summary for j in ordered]))
    return settings, problems


def _flatten(tree: dict) -> dict:
    """Config leaves by dotted key, as comparable strings."""
    return {key: json.dumps(value) for key, value in flatten(tree).items()}


def label_variants(settings: list[Setting]) -> None:
    """Name each setting's row: the method, plus any config key the sweep varied besides the table's
    own axes (method, benchmark, seed)."""
    by_cell: dict[tuple, list[dict]] = defaultdict(list)
    flat = [_flatten(s.config) for s in settings]
    for setting, values in zip(settings, flat):
        by_cell[(setting.method, setting.benchmark, setting.seed)].append(values)
    varied = sorted({key for cell in by_cell.values() for key in set().union(*cell)
                     if key not in AXES and not key.startswith(NOT_VARIANT) and len({v.get(key) for v in cell}) > 1})
    for setting, values in zip(settings, flat):
        setting.variant = ", ".join(f"{k}={json.loads(values[k]) if k in values else None}" for k in varied)


def check_baselines(settings: list[Setting]) -> list[str]:
    """A method's comparisons count only if its baseline is the sweep's own bon run of that setting."""
    problems = []
    bons = {(s.benchmark, s.seed, s.variant): s for s in settings if s.method == "bon"}
    for setting in settings:
        bon = bons.get((setting.benchmark, setting.seed, setting.variant))
        if setting.method == "bon" or bon is None:
            continue
        if setting.baseline.get("digest") != bon.baseline.get("digest"):
            keys = differences(setting.baseline.get("settings", {}), bon.baseline.get("settings", {}))
            message = (f"{setting.label}: its baseline was sampled with other settings than the sweep's bon run "
                       f"(differing: {', '.join(keys) or 'unknown'}) -- comparisons with bon left out; re-run one "
                       f"of them with matching settings")
            setting.problems.append(message)
            problems.append(message)
    return problems


def load_judge(name: str):
    """The judge of ``conf/eval_reward/<name>.yaml``."""
    from entrgi.evaluation.judges import make_judge

    choices = sorted(p.stem for p in (CONF_DIR / "eval_reward").glob("*.yaml") if p.stem != "none")
    path = CONF_DIR / "eval_reward" / f"{name}.yaml"
    if name == "none" or not path.exists():
        raise ConfigError(f"--judge {name}: not a judge of conf/eval_reward; use one of {', '.join(choices)}")
    cfg = OmegaConf.load(path)
    if cfg.get("type") == "pairwise":  # refused before its model loads
        raise ConfigError(f"--judge {name} compares two answers; re-judging scores each stored answer on its own: "
                          f"pick a pointwise judge (e.g. keywords, ifeval, lmunit)")
    return make_judge(cfg)


def rejudge(settings: list[Setting], judge) -> None:
    """Score every stored response, and bon's top-1 beside it, with ``judge``: one call per setting. An answer
    the judge declines scores None, and so does the mean over its prompt's answers."""
    from entrgi.evaluation.benchmarks import Prompt

    for setting in settings:
        prompts, texts, spans = [], [], []
        for record in setting.records:
            responses, baseline = record.responses, (record.baseline or {}).get("response")  # None for bon itself
            prompt = Prompt(record.id, record.prompt, record.reference)
            answers = responses + ([baseline] if baseline is not None else [])
            spans.append((len(texts), len(responses), baseline is not None))
            prompts += [prompt] * len(answers)
            texts += answers
        scores = [v.score for v in judge.verdicts(prompts, texts)] if texts else []
        judged = {}
        for record, (start, k, paired) in zip(setting.records, spans):
            mine = scores[start:start + k]
            top1 = mine[answer_index(setting.method, record)]
            base = scores[start + k] if paired else None
            mean = None if None in mine else sum(mine) / k
            outcome = outcomes([top1], [base])[0] if paired and None not in (top1, base) else None
            judged[record.id] = Scores(top1, mean, base, outcome)
        setting.judged[judge.name] = judged


# ---- Statistics

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


def fmt(stat: dict | None, signed: bool = True, interval: bool = True) -> str:
    if stat is None:
        return "—"
    if "rate" in stat:
        return f"{stat['rate']:.3f} ± {stat['stderr']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"
    sign = "+" if signed else ""
    if "low" in stat and interval:
        return f"{stat['mean']:{sign}.4f} ± {stat['stderr']:.4f} [{stat['low']:{sign}.4f}, {stat['high']:{sign}.4f}]"
    mark = "†" if stat.get("seeds") == 1 else ""
    return f"{stat['mean']:{sign}.4f} ± {stat['stderr']:.4f}{mark}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def row_name(row: tuple[str, str]) -> str:
    return " ".join(filter(None, row))


def seeds_note(have: list[int], expected: list[int]) -> str:
    """A cell's mark when it is built from fewer seeds than the sweep ran."""
    if set(have) >= set(expected):
        return ""
    return f" [{len(have)} of {len(expected)} seeds: {', '.join(map(str, have)) or 'none'}]"


# ---- Judge tables

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


# ---- Cost against quality

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
    def reward_flops(self) -> float:
        return self.flops["reward_forward"] + self.flops["reward_backward"]

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
    for judge in [*held_out, GUIDE]:
        wins = {row: judged[(row, benchmark, judge)]["win_rate"] if row[0] != "bon" else None for row in present}
        if any(wins.values()):
            break
    bons = {s.baseline.get("digest"): s for row in present if row[0] == "bon" for s in cells[(row, benchmark)]}
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


# ---- Plots

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


def band_figure(cells: dict, rows: list, benchmarks: list[str], names: tuple[str, ...]):
    """One column per benchmark, one panel per trace ``names[i]``: per row that traces ``names[0]`` (one
    colour each), the mean over denoising steps with its 95% band over prompts (see ``_band``). The
    figure and its axes, or None when no row traces it."""
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
                    ax.plot(steps, means, color=f"C{i}", label=row_name(row))
                    ax.fill_between(steps, [m - h for m, h in zip(means, half)], [m + h for m, h in zip(means, half)],
                                    color=f"C{i}", alpha=0.2, linewidth=0)
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
        bon = [cells[(row, benchmark)] for row in rows if row[0] == "bon" and (row, benchmark) in cells]
        for cell in bon:
            for part, style, text in [(lambda s: s.mean_at_k, "--", "bon: mean reward of its K final samples"),
                                      (lambda s: s.top1, ":", "bon: reward of its top-1 final sample")]:
                stat = over_prompts(cell, lambda s, r, part=part: part(s.scores(GUIDE, r)))
                axes[0][col].axhline(stat["mean"], color="black", linestyle=style, linewidth=1,
                                     label=text)
        axes[0][col].set_ylabel("reward of the relaxed input\n(guiding reward model, mean over the K samples)",
                                fontsize=8)
        axes[1][col].set_ylabel("entropy weight w\n(mean over masked positions)", fontsize=8)
        axes[1][col].set_ylim(-0.05, 1.05)
    return _save(fig, "During guidance, per method: mean over prompts (each averaged over its seeds); "
                 "band: 95% interval over prompts", out_dir, "denoising_curves.png")


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
        axes[1][col].set_ylim(-1.05, 1.05)
    return _save(fig, "Fidelity of the relaxation, per method run with diagnostics.relaxation=true: mean over "
                 "prompts (each averaged over its seeds); band: 95% interval over prompts", out_dir,
                 "relaxation_fidelity.png")


def plot_cost(benchmark: str, judge: str, points: list[CostPoint], out_dir: Path) -> str | None:
    """Top-1 reward and win-rate over bon against reward-model FLOPs and against seconds per prompt, one
    point per method and setting; a method's settings (e.g. its K) joined by a line and named."""
    import matplotlib.ticker

    if not points:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex="col", squeeze=False)
    methods = list(dict.fromkeys(p.row[0] for p in points))
    for col, (x_of, xlabel) in enumerate([(lambda p: p.reward_flops, "reward-model FLOPs per prompt (forward + backward)"),
                                          (lambda p: p.seconds and p.seconds["mean"], "sampling seconds per prompt")]):
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
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded minor labels
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
    compared = [row for row in rows if row[0] != "bon"]
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


# ---- The report

def _first(flat: dict, *keys: str):
    """The value of the first of ``keys`` that a flattened config has (JSON-encoded by ``_flatten``)."""
    return next((json.loads(flat[k]) for k in keys if k in flat), None)


def header_text(sweep_dir: Path, settings: list[Setting], launched: int | None, cells: dict) -> str:
    flat = _flatten(settings[0].config)
    guided = next((_flatten(s.config) for s in settings if s.method not in ("base", "bon")), flat)
    prompts = {s.benchmark: len(s.records) for s in settings}
    jobs = sum(len(s.dirs) for s in settings)
    of_grid = f" (the sweep's grid has {launched})" if launched is not None else ""
    text = (f"# Sweep report: {sweep_dir}\n\n{len(settings)} setting(s) from {jobs} job(s){of_grid}. "
            f"Model `{_first(flat, 'model.name')}`, guiding reward `{_first(flat, 'reward.name')}`, "
            f"K={_first(flat, 'num_samples')}, L={_first(flat, 'sampler.gen_length')}, "
            f"T={_first(flat, 'sampler.steps')}, "
            f"M={_first(guided, 'method.guidance.inner_steps', 'method.inner_steps', 'guidance.inner_steps')}, "
            f"eta={_first(guided, 'method.guidance.lr', 'method.lr', 'guidance.lr')}; "
            f"prompts per seed {', '.join(f'{n} ({b})' for b, n in sorted(prompts.items()))}; seeds "
            f"{', '.join(map(str, sorted({s.seed for s in settings})))}.\n\n"
            "In the first two tables, cells are mean ± standard error over seeds of the per-seed mean over prompts")
    if any(len(c) == 1 for c in cells.values()):
        text += " († one seed: standard error over its prompts)"
    return text + ". A cell built from fewer seeds than the sweep ran says so: [n of m seeds: the seeds it has]."


def build(sweep_dir: Path, out_dir: Path, judges: list[str] = ()) -> tuple[str, list[str]]:
    """Write the report; returns the Markdown and the list of what was left out. ``judges``: names of
    ``conf/eval_reward`` configs that score every stored answer."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a directory; pass a sweep directory (outputs/sweeps/<name>)")
    rejudges = [load_judge(name) for name in judges]
    found = job_dirs(sweep_dir)
    grid = read_jobs(sweep_dir)
    problems = missing_from_grid(grid, found, sweep_dir) if grid is not None else []
    jobs, job_problems = load_jobs(sweep_dir, found)
    settings, shard_problems = merge_shards(jobs, sweep_dir)
    problems += job_problems + shard_problems
    label_variants(settings)
    problems += check_baselines(settings)
    out_dir.mkdir(parents=True, exist_ok=True)

    if not settings:
        text = f"# Sweep report: {sweep_dir}\n\nNo finished job to report.\n"
        if problems:
            text += "\n## Left out\n\n" + "".join(f"- {p}\n" for p in problems)
        write_atomic(out_dir / "report.md", text)
        return text, problems or [f"{sweep_dir} holds no job results (no summary.json below it)"]
    for judge in rejudges:
        rejudge(settings, judge)

    cells: dict[tuple, list[Setting]] = defaultdict(list)
    for setting in settings:
        cells[((setting.method, setting.variant), setting.benchmark)].append(setting)
    for cell in cells.values():
        cell.sort(key=lambda s: s.seed)
    rows = row_order({row for row, _ in cells})
    benchmarks = sorted({b for _, b in cells})
    held_out = sorted({recorded_judge(r) for s in settings for r in s.records[:1]} - {None}
                      | {judge.name for judge in rejudges})

    # the seeds each cell should have: those its recorded jobs ran, and those of its row and column
    recorded_seeds: dict[str, set[int]] = defaultdict(set)
    for job in grid or []:
        recorded_seeds[cell_key(job["settings"])].add(job["settings"]["seed"])
    expected, problems_seen = {}, "\n".join(problems)
    for (row, benchmark), cell in cells.items():
        seeds = recorded_seeds[cell_key(cell[0].config)] | {s.seed for s in cell}
        seeds |= {s.seed for (r, b), c in cells.items() if r == row or b == benchmark for s in c}
        expected[(row, benchmark)] = sorted(seeds)
        for seed in sorted(seeds - {s.seed for s in cell}) if grid is None else []:  # else named by the record
            if cell_label(row[0], benchmark, seed) not in problems_seen:
                problems.append(f"{cell_label(row_name(row), benchmark, seed)}: no job directory found, though other "
                                f"cells of the sweep have seed {seed} -- launch it (the sweep has no sweep.json "
                                "naming its jobs)")

    def seeds_of(row, benchmark) -> tuple[list[int], list[int]]:
        return [s.seed for s in cells.get((row, benchmark), [])], expected.get((row, benchmark), [])

    long_rows = []

    def record_stat(row, benchmark, metric, stat) -> None:
        if stat:
            have, want = seeds_of(row, benchmark)
            long_rows.append([row[0], row[1], benchmark, metric, stat.get("mean", stat.get("rate")),
                              stat.get("stderr", ""), len(have), len(want), stat.get("low", ""),
                              stat.get("high", "")])

    sections = []
    for metric, title, part in [("top1_reward", "Top-1 reward (the answer's reward by the guiding reward model)",
                                 lambda s: s.top1),
                                ("mean_reward", "Mean@K reward", lambda s: s.mean_at_k)]:
        table = []
        for row in rows:
            line = [row_name(row)]
            for benchmark in benchmarks:
                cell = cells.get((row, benchmark))
                stat = over_seeds(cell, lambda s, r, part=part: part(s.scores(GUIDE, r))) if cell else None
                record_stat(row, benchmark, metric, stat)
                line.append(fmt(stat) + seeds_note(*seeds_of(row, benchmark)) if cell else "—")
            table.append(line)
        sections.append(f"## {title}\n\n" + markdown_table(["method", *benchmarks], table))

    judged = {(row, benchmark, judge): judge_stats(cell, judge)  # seeded 10k bootstraps: once per cell and judge
              for (row, benchmark), cell in cells.items() for judge in [GUIDE, *held_out]}
    for judge in [GUIDE, *held_out]:
        title = ("Judged by the guiding reward model" if judge == GUIDE
                 else f"Judged by `{judge}` (held out: guidance never sees it)")
        parts = [f"## {title}\n\nPaired with best-of-K prompt by prompt (same prompts and seeds): mean ± standard "
                 "error over prompts, each prompt averaged over its seeds first, [normal 95% interval]; win-rate: "
                 "ties count half, [95% bootstrap interval over prompts]."
                 + ("" if judge == GUIDE or judge in {j.name for j in rejudges} else
                    f" Mean@K needs every answer scored: `--judge {judge}`.")]
        for benchmark in benchmarks:
            table, verdicts = [], []
            for row in rows:
                if (row, benchmark) not in cells:
                    continue
                stats = judged[(row, benchmark, judge)]
                if not any(stats.values()):
                    continue
                for metric, stat in stats.items():
                    record_stat(row, benchmark, f"{judge}/{metric}", stat)
                have, want = seeds_of(row, benchmark)
                table.append([row_name(row), *(fmt(stats[m], signed=m == "gain", interval=m == "gain") for m, *_ in JUDGE_COLUMNS),
                              fmt(stats["win_rate"]), ", ".join(map(str, have)) + seeds_note(have, want)])
                verdicts += filter(None, [verdict(row_name(row), stats)])
            if not table:
                continue
            header = ["method", *(h for _, h, *_ in JUDGE_COLUMNS), "top-1 win-rate over bon [95% CI]", "seeds"]
            parts.append((f"### {benchmark}\n\n" if len(benchmarks) > 1 else "") + markdown_table(header, table)
                         + ("\n\n" + "\n".join(verdicts) if verdicts else ""))
        sections.append("\n\n".join(parts))

    cost_table, cost_keys = [], sorted({k for s in settings for r in s.records for k in r.cost})
    for row in rows:
        cell_settings = [s for b in benchmarks for s in cells.get((row, b), [])]
        records = [r for s in cell_settings for r in s.records]
        peaks = [summary.get("cost_total", {}).get("peak_memory_bytes")
                 for s in cell_settings for summary in s.summaries]
        per_prompt_cost = [sum(r.cost.get(k, 0) for r in records) / len(records) for k in cost_keys]
        known_peaks = [p for p in peaks if p is not None]
        cost_table.append([row_name(row), *(f"{v:.2f}" if v < 100 else f"{v:.0f}" for v in per_prompt_cost),
                           f"{max(known_peaks) / 2**20:.0f}" if known_peaks else "—"])
    sections.append("## Cost per prompt\n\nMean per prompt of each cost a result records (model evaluations count "
                    "sequences, K samples each; best-of-K's are those of its shared samples). Peak memory is the "
                    "largest of any job (GPU allocated, else resident set).\n\n" + markdown_table(
                        ["method", *(k.replace("_", " ") for k in cost_keys), "peak MiB"], cost_table))

    cost_judges, costs = {}, {}
    for benchmark in benchmarks:
        cost_judges[benchmark], costs[benchmark] = cost_points(cells, rows, benchmark, held_out, judged)
        for point in costs[benchmark]:
            for metric, value in [*((f"flops_{k}", point.flops[k]) for k in ("dllm", "reward_forward",
                                                                              "reward_backward", "total")),
                                  ("relative_flops", point.relative_flops),
                                  ("relative_seconds", point.relative_seconds)]:
                record_stat(point.row, benchmark, f"cost/{metric}", {"mean": value} if value is not None else None)
            record_stat(point.row, benchmark, "cost/seconds", point.seconds)
    sections += filter(None, [cost_relative_table(costs)])

    images = [plot_rewards(cells, rows, benchmarks, out_dir), plot_denoising(cells, rows, benchmarks, out_dir),
              plot_win_rates(cells, rows, benchmarks, [GUIDE, *held_out], judged, out_dir),
              *(plot_cost(b, cost_judges[b], costs[b], out_dir) for b in benchmarks),
              plot_relaxation(cells, rows, benchmarks, out_dir)]
    text = "\n\n".join([header_text(sweep_dir, settings, len(grid) if grid is not None else None, cells), *sections,
                        *[f"![{name}]({name})" for name in images if name]]) + "\n"
    if problems:
        text += "\n## Left out\n\n" + "".join(f"- {p}\n" for p in problems)
    write_atomic(out_dir / "report.md", text)

    buffer = io.StringIO()
    writer = csv.writer(buffer)  # the paper's layout, top-1 reward: one row per method, mean and stderr per benchmark
    writer.writerow(["method", *[f"{b} {part}" for b in benchmarks for part in ("mean", "stderr", "seeds")]])
    for row in rows:
        line = [row_name(row)]
        for benchmark in benchmarks:
            stat = next((r for r in long_rows if r[:4] == [row[0], row[1], benchmark, "top1_reward"]), None)
            line += [stat[4], stat[5], stat[6]] if stat else ["", "", ""]
        writer.writerow(line)
    write_atomic(out_dir / "table.csv", buffer.getvalue())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "variant", "benchmark", "metric", "value", "stderr", "seeds", "seeds_expected",
                     "low95", "high95"])
    writer.writerows(long_rows)
    write_atomic(out_dir / "results.csv", buffer.getvalue())
    return text, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m entrgi.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory, e.g. outputs/sweeps/<name>")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: <sweep_dir>/report)")
    parser.add_argument("--judge", action="append", default=[], metavar="NAME",
                        help="also score every stored answer with this judge (a conf/eval_reward config: "
                             "keywords, lexical, skywork_8b); repeatable")
    args = parser.parse_args(argv)
    from entrgi.training.report import training_runs, write_training_report

    if training_runs(args.sweep_dir):  # post-training runs (python -m entrgi.train): their own report
        print(f"report written to {write_training_report(args.sweep_dir, args.out or args.sweep_dir / 'report')}")
        return 0
    from entrgi.evaluation.harness_report import harness_runs, write_harness_report

    if harness_runs(args.sweep_dir):  # lm-eval jobs (python -m entrgi.evaluate): tasks x methods
        print(f"report written to {write_harness_report(args.sweep_dir, args.out or args.sweep_dir / 'report')}")
        return 0
    out = args.out or args.sweep_dir / "report"
    try:
        text, problems = build(args.sweep_dir, out, args.judge)
    except (FileNotFoundError, ConfigError) as error:
        print(f"entrgi.report: error: {error}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"entrgi.report: left out: {problem}", file=sys.stderr)
    if "No finished job" in text:
        print(f"entrgi.report: error: no finished job in {args.sweep_dir}; nothing to report", file=sys.stderr)
        return 1
    print(f"report written to {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
