"""A judge's word on a method's answers against best-of-K's, prompt by prompt, and what it adds up to:
``judge_against_baseline`` runs either kind of judge, ``summarize_judged`` aggregates what it returns.

A judge that the guidance never saw is how reward hacking shows: the guided method may beat
best-of-K on the guiding reward model yet not on a held-out one.
"""

from __future__ import annotations

import time
from collections import Counter

from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.judges.base import Judge, PairwiseJudge
from entrgi.evaluation.metrics import mean_stderr, outcomes, win_rate


def judge_against_baseline(judge: Judge | PairwiseJudge, prompts: list[Prompt], answers: list[str],
                           baseline_answers: list[str]) -> list[dict]:
    """Judge each prompt's answer against the baseline's answer, all prompts in one call.

    One dict per prompt: ``id``, ``name`` (the judge), ``top1`` and ``baseline_top1`` (the judge's scores of
    the two answers; None from a pairwise judge or where unscorable), ``outcome`` (1 / 0.5 / 0 for the answer,
    None when the prompt could not be judged), ``details``, ``error`` (why not, or None) and ``cost``
    (this prompt's share of the judge's sequences, ``forwards``, and wall-clock ``seconds``).
    """
    if not len(prompts) == len(answers) == len(baseline_answers):
        raise ValueError(f"{len(prompts)} prompts, {len(answers)} answers, {len(baseline_answers)} baseline answers")
    n = len(prompts)
    start, forwards = time.perf_counter(), judge.forwards
    if getattr(judge, "pairwise", False):
        pairs = judge.compare(prompts, answers, baseline_answers)
        rows = [{"top1": None, "baseline_top1": None, "outcome": v.score, "details": v.details, "error": v.error}
                for v in pairs]
    else:
        verdicts = judge.verdicts(prompts + prompts, answers + baseline_answers)
        rows = []
        for mine, theirs in zip(verdicts[:n], verdicts[n:]):
            errors = [f"{which}: {v.error}" for which, v in (("answer", mine), ("baseline answer", theirs))
                      if v.score is None]
            scorable = not errors
            details = {"top1": mine.details, "baseline_top1": theirs.details} if mine.details or theirs.details else {}
            rows.append({"top1": mine.score, "baseline_top1": theirs.score,
                         "outcome": outcomes([mine.score], [theirs.score])[0] if scorable else None,
                         "details": details, "error": "; ".join(errors) or None})
    cost = {"forwards": (judge.forwards - forwards) / max(n, 1), "seconds": (time.perf_counter() - start) / max(n, 1)}
    return [{"id": p.id, "name": judge.name, **row, "cost": dict(cost)} for p, row in zip(prompts, rows)]


def _accuracies(details: list[dict]) -> dict[str, float]:
    """Micro-averaged accuracies from the answers' ``accuracy_counts`` ({metric: [hits, total]})."""
    hits, totals = Counter(), Counter()
    for d in details:
        for metric, (hit, total) in d.get("accuracy_counts", {}).items():
            hits[metric] += hit
            totals[metric] += total
    return {metric: hits[metric] / totals[metric] for metric in totals if totals[metric]}


def summarize_judged(rows: list[dict], seed: int = 0) -> dict:
    """What ``judge_against_baseline``'s rows add up to, over the prompts both answers could be judged on.

    ``top1`` / ``baseline_top1``: mean and standard error of the judge's scores (absent for a pairwise
    judge); ``win_rate``: the bootstrap win-rate of the outcomes, with the judge's name; ``unscorable``:
    how many prompts could not be judged and why; ``accuracy``: the judges' own accuracies per side
    (IFEval's prompt- and instruction-level, strict and loose); ``cost``: the judge's sequences and seconds.
    """
    scorable = [r for r in rows if r["outcome"] is not None]
    name = rows[0]["name"] if rows else None
    summary = {"judge": name, "num_prompts": len(rows),
               "win_rate": {**win_rate([r["outcome"] for r in scorable], seed=seed), "judge": name},
               "unscorable": {"count": len(rows) - len(scorable),
                              "prompts": [{"id": r["id"], "error": r["error"]} for r in rows if r["outcome"] is None]},
               "cost": {key: sum(r["cost"][key] for r in rows) for key in ("forwards", "seconds")}}
    if any(r["top1"] is not None for r in scorable):
        for side in ("top1", "baseline_top1"):
            summary[side] = mean_stderr([r[side] for r in scorable])
    accuracy = {side: _accuracies([r["details"][side] for r in scorable if side in r["details"]])
                for side in ("top1", "baseline_top1")}
    if any(accuracy.values()):
        summary["accuracy"] = accuracy
    return summary
