"""Reward-weighted sampling (RWS; Gwak et al., EMNLP 2025, arXiv 2509.00707): the whole sequence's reward
scales the token logits, which changes which positions a step commits.

At every ``every``-th denoising step, before the step's tokens are drawn, each row's intermediate
sequence (its masked positions filled with the model's prediction, the argmax of the step's
logits) is decoded and scored by the reward. The row's logits are multiplied by

    s = exp(gamma * z),   z = (r - mean r) / std r   over the prompt's K rows (z = 0 when they agree to 1e-5)

and the step draws its tokens from the scaled logits and ranks the positions on them too
(``StepState.propose(logits)``): a row whose sequence scores above its siblings sharpens (s > 1)
and commits its most confident tokens more greedily, one below them flattens (s < 1) and explores.
Scaling every logit of a position by one factor changes that position's confidence non-linearly,
so the ranking of positions, and with it the generation order, changes (the paper's "rank
reversal"). The paper's abstract, which is what the stored sources give of it, fixes the scoring
of the whole intermediate sequence and the multiplicative scaling of the logits; the
standardization across a prompt's samples is this implementation's choice, which makes ``gamma``
free of the reward's scale (a reward model's or a 0/1 rule's) and makes a constant reward leave
sampling exactly unguided. With one sample per prompt (K = 1) there is nothing to compare and RWS
is unguided sampling.

Costs per steered step and row: one reward evaluation of text; no dLLM forward beyond the
sampler's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.methods import register
from entrgi.methods.base import Method, SamplingSetup
from entrgi.models.diffusion import DiffusionLM
from entrgi.models.reward import RewardModel
from entrgi.models.scorer import Scorer
from entrgi.sampling.guidance import guided_steps
from entrgi.sampling.sampler import StepState, StepUpdate, scatter_columns

TIE = 1e-5  # rewards whose spread is below this, relative to their size, count as equal


def group_sum(values: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """The sum of ``values [N]`` over each row's ``group [N]``, at every row."""
    totals = torch.zeros(int(group.max()) + 1, dtype=values.dtype, device=values.device)
    return totals.index_add_(0, group, values)[group]


def logit_scales(rewards: torch.Tensor, prompt_of_row: torch.Tensor, gamma: float) -> torch.Tensor:
    """``exp(gamma * z)`` per row ``[N]``, ``z`` the reward standardized over the rows of the same prompt
    (``prompt_of_row [N]``); 1 where a prompt's rows score alike (to ``TIE``, relative: a reward model's
    rounding noise on equal texts would otherwise be standardized into a full unit of ``z``, and it
    differs from batch to batch) or where a prompt has one row in the step."""
    rewards = rewards.double()
    count = group_sum(torch.ones_like(rewards), prompt_of_row)
    mean = group_sum(rewards, prompt_of_row) / count
    centered = rewards - mean
    spread = (group_sum(centered * centered, prompt_of_row) / count).sqrt()
    tied = spread <= TIE * (1 + mean.abs())
    return torch.exp(gamma * torch.where(tied, 0.0, centered / torch.where(tied, 1.0, spread)))


@dataclass
class RewardWeightedSampling:
    """A step hook that scales each row's logits by its intermediate sequence's relative reward."""

    dllm: DiffusionLM
    reward_model: RewardModel | Scorer
    prompts: list[str]  # each row's prompt text
    rows_per_prompt: int  # K
    gamma: float
    steps: set[int] | None  # the step indices to steer (``guided_steps``); None: all
    text_width: int = 0

    def __call__(self, state: StepState) -> StepUpdate | None:
        if self.rows_per_prompt == 1 or (self.steps is not None and state.step.index not in self.steps):
            return None
        # the block modes' threshold rule: the step's rows only (``state.rows``), padded positions (L)
        rows = torch.arange(state.tokens.shape[0], device=state.tokens.device) if state.rows is None else state.rows
        estimate = scatter_columns(state.tokens, state.positions, state.logits.argmax(-1))
        prompts = [self.prompts[row] for row in rows.tolist()]
        rewards = torch.tensor(self.reward_model.score_texts(prompts, self.dllm.decode(estimate),
                                                             width=self.text_width), device=state.logits.device)
        scale = logit_scales(rewards, rows // self.rows_per_prompt, self.gamma)
        scaled = state.logits * scale.to(state.logits.dtype)[:, None, None]
        return StepUpdate(next_tokens=state.propose(scaled),
                          stats={"estimate_reward": rewards.float(), "logit_scale": scale.float()})


@register("rws")
@dataclass
class RewardWeighted(Method):
    """RWS on the job's K samples per prompt (their rewards standardize each other); the answer is the best."""

    name: str = "rws"
    gamma: float = 1.0  # how strongly a standardized reward scales the logits; 0: unguided sampling
    every: int = 1  # steer every k-th denoising step only (1: all)

    def __post_init__(self):
        if isinstance(self.gamma, bool) or not (isinstance(self.gamma, (int, float)) and self.gamma >= 0):
            raise ConfigError(f"method.gamma={self.gamma!r} must be a number >= 0 (0: unguided sampling)")
        if isinstance(self.every, bool) or not (isinstance(self.every, int) and self.every >= 1):
            raise ConfigError(f"method.every={self.every!r} must be an integer >= 1 (1: every step)")

    def hook(self, setup: SamplingSetup, batch: list[Prompt], rows: list[str]) -> RewardWeightedSampling:
        return RewardWeightedSampling(setup.dllm, setup.reward_model, rows, setup.num_samples, self.gamma,
                                      guided_steps(setup.sampler.steps, self.every), setup.text_width)
