"""The block modes on the tiny testbed: EntRGi with each cache and parallel-decoding mode against EntRGi
as today, and how far the approximate caches move unguided samples. Writes the block-modes section of
docs/results-tiny.md (between its ``block-modes`` markers).

On the held-out tiny prompts (K = 4), per mode: denoising and guided steps per sample, dLLM and
reward FLOPs and CPU seconds per prompt, the guiding reward, and the keyword judge's win-rate of
the top-1 answer over best-of-K as today (the default sampler), prompt by prompt with a bootstrap
95% interval; each mode against today's EntRGi on the same prompts (the change of that win-rate, and
the mode's top-1 answer judged against today's). The caches' agreement: best-of-K's samples with
each cache against the same blocks without one (share of identical samples, mean reward difference).

    nice -n 10 python scripts/block_study.py --seeds 0        # one seed
    python scripts/block_study.py --seeds 0 --num-prompts 8   # a quick look
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402
from cost_study import judge_all, per_prompt, run_job, seeds_of, study_parser, tables, write_block  # noqa: E402

from entrgi.costs import read_summary  # noqa: E402
from entrgi.evaluation.judges import make_judge  # noqa: E402
from entrgi.evaluation.metrics import mean_stderr, outcomes, win_rate  # noqa: E402

START, END = "<!-- block-modes:start -->", "<!-- block-modes:end -->"
BLOCKS = "sampler.block_length=8"
MODES = {  # label -> sampler overrides (L = 32, T = 16 unless set)
    "entrgi": [],
    "entrgi_prefix": [BLOCKS, "sampler.cache=prefix"],
    "entrgi_dual": [BLOCKS, "sampler.cache=dual"],
    "entrgi_threshold": [BLOCKS, "sampler.threshold=0.1"],
    "entrgi_dual_threshold": [BLOCKS, "sampler.cache=dual", "sampler.threshold=0.1"],
    "entrgi_dual_T8": [BLOCKS, "sampler.cache=dual", "sampler.steps=8"],
}
AGREEMENT = {"bon_blocks": [BLOCKS], "bon_prefix": [BLOCKS, "sampler.cache=prefix"],
             "bon_dual": [BLOCKS, "sampler.cache=dual"]}


def cost_rows(out: Path, labels: list[str], seeds: list[int], records) -> list[str]:
    rows = ["| mode | sampler | denoising steps / sample | guided steps / sample | dLLM columns / sample | "
            "dLLM FLOPs | reward FLOPs | total FLOPs | vs today | wall s / prompt |", "|" + " --- |" * 10]
    base = None
    for label in labels:
        summaries = [read_summary(out / f"{label}_s{s}") for s in seeds]
        cost = {k: sum(s["cost_per_prompt"][k] for s in summaries) / len(seeds)
                for k in ("denoising_steps_per_sample", "guided_steps_per_sample", "dllm_columns")}
        flops = {k: sum(s["flops"]["per_prompt"][k] for s in summaries) / len(seeds)
                 for k in ("dllm", "reward_forward", "reward_backward", "total")}
        base = base or flops["total"]
        seconds = mean_stderr(list(per_prompt(records, label, seeds, lambda r: r["cost"]["seconds"]).values()))
        K = summaries[0]["num_samples"]
        rows.append(f"| {label} | {' '.join(MODES.get(label, [])) or 'today'} | "
                    f"{cost['denoising_steps_per_sample']:.2f} | {cost['guided_steps_per_sample']:.2f} | "
                    f"{cost['dllm_columns'] / K:.0f} | {flops['dllm']:.3g} | "
                    f"{flops['reward_forward'] + flops['reward_backward']:.3g} | {flops['total']:.3g} | "
                    f"{base / flops['total']:.2f}x fewer | {seconds['mean']:.2f} |")
    return rows


def paired_rows(records, labels: list[str], seeds: list[int], judged: dict, judge: str) -> list[str]:
    """Each mode against today's EntRGi on the same prompts: the change of its ``judge`` win-rate over
    best-of-K (per prompt, seeds averaged; a bootstrap interval over prompts) and its top-1 answer against
    today's. ``judged``: ``cost_study.judge_all``'s judgements."""

    def outcome(label, other, i):  # the label's top-1 against the other's, averaged over the seeds
        held = seeds_of(records, label, seeds, i)
        return sum(outcomes([judged[judge, label, s, i][0]], [judged[judge, other, s, i][0]])[0]
                   for s in held) / len(held)

    rows = [f"| mode | change of the `{judge}` win-rate over bon against today [95% CI] | "
            f"top-1 win-rate over today's EntRGi [95% CI] |", "| --- | --- | --- |"]
    ids = sorted(set().union(*(records["entrgi", s] for s in seeds)))
    for label in labels[1:]:
        change = win_rate([outcome(label, "bon", i) - outcome("entrgi", "bon", i) for i in ids])
        head = win_rate([outcome(label, "entrgi", i) for i in ids])
        rows.append(f"| {label} | {change['rate']:+.3f} [{change['low']:+.3f}, {change['high']:+.3f}] | "
                    f"{head['rate']:.3f} [{head['low']:.3f}, {head['high']:.3f}] |")
    return rows


def agreement_rows(records, seeds) -> list[str]:
    rows = ["| cache | samples identical to the same blocks without a cache | mean reward difference (cache - none) |",
            "| --- | --- | --- |"]
    for label in ("bon_prefix", "bon_dual"):
        same, diffs = [], []
        for seed in seeds:
            for i, r in records[label, seed].items():
                plain = records["bon_blocks", seed][i]
                same += [a == b for a, b in zip(r["responses"], plain["responses"])]
                diffs += [a - b for a, b in zip(r["rewards"], plain["rewards"])]
        d = mean_stderr(diffs)
        rows.append(f"| {label.removeprefix('bon_')} | {sum(same) / len(same):.3f} ({sum(same)} of {len(same)}) | "
                    f"{d['mean']:+.3f} ± {d['stderr']:.3f} |")
    return rows


def main() -> None:
    parser = study_parser(__doc__.splitlines()[0], "block-study")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    common = [f"benchmark.num_prompts={args.num_prompts}", "batch_size=8", "eval_reward=keywords", "logger=none",
              f"baseline.cache_dir={args.out / 'baselines'}"]
    records = {}
    for label, overrides in {"bon": [], **AGREEMENT, **MODES}.items():
        method = "bon" if label.startswith("bon") else "entrgi"
        for seed in args.seeds:
            records[label, seed] = run_job(args.out / f"{label}_s{seed}",
                                           [f"method={method}", f"seed={seed}", *overrides, *common])
    judges = [make_judge({"type": "keywords", "name": "keywords"})]
    judged = judge_all(records, judges)
    labels = list(MODES)
    prompts = 69 if args.num_prompts == "null" else args.num_prompts
    lines = [f"Setting: {prompts} held-out prompts x seeds {args.seeds}, "
             f"K = 4, gen_length 32, steps 16 (the cap under a threshold), M = 3; blocks of 8 where a mode needs "
             f"them; the keyword judge. Win-rates pair every mode with best-of-K as today.", "",
             f"Command: `python scripts/block_study.py --seeds {' '.join(map(str, args.seeds))}` "
             f"({(time.perf_counter() - started) / 60:.0f} min wall on this run)", "",
             *cost_rows(args.out, labels, args.seeds, records), "",
             *tables(records, ["bon", *labels], args.seeds, judges, judged), "",
             "Each mode against today's EntRGi, prompt by prompt:", "",
             *paired_rows(records, labels, args.seeds, judged, judges[0].name), "",
             "The approximate caches against the same blocks without a cache (best-of-K's samples, unguided):", "",
             *agreement_rows(records, args.seeds)]
    block = "\n".join(lines)
    print(block)
    write_block(args.results, block, START, END)


if __name__ == "__main__":
    main()
