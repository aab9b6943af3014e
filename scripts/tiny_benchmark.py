"""Does reward guidance beat best-of-K on the embedded testbed? Runs the study and writes docs/results-tiny.md.

Every method x seed runs on all held-out tiny prompts at the same K and sampler settings
(resumable: finished runs and prompts are kept). Then, paired with ``bon`` prompt by prompt:

- the gain in top-1 guiding reward, with a 95% interval;
- for each held-out judge (whether the answer uses the words the prompt asks for, and ROUGE-L
  against the reference), the win-rate of each method's top-1 answer over bon's (ties half),
  with a bootstrap 95% interval over prompts.

Per-prompt numbers are first averaged over seeds, so intervals and standard errors are over
prompts (the unit that varies). Only the block between the ``generated`` markers of the results
file is rewritten; notes outside it are kept.

    nice -n 10 python scripts/tiny_benchmark.py                 # ~1 h of CPU on 2 shared cores
    python scripts/tiny_benchmark.py --seeds 0 --num-prompts 8  # a quick look
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from entrgi.bookkeeping.storage import read_jsonl  # noqa: E402
from entrgi.evaluation.benchmarks import Prompt  # noqa: E402
from entrgi.evaluation.judges import make_judge  # noqa: E402
from entrgi.evaluation.metrics import mean_stderr  # noqa: E402
from entrgi.run import CONF_DIR, run  # noqa: E402

START, END = "<!-- generated:start -->", "<!-- generated:end -->"
METHODS = ("bon", "expectation", "aps", "entrgi")  # base samples exactly as bon does


def run_all(out: Path, methods, seeds, overrides) -> dict:
    """Records per (method, seed), by prompt id; runs what is missing."""
    records = {}
    for seed in seeds:
        for method in methods:
            job = out / f"{method}_s{seed}"
            with initialize_config_dir(CONF_DIR, version_base="1.3"):
                cfg = compose("config", overrides=[f"method={method}", f"seed={seed}", *overrides])
            started = time.perf_counter()
            summary = run(cfg, job)
            print(f"{method} seed {seed}: top-1 reward {summary['top1_reward']['mean']:+.4f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
            records[method, seed] = {r["id"]: r for r in read_jsonl(job / "results.jsonl")}
    return records


def win(a: float, b: float) -> float:
    return 1.0 if a > b else 0.5 if a == b else 0.0


def bootstrap_interval(values: list[float], draws: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling ``values``."""
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(draws))
    return means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def per_prompt(records, method, seeds, value) -> dict[str, float]:
    """``value(record)`` averaged over seeds, per prompt id present in every seed."""
    ids = set.intersection(*(set(records[method, s]) for s in seeds))
    return {i: sum(value(records[method, s][i]) for s in seeds) / len(seeds) for i in sorted(ids)}


def judge_all(records, judges) -> dict:
    """(judge name, method, seed, id) -> (score of the top-1 answer, mean score over the K answers)."""
    judged = {}
    for judge in judges:
        for (method, seed), by_id in records.items():
            for i, r in by_id.items():
                scores = judge.score([Prompt(i, r["prompt"], r["reference"])] * len(r["responses"]), r["responses"])
                judged[judge.name, method, seed, i] = (scores[r["best_index"]], sum(scores) / len(scores))
    return judged


def cell(stats: dict) -> str:
    return f"{stats['mean']:.3f} ± {stats['stderr']:.3f}"


def tables(records, methods, seeds, judges) -> tuple[list[str], dict]:
    """The results tables (markdown lines: the guiding reward, then one per judge) and their numbers."""
    judged = judge_all(records, judges)
    numbers = {}
    rows = ["| method | top-1 reward | mean@K reward | top-1 reward gain over bon [95% CI] | s / prompt |",
            "| --- | --- | --- | --- | --- |"]
    bon_reward = per_prompt(records, "bon", seeds, lambda r: r["top1_reward"])
    for method in methods:
        reward = per_prompt(records, method, seeds, lambda r: r["top1_reward"])
        ids = sorted(reward)
        row = numbers[method] = {
            "ids": ids, "top1_reward": mean_stderr(list(reward.values())),
            "mean_reward": mean_stderr(list(per_prompt(records, method, seeds, lambda r: r["mean_reward"]).values())),
            "seconds": mean_stderr(list(per_prompt(records, method, seeds, lambda r: r["cost"]["seconds"]).values()))}
        gain = "—"
        if method != "bon":
            row["gain"] = stats = mean_stderr([reward[i] - bon_reward[i] for i in ids])
            row["gain_ci"] = (stats["mean"] - 1.96 * stats["stderr"], stats["mean"] + 1.96 * stats["stderr"])
            gain = f"{stats['mean']:+.3f} ± {stats['stderr']:.3f} [{row['gain_ci'][0]:+.3f}, {row['gain_ci'][1]:+.3f}]"
        rows.append(f"| {method} | {cell(row['top1_reward'])} | {cell(row['mean_reward'])} | {gain} | "
                    f"{row['seconds']['mean']:.2f} |")
    for judge in judges:
        rows += ["", f"Judged by `{judge.name}` (held out: guidance never sees it):", "",
                 "| method | top-1 | mean@K | top-1 win-rate over bon [95% CI] |", "| --- | --- | --- | --- |"]
        for method in methods:
            row, ids = numbers[method], numbers[method]["ids"]
            mean_of = lambda column: mean_stderr([sum(judged[judge.name, method, s, i][column] for s in seeds)  # noqa: E731
                                                  / len(seeds) for i in ids])
            row[judge.name] = stats = {"top1": mean_of(0), "mean": mean_of(1)}
            win_rate = "—"
            if method != "bon":
                wins = [sum(win(judged[judge.name, method, s, i][0], judged[judge.name, "bon", s, i][0])
                            for s in seeds) / len(seeds) for i in ids]
                stats["win_rate"], stats["win_rate_ci"] = mean_stderr(wins), bootstrap_interval(wins)
                win_rate = (f"{stats['win_rate']['mean']:.3f} ± {stats['win_rate']['stderr']:.3f} "
                            f"[{stats['win_rate_ci'][0]:.3f}, {stats['win_rate_ci'][1]:.3f}]")
            rows.append(f"| {method} | {cell(stats['top1'])} | {cell(stats['mean'])} | {win_rate} |")
    return rows, numbers


def verdicts(numbers, methods, judges) -> list[str]:
    lines = []
    for method in methods:
        row = numbers[method]
        if method == "bon" or "gain" not in row:
            continue
        low, high = row["gain_ci"]
        reward = "raises" if low > 0 else "lowers" if high < 0 else "does not significantly change"
        said = []
        for judge in judges:
            wlow, whigh = row[judge.name]["win_rate_ci"]
            side = "above" if wlow > 0.5 else "below" if whigh < 0.5 else "not distinguishable from"
            said.append(f"by `{judge.name}`: {side} 0.5 ([{wlow:.3f}, {whigh:.3f}])")
        lines.append(f"- `{method}` {reward} the guiding reward over bon (95% CI [{low:+.3f}, {high:+.3f}]); "
                     f"win-rate over bon {'; '.join(said)}.")
    return lines


def write_results(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else f"# Results on the embedded tiny testbed\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    path.write_text(f"{head}{START}\n{block}\n{END}{rest.split(END, 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "tiny-benchmark")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "results-tiny.md")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--num-prompts", default="null", help="null: every held-out prompt")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 is fastest on a shared machine")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides, e.g. sampler.steps=32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "bon" not in args.methods:
        sys.exit("tiny_benchmark: the comparison needs bon; add it to --methods")
    overrides = [f"benchmark.num_prompts={args.num_prompts}", "batch_size=8", *args.overrides]
    started = time.perf_counter()
    records = run_all(args.out, args.methods, args.seeds, overrides)
    judges = [make_judge({"type": "keywords", "name": "keywords"}),
              make_judge({"type": "lexical", "name": "rouge_l", "metric": "rouge_l"})]
    rows, numbers = tables(records, args.methods, args.seeds, judges)
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    setting = (f"{len(numbers['bon']['ids'])} held-out prompts x seeds {args.seeds}, K = {cfg.num_samples}, "
               f"gen_length {cfg.sampler.gen_length}, steps {cfg.sampler.steps}, M = {cfg.guidance.inner_steps} "
               f"Adam steps at lr {cfg.guidance.lr}; overrides: {' '.join(args.overrides) or 'none'}")
    command = "python scripts/tiny_benchmark.py " + " ".join(sys.argv[1:])
    block = "\n".join([f"Setting: {setting}.", "", f"Command: `{command.strip()}`", "", *rows, "",
                       "Mean ± standard error over prompts (each prompt's value averaged over the seeds first).", "",
                       *verdicts(numbers, args.methods, judges)])
    write_results(args.results, block)
    print(block)
    print(f"wrote {args.results} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
