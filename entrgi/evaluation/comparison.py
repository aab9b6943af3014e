"""Each prompt's answer against best-of-K's on the same prompt, and a job's summary.

Plain functions on ``PromptResult`` records: the runner, the scripts and a notebook use the same.
"""

from __future__ import annotations

from entrgi.bookkeeping.progress import add_to_log_files
from entrgi.bookkeeping.records import PromptResult
from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.judges.against_baseline import judge_against_baseline, summarize_judged
from entrgi.evaluation.judges.base import Judge
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
    are recorded as given (a ``cost_total`` among them is extended).

    ``answer_reward`` is the guiding reward of the sample each prompt is answered with (the one
    compared with best-of-K; the top-1 where no comparison chose one), ``top1_reward`` the best of the
    K samples: they differ for a method that does not answer with its top-1 (``base``)."""
    names = {"seconds": "sampling_seconds"}  # a record's share of its batch's sampling time
    total = {names.get(k, k): sum(r.cost.get(k, 0) for r in records) for k in records[0].cost} if records else {}
    answers = [r.best_index if r.answer_index is None else r.answer_index for r in records]
    summary = {
        **facts, "seed": seed, "num_prompts": len(records),
        "answer_reward": mean_stderr([r.rewards[a] for r, a in zip(records, answers)]),
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


def _figure(stat: dict, digits: int = 4) -> str:
    return f"{stat['mean']:+.{digits}f} +- {stat['stderr']:.{digits}f}"


def summary_lines(summary: dict, out_dir) -> list[str]:
    """The console lines of a job's summary: one figure a line, each saying what it is of.

    Rewards are the guiding reward model's unless a line names a judge. The method's answer comes
    first; best-of-K's answer on the same prompts (the baseline) beside it."""
    method, choices = summary["method"], " ".join(summary.get("overrides") or [])
    answer = summary.get("answer", "its top-1 of K samples")
    lines = [f"{method}{f' ({choices})' if choices else ''} on {summary['benchmark']} "
             f"({summary['num_prompts']} prompts x {summary['num_samples']} samples, seed {summary['seed']}); "
             f"its answer: {answer}"]
    if "answer_reward" in summary:  # summaries written before it was recorded lack it
        lines.append(f"  answer reward         {_figure(summary['answer_reward'])}  "
                     f"(guiding reward of {method}'s answer)")
    shared = summary.get("baseline", {}).get("shared_samples")  # then its top-1 is bon's answer, below
    if summary.get("answer_is_top1") is False and not shared:
        lines.append(f"  top-1 of its K        {_figure(summary['top1_reward'])}  (not its answer)")
    lines.append(f"  mean of its K         {_figure(summary['mean_reward'])}")
    if "win_rate" in summary:
        base = summary["baseline"]["top1_reward"]
        lines.append(f"  bon answer reward     {_figure(base)}  (best-of-K's top-1, same prompts: the baseline)")
        for kind, rate in summary["win_rate"].items():
            by = f"judge {rate['judge']}" if "judge" in rate else "guiding reward"
            lines.append(f"  win-rate vs bon, {by}: {rate['rate']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}] "
                         f"(95% CI)")
        judge = summary.get("judge", {})
        if "top1" in judge:
            lines.append(f"  judge {judge['judge']}, answer      {_figure(judge['top1'])}")
            lines.append(f"  judge {judge['judge']}, bon answer  {_figure(judge['baseline_top1'])}")
        if judge.get("unscorable", {}).get("count"):
            lines.append(f"  judge {judge['judge']} could not judge {judge['unscorable']['count']} prompt(s): "
                         f"see summary.json")
    cost, baseline = summary["cost_total"], summary.get("baseline", {})
    sampled = baseline.get("prompts_sampled_here")
    drew = (f", drawing best-of-K's samples of {sampled} prompts" if sampled and not baseline.get("shared_samples")
            else "")
    lines.append(f"  wall-clock            {cost['job_wall_clock_seconds']:.1f} s for this job "
                 f"(loading, sampling{drew}, judging)")
    if baseline.get("shared_samples") and sampled is not None and sampled < summary["num_prompts"]:
        lines.append(f"  sampling              {cost['sampling_seconds']:.1f} s (the shared best-of-K samples: "
                     f"{summary['num_prompts'] - sampled} of {summary['num_prompts']} prompts read from the cache, "
                     f"their time spent by the job that drew them)")
    else:
        lines.append(f"  sampling              {cost['sampling_seconds']:.1f} s ({method}'s samples)")
    lines.append(f"  peak memory           {cost['peak_memory_bytes'] / 2**20:.0f} MiB")
    lines.append(f"  results in            {out_dir}")
    return lines


def print_summary(summary: dict, out_dir) -> None:
    """Print a job's summary lines, and add them to the job's log file (Hydra's ``run.log``)."""
    lines = summary_lines(summary, out_dir)
    print("\n" + "\n".join(lines))
    add_to_log_files("summary\n" + "\n".join(lines))
