"""What every method shares: the sampling setup of a job, and turning sampled rows into records.

A method answers a batch of prompts with records (``PromptResult``). Its only freedom is the step
hook it hands the sampler (none: unguided; reward guidance; particle resampling), what it prepares
once per job, and which of the K samples is its answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from entrgi.bookkeeping.records import PromptResult
from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.flop_model import REWARD_WORK
from entrgi.models.diffusion import DiffusionLM
from entrgi.models.reward import RewardModel
from entrgi.models.scorer import Scorer
from entrgi.sampling.rng import row_key
from entrgi.sampling.sampler import GenerationOutput, SamplerConfig, StepHook, first_block, generate


@dataclass
class SamplingSetup:
    """The models and settings a job samples with; fixed for the whole job."""

    dllm: DiffusionLM
    reward_model: RewardModel | Scorer  # the guide: a reward model, or a scorer of text (derivative-free methods)
    sampler: SamplerConfig
    num_samples: int = 4  # K
    seed: int = 0
    # one padding width for all of a job's prompts (dLLM prompt; reward chat prefix and suffix): a
    # prompt's numbers then depend neither on its batch nor on its shard
    prompt_width: int | None = None
    reward_widths: tuple[int, int] = (0, 0)
    text_width: int = 0  # the width final scoring pads to (``RewardModel.text_width``)
    on_step: Callable[[int, int], None] | None = None  # progress display: (steps done, steps) of a batch

    @classmethod
    def for_prompts(cls, dllm: DiffusionLM, reward_model: RewardModel | Scorer, prompts: list[Prompt],
                    sampler: SamplerConfig, num_samples: int = 4, seed: int = 0) -> "SamplingSetup":
        """A setup whose padding widths fit every prompt of ``prompts`` (take them before sharding).

        Checks that every prompt leaves the model room for the response, before anything is sampled;
        a scorer is told the prompts (their metadata, e.g. IFEval's instruction ids).
        """
        texts = [p.text for p in prompts]
        if isinstance(reward_model, Scorer):
            reward_model.know(prompts)
        prompt_ids = dllm.encode_prompts(texts)
        dllm.check_prompts(prompt_ids, sampler.gen_length)
        return cls(dllm, reward_model, sampler, num_samples, seed, max(map(len, prompt_ids)),
                   reward_model.context_widths(texts), reward_model.text_width(texts, sampler.gen_length))

    def batch_key(self) -> Callable[[Prompt], int] | None:
        """For a block-causal dLLM, a prompt's first response block (``first_block``): the sampler
        steps a batch's rows in groups that share it, one group after another, so batching prompts
        that share it keeps the groups whole. None for a bidirectional model (a batch is one group).
        A prompt's samples do not depend on its batch, so this changes speed, not results."""
        if not self.dllm.attention.is_block_causal:
            return None
        return lambda prompt: first_block(len(self.dllm.encode_prompts([prompt.text])[0]), self.dllm.attention)


@dataclass
class Generation:
    """K samples of each prompt of a batch: rows are prompt-major (prompt i's samples at i*K ... i*K+K-1)."""

    output: GenerationOutput  # tokens [B*K, L], the per-step trace, dLLM forwards
    responses: list[str]
    rewards: list[float]
    seconds: float
    reward_evaluations: dict[str, int]  # reward-model forward and backward passes (sequences) it took


class Method:
    """A way to answer prompts with K samples each. Subclasses set ``hook``; see ``entrgi.methods``."""

    name: str = "method"
    shares_baseline_samples = False  # True: its samples are best-of-K's (read from the shared cache)
    compares_with_baseline = True  # False for best-of-K itself
    needs_reward_gradient = False  # True: it differentiates the reward (a scorer cannot guide it)

    def prepare(self, setup: SamplingSetup, prompts: list[Prompt]) -> dict:
        """Work done once per job, before any batch; returns what the summary should record."""
        return {}

    def hook(self, setup: SamplingSetup, batch: list[Prompt], rows: list[str]) -> StepHook | None:
        """The sampler's step hook for a batch; ``rows`` holds each row's prompt text. None: unguided."""
        return None

    answer_description = "its top-1 of K samples by the guiding reward"  # for the summary
    answers_with_top1 = True

    def answer_index(self, result: PromptResult) -> int:
        """Which sample answers the prompt (compared with best-of-K's answer)."""
        return result.best_index

    def generate(self, setup: SamplingSetup, batch: list[Prompt]) -> Generation:
        K = setup.num_samples
        rows = [p.text for p in batch for _ in range(K)]
        prompt_ids = [ids for ids in setup.dllm.encode_prompts([p.text for p in batch]) for _ in range(K)]
        keys = [row_key(setup.seed, p.id, k) for p in batch for k in range(K)]
        reward_model = setup.reward_model
        before = dict(reward_model.evaluations)
        start = time.perf_counter()
        hook = self.hook(setup, batch, rows)
        out = generate(setup.dllm, prompt_ids, keys, setup.sampler, hook, setup.prompt_width, setup.on_step)
        out.dllm_forwards += getattr(hook, "dllm_forwards", 0)  # a hook's own passes (SVDD's look-ahead)
        out.row_costs.update(getattr(hook, "row_costs", {}))  # and their work per row (``lookahead_*``)
        responses = setup.dllm.decode(out.tokens)
        rewards = reward_model.score_texts(rows, responses, width=setup.text_width)
        spent = {name: reward_model.evaluations[name] - before[name] for name in before}
        return Generation(out, responses, rewards, time.perf_counter() - start, spent)

    def sample(self, setup: SamplingSetup, batch: list[Prompt]) -> list[PromptResult]:
        """Sample, score and summarize one batch of prompts: one record per prompt."""
        generation = self.generate(setup, batch)
        return records_of(batch, generation, setup.num_samples)


# the dLLM work each prompt records from its own rows (``GenerationOutput.row_costs``), for the cost model
ROW_WORK = ("dllm_columns", "dllm_head_columns", "dllm_attention_keys")
# and what a step hook did besides (SVDD's look-ahead: ``StepHook.row_costs``)
LOOKAHEAD = ("lookahead_columns", "lookahead_head_columns", "lookahead_attention_keys")


def step_trace(trace: list[dict], rows: slice) -> dict:
    """A prompt's per-step trace: each statistic's mean over its rows that took part in the step (the
    block modes leave out rows that finished their block: NaN), None at steps without it. Steps of
    another group of rows (a block-causal model's, see ``sampler.generate``) are left out."""
    def mean(value: torch.Tensor) -> float | None:
        value = value[rows].float()
        return None if value.isnan().all() else round(value.nanmean().item(), 5)

    trace = [t for t in trace if not (isinstance(t["committed"], torch.Tensor) and t["committed"][rows].isnan().all())]

    out = {"step": [t["step"] for t in trace],
           "committed": [mean(c) if isinstance(c, torch.Tensor) else c for c in (t["committed"] for t in trace)]}
    names = dict.fromkeys(name for t in trace for name, value in t.items()
                          if isinstance(value, torch.Tensor) and name != "committed")
    for name in names:
        out[name] = [mean(t[name]) if name in t else None for t in trace]
    return out


def records_of(batch: list[Prompt], generation: Generation, num_samples: int) -> list[PromptResult]:
    """One record per prompt from a batch's generation; costs are split evenly over the prompts."""
    B, K = len(batch), num_samples
    cost = {"seconds": generation.seconds / B, "dllm_forwards": generation.output.dllm_forwards / B,
            "reward_forwards": generation.reward_evaluations["forward"] / B,
            "reward_backwards": generation.reward_evaluations["backward"] / B,
            # the guided scores' columns and keys (a scorer counts none)
            **{f"reward_{name}": generation.reward_evaluations[name] / B for name in REWARD_WORK
               if name in generation.reward_evaluations}}
    records = []
    for i, prompt in enumerate(batch):
        rows = slice(i * K, (i + 1) * K)
        # the dLLM work its own rows took (columns computed, steps and guided steps per sample)
        own = {name: value[rows].sum().item() for name, value in generation.output.row_costs.items()}
        if own:
            own = {**{name: own[name] for name in ROW_WORK + LOOKAHEAD if name in own},
                   "denoising_steps_per_sample": own["denoising_steps"] / K,
                   "guided_steps_per_sample": own["guided_steps"] / K, "guided_positions": own["guided_positions"]}
        rewards = generation.rewards[rows]
        best = max(range(K), key=lambda k: rewards[k])
        records.append(PromptResult(
            id=prompt.id, prompt=prompt.text, reference=prompt.reference, responses=generation.responses[rows],
            rewards=rewards, best_index=best, top1_reward=rewards[best], mean_reward=sum(rewards) / K,
            trace=step_trace(generation.output.trace, rows), cost={**cost, **own}))
    return records
