"""Sampling for post-training: K completions per prompt, unguided or EntRGi-guided, scored by the reward model.

The one place training calls the sampler (``entrgi.sampling.sampler.generate``) and the guidance
(``entrgi.sampling.guidance.RewardGuidance``), the way ``entrgi.run`` samples a batch: the bridge
from ``RewardModel.bridge``, the reward context of each row's prompt, ``row_key`` random streams,
and final scores on decoded text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.models.diffusion import DiffusionLM
from entrgi.models.reward import RewardModel
from entrgi.sampling.guidance import RewardGuidance, guided_steps
from entrgi.sampling.rng import row_key
from entrgi.sampling.sampler import SamplerConfig, generate
from entrgi.sampling.schedules import Schedule


@dataclass
class Guidance:
    """What a guided step needs besides the sampler settings; built once per run by :func:`make_guidance`."""

    table: torch.Tensor  # the vocabulary bridge: reward embeddings indexed by dLLM token id
    schedule: Schedule  # (phi, t) -> entropy weight w
    inner_steps: int  # M
    lr: float  # eta
    steps: set[int] | None  # the denoising steps guided (None: all)
    coverage: dict  # the bridge's summary, for the run's records


def make_guidance(dllm: DiffusionLM, reward: RewardModel, schedule, *, inner_steps: int, lr: float,
                  sampler_steps: int, every: int = 1, window=None, unmatched: str = "retokenize",
                  min_coverage: float = 0.0) -> Guidance:
    """The bridge from ``dllm``'s vocabulary into ``reward``'s, refused below ``min_coverage``."""
    bridge = reward.bridge(dllm.tokenizer, dllm.vocab_size, unmatched, ignore=(dllm.mask_id,))
    if bridge.coverage < min_coverage:
        raise ConfigError(f"only {bridge.coverage:.1%} of the dLLM's tokens are reward tokens (reward.min_coverage="
                          f"{min_coverage}); pick a reward model with the dLLM's tokenizer or lower reward.min_coverage")
    steps = guided_steps(sampler_steps, every, tuple(window) if window else None)
    return Guidance(bridge.table, schedule, inner_steps, lr, steps, bridge.summary())


@dataclass
class Completions:
    """``num_samples`` completions of each prompt, prompt-major (row ``i * K + k`` is sample k of prompt i)."""

    prompt_ids: list[list[int]]  # each row's prompt tokens (chat template applied)
    tokens: torch.Tensor  # [N, L] the completion tokens
    texts: list[str]  # decoded up to the first EOS
    rewards: list[float]  # the reward model's scores of the texts
    cost: dict  # seconds, dLLM forwards, reward-model forwards and backwards (sequences)


def sample_keys(prompts: list[Prompt], num_samples: int, seed: int, step: int | None) -> list[int]:
    """Each row's random stream. ``step=None`` gives ``entrgi.run``'s keys (the same seed, the same
    samples); a training step is mixed into the prompt's key so each step draws fresh samples."""
    return [row_key(seed, p.id if step is None else f"{p.id}\x1estep{step}", k)
            for p in prompts for k in range(num_samples)]


def sample_completions(dllm: DiffusionLM, reward: RewardModel, prompts: list[Prompt], num_samples: int,
                       sampler: SamplerConfig, guidance: Guidance | None, seed: int, step: int | None = None,
                       prompt_width: int | None = None, context_widths: tuple[int, int] | None = None) -> Completions:
    """Sample and score ``num_samples`` completions per prompt; EntRGi-guided when ``guidance`` is given.

    ``prompt_width`` and ``context_widths`` fix the padding (as ``entrgi.run`` does for a whole run),
    so a prompt's samples do not depend on the other prompts of its batch.
    """
    texts = [p.text for p in prompts for _ in range(num_samples)]
    prompt_ids = [ids for ids in dllm.encode_prompts([p.text for p in prompts]) for _ in range(num_samples)]
    evaluations = dict(reward.evaluations)
    start = time.perf_counter()
    guide = None
    if guidance is not None:
        context = reward.context(texts, context_widths or reward.context_widths(texts))
        guide = RewardGuidance(reward, guidance.table, context, guidance.schedule, sampler,
                               torch.tensor(dllm.eos_ids, device=dllm.device), guidance.inner_steps, guidance.lr,
                               guidance.steps)
    out = generate(dllm, prompt_ids, sample_keys(prompts, num_samples, seed, step), sampler, guide, prompt_width)
    responses = dllm.decode(out.tokens)
    scores = reward.score_texts(texts, responses)
    cost = {"seconds": time.perf_counter() - start, "dllm_forwards": out.dllm_forwards,
            **{f"reward_{name}s": reward.evaluations[name] - evaluations[name] for name in evaluations}}
    return Completions(prompt_ids, out.tokens, responses, scores, cost)
