"""A sweep's jobs as the report reads them: finished jobs, their shards merged into settings (one method
on one benchmark with one seed), each row's label, the baselines they were compared with, and the
scores of every judge -- the guiding reward model, the held-out judge a run recorded, and any judge
the report re-scores the stored answers with (``--judge``)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from entrgi.bookkeeping.records import PromptResult, flatten
from entrgi.bookkeeping.settings import NOT_RESULTS, differences, digest
from entrgi.bookkeeping.storage import parse_jsonl
from entrgi.errors import ConfigError
from entrgi.evaluation.metrics import outcomes

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# the table's own axes, and keys that do not change results: never part of a row's label
AXES = ("method.name", "benchmark.name")
NOT_VARIANT = ("seed", "shard.", *(f"{key}." for key in NOT_RESULTS), *NOT_RESULTS)
GUIDE = "guide"  # the judge name of the guiding reward model in tables and results.csv


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
            settings = json.loads((job_dir / "settings.json").read_text())["settings"]
            where = f"{where} ({cell_label(*identity(settings))})"
        records, cut = _read_records(job_dir / "results.jsonl")
        cut_note = "; its last line is cut short" if cut else ""
        if not (job_dir / "summary.json").exists():
            problems.append(f"{where}: unfinished (no summary.json; results.jsonl has {len(records)} complete "
                            f"prompt(s){cut_note}) -- re-launch the sweep to finish it")
            continue
        summary = json.loads((job_dir / "summary.json").read_text())
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

