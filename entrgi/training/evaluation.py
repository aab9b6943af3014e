"""Held-out evaluation during post-training: the policy sampled without and with EntRGi guidance.

The training reward of guided samples mixes what guidance adds with what the policy learned, so the
policy is also sampled unguided, on prompts it never trains on, by the methods ``entrgi.run`` uses and
with its padding widths and random streams: the untrained policy's records are ``entrgi.run``'s
samples for the same seed. Per prompt: the K samples' guiding rewards, the best of K (top-1) and a
held-out judge's score of it; against the untrained policy's unguided records (step 0) win-rates with
bootstrap 95% intervals, prompt by prompt, on the guiding reward and on the judge.
"""

from __future__ import annotations

from dataclasses import dataclass

from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.judges.base import Judge
from entrgi.evaluation.metrics import mean_stderr, outcomes, win_rate
from entrgi.methods.base import Method, SamplingSetup

MODES = ("unguided", "guided")


@dataclass
class HeldOut:
    """The held-out prompts and how they are sampled, fixed for a run."""

    prompts: list[Prompt]
    setup: SamplingSetup  # K, the sampler, the seed and the padding widths (those of ``prompts``)
    judge: Judge | None  # pointwise: each answer is scored on its own (None where it declines)
    batch_size: int  # prompts per sampling call


def sample_held_out(held_out: HeldOut, prompts: list[Prompt], method: Method) -> list[dict]:
    """One record per prompt of ``prompts`` (a part of ``held_out.prompts``): responses, rewards, top-1, judge."""
    records = []
    for start in range(0, len(prompts), held_out.batch_size):
        for result in method.sample(held_out.setup, prompts[start:start + held_out.batch_size]):
            records.append({"id": result.id, "responses": result.responses, "rewards": result.rewards,
                            "top1_reward": result.top1_reward, "mean_reward": result.mean_reward,
                            "best_index": result.best_index})
    if held_out.judge is not None and records:
        verdicts = held_out.judge.verdicts(prompts, [r["responses"][r["best_index"]] for r in records])
        for record, verdict in zip(records, verdicts):
            record["judge"] = verdict.score  # None: the judge declined this answer
    return records


def summarize_held_out(records: list[dict], baseline: list[dict], seed: int) -> dict:
    """Means with standard errors, and win-rates of each top-1 over the baseline's top-1, prompt by prompt."""
    by_id = {r["id"]: r for r in baseline}
    paired = [(r, by_id[r["id"]]) for r in records if r["id"] in by_id]
    summary = {"top1_reward": mean_stderr([r["top1_reward"] for r in records]),
               "mean_reward": mean_stderr([r["mean_reward"] for r in records]),
               "win_rate_reward": win_rate(outcomes([r["top1_reward"] for r, _ in paired],
                                                    [b["top1_reward"] for _, b in paired]), seed=seed)}
    if records and "judge" in records[0]:
        judged = [(r, b) for r, b in paired if r["judge"] is not None and b.get("judge") is not None]
        summary["judge"] = mean_stderr([r["judge"] for r in records if r["judge"] is not None])
        summary["win_rate_judge"] = win_rate(outcomes([r["judge"] for r, _ in judged],
                                                      [b["judge"] for _, b in judged]), seed=seed)
    return summary
