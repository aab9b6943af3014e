"""Held-out evaluation during post-training: the policy sampled without and with EntRGi guidance.

The training reward of guided samples mixes what guidance adds with what the policy learned, so the
policy is also sampled unguided, on prompts it never trains on, with ``entrgi.run``'s random streams
(the same seed gives the runner's samples). Per prompt: the K samples' guiding rewards, the best of K
(top-1) and a held-out judge's score of it; against the untrained policy's unguided records (step 0)
win-rates with bootstrap 95% intervals, prompt by prompt, on the guiding reward and on the judge.
"""

from __future__ import annotations

from dataclasses import dataclass

from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.judges import Judge
from entrgi.evaluation.metrics import mean_stderr, outcomes, win_rate
from entrgi.models.diffusion import DiffusionLM
from entrgi.models.reward import RewardModel
from entrgi.sampling.sampler import SamplerConfig
from entrgi.training.sampling import Guidance, sample_completions

MODES = ("unguided", "guided")


@dataclass
class HeldOut:
    """The held-out prompts and how they are sampled, fixed for a run."""

    prompts: list[Prompt]
    num_samples: int
    sampler: SamplerConfig
    seed: int
    judge: Judge | None
    batch_size: int  # prompts per sampling call
    prompt_width: int  # padding fixed over the set: a prompt's samples do not depend on its batch
    context_widths: tuple[int, int]


def held_out_set(dllm: DiffusionLM, reward: RewardModel, prompts: list[Prompt], num_samples: int,
                 sampler: SamplerConfig, seed: int, judge: Judge | None, batch_size: int) -> HeldOut:
    width = max(len(ids) for ids in dllm.encode_prompts([p.text for p in prompts]))
    return HeldOut(prompts, num_samples, sampler, seed, judge, batch_size, width,
                   reward.context_widths([p.text for p in prompts]))


def sample_held_out(dllm: DiffusionLM, reward: RewardModel, held_out: HeldOut, prompts: list[Prompt],
                    guidance: Guidance | None) -> list[dict]:
    """One record per prompt of ``prompts`` (a part of ``held_out.prompts``): responses, rewards, top-1, judge."""
    records = []
    K = held_out.num_samples
    for start in range(0, len(prompts), held_out.batch_size):
        batch = prompts[start:start + held_out.batch_size]
        out = sample_completions(dllm, reward, batch, K, held_out.sampler, guidance, held_out.seed,
                                 prompt_width=held_out.prompt_width, context_widths=held_out.context_widths)
        for i, prompt in enumerate(batch):
            rewards = out.rewards[i * K:(i + 1) * K]
            best = max(range(K), key=lambda k: rewards[k])
            records.append({"id": prompt.id, "responses": out.texts[i * K:(i + 1) * K], "rewards": rewards,
                            "top1_reward": rewards[best], "mean_reward": sum(rewards) / K, "best_index": best})
    if held_out.judge is not None and records:
        scores = held_out.judge.score(prompts, [r["responses"][r["best_index"]] for r in records])
        for record, score in zip(records, scores):
            record["judge"] = score
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
        summary["judge"] = mean_stderr([r["judge"] for r in records])
        summary["win_rate_judge"] = win_rate(outcomes([r["judge"] for r, _ in paired],
                                                      [b["judge"] for _, b in paired]), seed=seed)
    return summary
