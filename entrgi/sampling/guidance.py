"""Reward guidance: the relaxation of masked positions and the inner optimization of the logits.

At a guided step the logits at masked positions become a leaf ``phi`` and take ``inner_steps``
Adam steps on ``-sum(reward)``. Each masked position reaches the reward model as

    e = soft + sg(w * (hard - soft)),  soft = softmax(phi / tau) @ E,  hard = E[x],  x ~ top-p(phi / tau)

one formula for every method: the schedule picks ``w`` (0: continuous relaxation, 1:
straight-through, entropy: EntRGi). The forward value is ``(1 - w) soft + w hard`` and the
gradient always flows through ``soft``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entrgi.bookkeeping.timing import section
from entrgi.errors import ConfigError
from entrgi.models.reward import RewardContext, RewardModel
from entrgi.sampling.rng import RowRandom
from entrgi.sampling.sampler import SamplerConfig, StepState, StepUpdate, sample_nucleus
from entrgi.sampling.schedules import Schedule, always_zero


def relaxed_embeddings(phi: torch.Tensor, table: torch.Tensor, temperature: float, weight: torch.Tensor,
                       hard_tokens: torch.Tensor | None) -> torch.Tensor:
    """``soft + sg(w * (hard - soft))`` for logits ``phi [..., V]``, embeddings ``table [V, H]``.

    ``weight [...]`` is w per position and ``hard_tokens [...]`` the sampled token x.
    """
    return relax(torch.softmax(phi.float() / temperature, dim=-1), table, weight, hard_tokens)


def relax(probs: torch.Tensor, table: torch.Tensor, weight: torch.Tensor, hard_tokens: torch.Tensor | None) -> torch.Tensor:
    """:func:`relaxed_embeddings` from ``probs = softmax(phi / tau)`` (fp32, with its gradient).

    ``hard_tokens=None`` stands for ``w = 0`` everywhere: the embedding is ``soft`` itself.
    """
    soft = probs.to(table.dtype) @ table
    if hard_tokens is None:
        return soft
    hard = table[hard_tokens]
    return soft + (weight.unsqueeze(-1).to(soft.dtype) * (hard - soft)).detach()


def guided_steps(steps: int, every: int = 1, window: tuple[float, float] | None = None) -> set[int] | None:
    """The step indices to guide: every ``every``-th of the ``steps``, within ``window``.

    ``window = (start, stop)`` are fractions of the denoising, e.g. ``(0, 0.5)`` guides the
    first half. ``None`` (``every=1``, no window) guides every step. Guiding fewer steps is
    cheaper and changes the samples.
    """
    if every < 1:
        raise ConfigError(f"method.every={every} must be >= 1 (1 guides every step)")
    if window is not None:
        start, stop = window
        if not 0 <= start < stop <= 1:
            raise ConfigError(f"method.window={list(window)} must be [start, stop] with 0 <= start < stop <= 1")
    if every == 1 and window is None:
        return None
    start, stop = window if window is not None else (0.0, 1.0)
    return {i for i in range(0, steps, every) if start * steps <= i < stop * steps}


def first_eos_keep(tokens: torch.Tensor, eos_ids: torch.Tensor) -> torch.Tensor:
    """1 for the columns strictly before each row's first EOS, else 0."""
    is_eos = torch.isin(tokens, eos_ids)
    return (is_eos.cumsum(-1) == 0).long()


@dataclass
class RewardGuidance:
    """A step hook that optimizes the masked logits towards higher reward before tokens are drawn."""

    reward_model: RewardModel
    table: torch.Tensor  # E: reward input embeddings indexed by dLLM token id, [V, H]
    context: RewardContext  # chat prefix and suffix per row
    schedule: Schedule  # (phi, t) -> w per position
    sampler: SamplerConfig  # tau, top-p, top-k of the hard sample
    eos_ids: torch.Tensor
    inner_steps: int = 3  # M
    lr: float = 0.5  # eta
    steps: set[int] | None = None  # the step indices to guide (see ``guided_steps``); None: all

    def __call__(self, state: StepState) -> StepUpdate | None:
        if self.steps is not None and state.step.index not in self.steps:
            return None
        logits, stats = self.optimize(state.logits, state.positions, state.tokens, state.step.index, state.rng,
                                      state.step.t)
        return StepUpdate(logits=logits, stats=stats)

    def optimize(self, logits: torch.Tensor, positions: torch.Tensor, response: torch.Tensor, step: int,
                 rng: RowRandom, t: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the optimized logits ``phi [N, n, V]`` and per-row statistics of the step.

        ``logits [N, n, V]`` are the logits at the ``positions [N, n]`` that are still masked in
        ``response [N, L]``; ``t`` is the step's diffusion time, for schedules that read it.
        """
        n = positions.shape[1]
        phi = logits.detach().float().clone().requires_grad_(True)
        # fused: one kernel for the whole update; several times cheaper than the per-op default
        optimizer = torch.optim.Adam([phi], lr=self.lr, fused=phi.device.type in ("cpu", "cuda"))
        committed = self.table[response]  # [N, L, H]: committed tokens enter as their embeddings
        index = positions.unsqueeze(-1).expand(-1, -1, committed.shape[-1])
        weights, rewards = [], []
        for inner in range(self.inner_steps):
            with section("relaxation"):
                # softmax(phi / tau) once: the soft embedding (with its gradient) and the hard sample
                probs = torch.softmax(phi.float() / self.sampler.temperature, dim=-1)
            with section("relaxation"), torch.no_grad():
                finite = phi.detach()
                weight = self.schedule(finite, t)  # w per masked position
                hard_tokens = None  # w = 0 needs no hard sample; its draws are keyed, so none shift
                if not always_zero(self.schedule):
                    hard_tokens = sample_nucleus(finite, self.sampler,
                                                 lambda r: rng.uniform((n,), step, RowRandom.HARD, inner, r),
                                                 probs=probs.detach() if self.sampler.top_k is None else None)
                # hide what follows the first EOS (argmax of phi at masked columns)
                guess = response.scatter(1, positions, finite.argmax(-1))
                keep = first_eos_keep(guess, self.eos_ids)
            with section("relaxation"):
                relaxed = relax(probs, self.table, weight, hard_tokens)
                embeds = committed.scatter(1, index, relaxed.to(committed.dtype))
            with section("reward_forward"):
                scores = self.reward_model.score_embeddings(self.context, embeds, keep)
            with section("reward_backward"):
                optimizer.zero_grad(set_to_none=True)
                (-scores.sum()).backward()
            with section("optimizer"):
                optimizer.step()
            weights.append(weight.mean(-1))
            rewards.append(scores.detach())
        stats = {
            "entropy_weight": torch.stack(weights).mean(0),  # [N]
            "guided_reward": rewards[-1],
        }
        return phi.detach(), stats
