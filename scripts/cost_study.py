"""Is guidance worth its compute on the tiny testbed? Writes the cost section of docs/results-tiny.md.

On the held-out tiny prompts, judged by the keyword judge (the share of the asked words the top-1
answer uses), paired with best-of-K prompt by prompt:

- ``bon`` and ``entrgi`` at K = 4, ``fk`` (Feynman-Kac steering) with N = 4 particles;
- at EntRGi's cost by FLOPs (docs/cost-model.md): best-of-N (``bon_matched``) and FK with that many
  particles (``fk_matched``); N comes from the first seed's runs (FLOPs do not depend on the seed);
- the relaxation's fidelity (``diagnostics.relaxation=true``) of expectation, APS and EntRGi on the
  first ``--fidelity-prompts`` prompts: the gap between the relaxed score that drove the gradient
  and the hard sample's, and their correlation.

Jobs run with ``entrgi.run.run`` and resume; the report (``entrgi.report``) of the jobs draws the cost
and fidelity plots, copied to ``figures/`` beside the results file. Only the block between the ``cost`` markers of the
results file is rewritten.

    nice -n 10 python scripts/cost_study.py --seeds 0      # one seed (about half an hour on 2 busy cores)
    python scripts/cost_study.py --seeds 0 --num-prompts 8 --fidelity-prompts 4   # a quick look
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from entrgi.bookkeeping.storage import read_jsonl, write_atomic  # noqa: E402
from entrgi.costs import match_compute, matched_samples, read_summary  # noqa: E402
from entrgi.evaluation.benchmarks import Prompt  # noqa: E402
from entrgi.evaluation.judges import make_judge  # noqa: E402
from entrgi.evaluation.metrics import mean_stderr, outcomes, win_rate  # noqa: E402
from entrgi.reporting.sweep import build  # noqa: E402
from entrgi.run import CONF_DIR, run  # noqa: E402

START, END = "<!-- cost:start -->", "<!-- cost:end -->"
FIDELITY = ("expectation", "aps", "entrgi")


def run_job(job: Path, overrides: list[str]) -> dict:
    """Run (or resume) one job; its records by prompt id."""
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    started = time.perf_counter()
    summary = run(cfg, job)
    print(f"{job.name}: top-1 reward {summary['top1_reward']['mean']:+.4f} ({time.perf_counter() - started:.0f} s)",
          flush=True)
    return {r["id"]: r for r in read_jsonl(job / "results.jsonl")}


def seeds_of(records, label, seeds, prompt_id) -> list[int]:
    """The seeds whose jobs hold ``prompt_id`` (all of them, unless each seed drew its own subset of prompts)."""
    return [s for s in seeds if prompt_id in records[label, s]]


def per_prompt(records, label, seeds, value) -> dict[str, float]:
    """``value(record)`` averaged over the seeds that hold the prompt, per prompt id of any seed."""
    ids = set.union(*(set(records[label, s]) for s in seeds))
    return {i: sum(value(records[label, s][i]) for s in seeds_of(records, label, seeds, i))
            / len(seeds_of(records, label, seeds, i)) for i in sorted(ids)}


def judge_all(records, judges) -> dict:
    """(judge name, label, seed, id) -> (score of the top-1 answer, mean score over the N answers)."""
    judged = {}
    for judge in judges:
        for (label, seed), by_id in records.items():
            for i, r in by_id.items():
                scores = judge.score([Prompt(i, r["prompt"], r["reference"])] * len(r["responses"]), r["responses"])
                judged[judge.name, label, seed, i] = (scores[r["best_index"]], sum(scores) / len(scores))
    return judged


def cell(stats: dict) -> str:
    return f"{stats['mean']:.3f} ± {stats['stderr']:.3f}"


def tables(records, labels, seeds, judges, judged: dict | None = None) -> list[str]:
    """Markdown lines, each label against ``bon`` prompt by prompt: the guiding reward, then one table per judge
    (top-1 win-rate: outcomes averaged over the seeds per prompt, bootstrap interval over prompts)."""
    judged = judged if judged is not None else judge_all(records, judges)
    rows = ["| method | top-1 reward | mean@K reward | top-1 reward gain over bon [95% CI] | s / prompt |",
            "| --- | --- | --- | --- | --- |"]
    bon_reward = per_prompt(records, "bon", seeds, lambda r: r["top1_reward"])
    ids = {}
    for label in labels:
        reward = per_prompt(records, label, seeds, lambda r: r["top1_reward"])
        ids[label] = sorted(reward)
        mean_reward = mean_stderr(list(per_prompt(records, label, seeds, lambda r: r["mean_reward"]).values()))
        seconds = mean_stderr(list(per_prompt(records, label, seeds, lambda r: r["cost"]["seconds"]).values()))
        gain = "—"
        if label != "bon":
            stats = mean_stderr([reward[i] - bon_reward[i] for i in ids[label]])
            low, high = stats["mean"] - 1.96 * stats["stderr"], stats["mean"] + 1.96 * stats["stderr"]
            gain = f"{stats['mean']:+.3f} ± {stats['stderr']:.3f} [{low:+.3f}, {high:+.3f}]"
        rows.append(f"| {label} | {cell(mean_stderr(list(reward.values())))} | {cell(mean_reward)} | {gain} | "
                    f"{seconds['mean']:.2f} |")
    for judge in judges:
        rows += ["", f"Judged by `{judge.name}` (held out: guidance never sees it):", "",
                 "| method | top-1 | mean@K | top-1 win-rate over bon [95% CI] |", "| --- | --- | --- | --- |"]
        for label in labels:
            held = {i: seeds_of(records, label, seeds, i) for i in ids[label]}
            top1, mean = (mean_stderr([sum(judged[judge.name, label, s, i][column] for s in held[i]) / len(held[i])
                                       for i in ids[label]]) for column in (0, 1))
            won = "—"
            if label != "bon":
                wins = [sum(outcomes([judged[judge.name, label, s, i][0]], [judged[judge.name, "bon", s, i][0]])[0]
                            for s in held[i]) / len(held[i]) for i in ids[label]]
                stats, interval = mean_stderr(wins), win_rate(wins)
                won = f"{stats['mean']:.3f} ± {stats['stderr']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"
            rows.append(f"| {label} | {cell(top1)} | {cell(mean)} | {won} |")
    return rows


def matched_counts(main: Path, seed: int) -> tuple[int, int, float]:
    """N for best-of-N and for FK at EntRGi's FLOPs per prompt, and best-of-N by seconds."""
    entrgi = read_summary(main / f"entrgi_s{seed}")
    fk = read_summary(main / f"fk_s{seed}")
    match = match_compute(entrgi)
    per_particle = fk["flops"]["per_prompt"]["total"] / fk["num_samples"]
    return matched_samples(match.by_flops), matched_samples(match.guided_flops / per_particle), match.by_seconds


def cost_rows(main: Path, labels: list[str], seeds: list[int], records) -> list[str]:
    """FLOPs and seconds per prompt of each job, and both relative to bon at K = 4."""
    flops = {label: read_summary(main / f"{label}_s{seeds[0]}")["flops"]["per_prompt"] for label in labels}
    seconds = {label: mean_stderr(list(per_prompt(records, label, seeds, lambda r: r["cost"]["seconds"]).values()))
               ["mean"] for label in labels}
    rows = [("| method | N | dLLM FLOPs | reward fwd FLOPs | reward bwd FLOPs | total FLOPs | cost relative to bon "
             "(FLOPs) | s / prompt | cost relative to bon (seconds) |"), "|" + " --- |" * 9]
    for label in labels:
        f = flops[label]
        n = read_summary(main / f"{label}_s{seeds[0]}")["num_samples"]
        rows.append(f"| {label} | {n} | {f['dllm']:.3g} | {f['reward_forward']:.3g} | {f['reward_backward']:.3g} | "
                    f"{f['total']:.3g} | {f['total'] / flops['bon']['total']:.2f} | {seconds[label]:.2f} | "
                    f"{seconds[label] / seconds['bon']:.2f} |")
    return rows


def fidelity_rows(fidelity: Path, seeds: list[int]) -> list[str]:
    """Per method: the relaxed-hard gap and their correlation, over every guided step, prompt and seed."""
    rows = ["| method | mean gap, relaxed - hard reward | mean correlation, relaxed vs hard |", "| --- | --- | --- |"]
    for method in FIDELITY:
        traces = [r["trace"] for s in seeds for r in read_jsonl(fidelity / f"{method}_s{s}" / "results.jsonl")]
        gap = mean_stderr([v for t in traces for v in t["relaxation_gap"] if v is not None])
        corr = mean_stderr([v for t in traces for v in t["relaxation_correlation"] if v is not None and not math.isnan(v)])
        rows.append(f"| {method} | {gap['mean']:+.3f} ± {gap['stderr']:.3f} | {corr['mean']:.3f} ± {corr['stderr']:.3f} |")
    return rows


def write_block(path: Path, block: str, start: str = START, end: str = END) -> None:
    """Replace what lies between the markers ``start`` and ``end`` of ``path`` (appended when absent)."""
    text = path.read_text()
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    write_atomic(path, f"{head}{start}\n{block}\n{end}{rest.split(end, 1)[1]}")


def study_parser(description: str, name: str) -> argparse.ArgumentParser:
    """The arguments every testbed study takes: where its jobs go (``outputs/<name>``), the results page,
    the seeds, the prompts per seed and torch's threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / name)
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "results-tiny.md")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-prompts", default="null", help="null: every held-out prompt")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 is fastest on a shared machine")
    return parser


def main() -> None:
    parser = study_parser(__doc__.splitlines()[0], "cost-study")
    parser.add_argument("--fidelity-prompts", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    # the study's own best-of-K cache: bon's seconds are measured in the same session as the others'
    common = [f"benchmark.num_prompts={args.num_prompts}", "batch_size=8", "eval_reward=keywords", "logger=none",
              f"baseline.cache_dir={args.out / 'baselines'}"]
    main_dir, fidelity_dir = args.out / "main", args.out / "fidelity"
    records = {}
    for label in ("bon", "entrgi", "fk"):
        for seed in args.seeds:
            records[label, seed] = run_job(main_dir / f"{label}_s{seed}", [f"method={label}", f"seed={seed}", *common])
    n_bon, n_fk, n_seconds = matched_counts(main_dir, args.seeds[0])
    for label, method, n in (("bon_matched", "bon", n_bon), ("fk_matched", "fk", n_fk)):
        for seed in args.seeds:
            records[label, seed] = run_job(main_dir / f"{label}_s{seed}",
                                           [f"method={method}", f"seed={seed}", f"num_samples={n}", *common])
    for method in FIDELITY:
        for seed in args.seeds:
            run_job(fidelity_dir / f"{method}_s{seed}", [f"method={method}", f"seed={seed}", "diagnostics.relaxation=true",
                                                         *common[1:], f"benchmark.num_prompts={args.fidelity_prompts}"])

    judges = [make_judge({"type": "keywords", "name": "keywords"})]
    labels = ["bon", "entrgi", "fk", "fk_matched", "bon_matched"]
    against_k = tables(records, labels, args.seeds, judges)
    at_cost = {**records, **{("bon", s): records["bon_matched", s] for s in args.seeds}}
    against_matched = tables(at_cost, ["bon", "entrgi", "fk_matched"], args.seeds, judges)
    figures = args.results.parent / "figures"
    figures.mkdir(exist_ok=True)
    for jobs, plot, name in ((main_dir, "cost_tiny.png", "tiny-cost.png"),
                             (fidelity_dir, "relaxation_fidelity.png", "tiny-relaxation.png")):
        build(jobs, args.out / f"report-{jobs.name}")
        shutil.copy(args.out / f"report-{jobs.name}" / plot, figures / name)
    prompts = len(next(iter(records.values())))
    setting = (f"Setting: {prompts} held-out prompts x seeds {args.seeds}, gen_length 32, steps 16; the keyword "
               f"judge. At EntRGi's FLOPs per prompt (K = 4): best-of-N with N = {n_bon} (by measured seconds "
               f"N = {n_seconds:.1f}), FK with N = {n_fk} particles (default FK: potential diff, lambda 1, "
               f"resampling every 4 steps, systematic).")
    note = ("Mean ± standard error over prompts (each prompt's value averaged over the seeds first); win-rates "
            "with bootstrap 95% intervals over prompts.")
    block = "\n".join([
        setting, "", f"Command: `python scripts/cost_study.py {' '.join(sys.argv[1:])}`", "",
        "Cost per prompt (docs/cost-model.md), relative to bon at K = 4:", "",
        *cost_rows(main_dir, labels, args.seeds, records), "",
        "Against bon at K = 4 (`bon_matched` is best-of-N at EntRGi's cost):", "", *against_k, "",
        f"Against best-of-N at EntRGi's cost (N = {n_bon}; its row is `bon`):", "", *against_matched, "",
        note, "",
        f"Relaxation fidelity ({args.fidelity_prompts} prompts, every guided inner step; `diagnostics.relaxation=true`):",
        "", *fidelity_rows(fidelity_dir, args.seeds), "",
        "![reward and win-rate against cost](figures/tiny-cost.png)", "",
        "![relaxation fidelity per step](figures/tiny-relaxation.png)"])
    write_block(args.results, block)
    print(block)
    print(f"wrote {args.results} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
