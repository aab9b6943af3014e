"""Each prompt's answer against best-of-K's on the same prompt, and a job's summary.

Plain functions on ``PromptResult`` records: the runner, the scripts and a notebook use the same.
"""

from __future__ import annotations

from entrgi.bookkeeping.records import PromptResult
from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.judges import Judge, judge_against_baseline, summarize_judged
from entrgi.evaluation.metrics import mean_stderr, outcomes, win_rate


def compare_with_baseline(records: list[PromptResult], baseline: list[PromptResult], prompts: list[Prompt],
                          judge: Judge | None, answers: list[int]) -> list[PromptResult]:
    """Pair each prompt's answer (sample ``answers[i]``) with best-of-K's top-1: rewards, judge scores,
    outcomes (1 / 0.5 / 0 by the guide and by the judge). Fills the records' comparison fields."""
    for record, base, answer in zip(records, baseline, answers):
        if record.id != base.id:
            raise ValueError(f"records and baseline are not in the same prompt order ({record.id} vs {base.id})")
        record.baseline = {"method": "bon", "response": base.responses[base.best_index],
                           "top1_reward": base.top1_reward}
        record.outcome = {"guide": outcomes([record.rewards[answer]], [base.top1_reward])[0]}
        record.answer_index = answer
    if judge is not None:
        rows = judge_against_baseline(judge, prompts, [r.responses[a] for r, a in zip(records, answers)],
                                      [r.baseline["response"] for r in records])
        for record, row in zip(records, rows):
            record.outcome["judge"] = row.pop("outcome")  # None where the judge could not judge the prompt
            record.judge = {k: v for k, v in row.items() if k != "id"}
    return records


def summarize(records: list[PromptResult], seed: int, **facts) -> dict:
    """A job's summary: means with standard errors, win-rates against best-of-K with bootstrap 95%
    intervals (seeded by ``seed``), the prompt ids and the costs, per prompt and in total; ``facts``
    are recorded as given (a ``cost_total`` among them is extended)."""
    names = {"seconds": "sampling_seconds"}  # a record's share of its batch's sampling time
    total = {names.get(k, k): sum(r.cost.get(k, 0) for r in records) for k in records[0].cost} if records else {}
    summary = {
        **facts, "seed": seed, "num_prompts": len(records),
        "top1_reward": mean_stderr([r.top1_reward for r in records]),
        "mean_reward": mean_stderr([r.mean_reward for r in records]),
        "prompt_ids": [r.id for r in records],
        "cost_per_prompt": {k: v / len(records) for k, v in total.items()},
        "cost_total": {**total, **facts.get("cost_total", {})},
    }
    if records and records[0].outcome is not None:
        summary.setdefault("baseline", {})["top1_reward"] = mean_stderr([r.baseline["top1_reward"] for r in records])
        summary["win_rate"] = {"guide": win_rate([r.outcome["guide"] for r in records], seed=seed)}
        if records[0].judge is not None:  # its means, win-rate and the prompts it could not judge
            summary["judge"] = summarize_judged([{**r.judge, "id": r.id, "outcome": r.outcome["judge"]}
                                                 for r in records], seed=seed)
            summary["win_rate"]["judge"] = summary["judge"]["win_rate"]
    return summary


def print_summary(summary: dict, out_dir) -> None:
    """The console lines of a job's summary."""
    top1, mean = summary["top1_reward"], summary["mean_reward"]
    choices = " ".join(summary.get("overrides") or [])
    print(f"\n{summary['method']}{f' ({choices})' if choices else ''} on {summary['benchmark']} "
          f"({summary['num_prompts']} prompts x {summary['num_samples']} samples, seed {summary['seed']})")
    print(f"  top-1 reward  {top1['mean']:+.4f} +- {top1['stderr']:.4f}")
    print(f"  mean@K reward {mean['mean']:+.4f} +- {mean['stderr']:.4f}")
    if "win_rate" in summary:
        base = summary["baseline"]["top1_reward"]
        print(f"  bon top-1     {base['mean']:+.4f} +- {base['stderr']:.4f}  (the baseline, same prompts)")
        for kind, rate in summary["win_rate"].items():
            judge = f" ({rate['judge']})" if "judge" in rate else ""
            print(f"  win-rate vs bon, {kind}{judge}: {rate['rate']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}]")
        judge = summary.get("judge", {})
        if "top1" in judge:
            print(f"  judge {judge['judge']}: top-1 {judge['top1']['mean']:.4f} +- {judge['top1']['stderr']:.4f}, "
                  f"bon top-1 {judge['baseline_top1']['mean']:.4f} +- {judge['baseline_top1']['stderr']:.4f}")
        if judge.get("unscorable", {}).get("count"):
            print(f"  judge {judge['judge']} could not judge {judge['unscorable']['count']} prompt(s): see summary.json")
    cost = summary["cost_total"]
    print(f"  wall-clock    {cost['job_wall_clock_seconds']:.1f} s for the job ({cost['sampling_seconds']:.1f} s "
          f"sampling), peak memory {cost['peak_memory_bytes'] / 2**20:.0f} MiB")
    print(f"  results in    {out_dir}")
