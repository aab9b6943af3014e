"""Gradient guidance: the masked logits take M Adam steps on the reward of their relaxation at every step.

``expectation`` (w = 0), ``aps`` (w = 1) and ``entrgi`` (w = H / log V) are this one method with
another entropy-weight schedule (``entrgi.sampling.schedules``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.methods import register, scorer_refusal
from entrgi.methods.base import Method, SamplingSetup
from entrgi.models.reward import RewardModel
from entrgi.sampling.guidance import RewardGuidance, guided_steps
from entrgi.sampling.schedules import Schedule, make_schedule

log = logging.getLogger("entrgi")
CODE = {"config": False}


@register("gradient")
@dataclass
class GradientGuidance(Method):
    name: str = "entrgi"
    inner_steps: int = 3  # M: Adam steps per denoising step
    lr: float = 0.5  # eta
    every: int = 1  # guide every k-th denoising step only (1: all); cheaper, changes results
    window: tuple[float, float] | None = None  # [start, stop]: guide only this fraction of the denoising
    # set by the code, not in conf/method: the schedule group, and the reward config's vocabulary settings
    schedule: Schedule = field(default_factory=lambda: make_schedule("entropy"), metadata=CODE)  # w per position
    unmatched: str = field(default="retokenize", metadata=CODE)  # dLLM tokens with no reward token (RewardModel.bridge)
    min_coverage: float = field(default=0.0, metadata=CODE)  # refuse vocabularies sharing fewer token strings
    compatible_model: str | None = field(default=None, metadata=CODE)  # the dLLM to suggest when coverage is low
    model_name: str | None = field(default=None, metadata=CODE)  # the dLLM's config name
    diagnose_relaxation: bool = field(default=False, metadata=CODE)  # diagnostics.relaxation (RewardGuidance)
    needs_reward_gradient = True

    def __post_init__(self):
        if not (isinstance(self.inner_steps, int) and self.inner_steps >= 1):
            raise ConfigError(f"method.inner_steps={self.inner_steps} must be an integer >= 1 (the paper: 3)")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):  # also refuses NaN
            raise ConfigError(f"method.lr={self.lr} must be a number > 0 (the paper: 0.5)")
        self.window = tuple(self.window) if self.window is not None else None
        self._table: torch.Tensor | None = None

    def prepare(self, setup: SamplingSetup, prompts: list[Prompt]) -> dict:
        reward, dllm = setup.reward_model, setup.dllm
        if not isinstance(reward, RewardModel):
            raise ConfigError(scorer_refusal(self.name, getattr(reward, "name", type(reward).__name__)))
        bridge = reward.bridge(dllm.tokenizer, dllm.vocab_size, self.unmatched, ignore=(dllm.mask_id,))
        log.info("vocabulary coverage: %.3f%% matched, %.3f%% represented (reward.unmatched=%s); unmatched e.g. %s",
                 100 * bridge.coverage, 100 * bridge.represented, self.unmatched, bridge.unmatched_tokens[:5])
        if bridge.coverage < self.min_coverage:
            if self.compatible_model and self.compatible_model != self.model_name:
                fix = f"use model={self.compatible_model} (the reward model's tokenizer), or lower reward.min_coverage"
            else:
                fix = "use a dLLM with the reward model's tokenizer, or lower reward.min_coverage"
            raise ConfigError(
                f"only {bridge.coverage:.1%} of the dLLM's tokens are reward-model tokens "
                f"(reward.min_coverage={self.min_coverage}); {fix} to bridge the vocabularies (reward.unmatched=retokenize)")
        self._table = bridge.table
        return {"vocab_coverage": bridge.summary()}

    def hook(self, setup: SamplingSetup, batch: list[Prompt], rows: list[str]) -> RewardGuidance:
        if self._table is None:
            self.prepare(setup, batch)
        reward = setup.reward_model
        return RewardGuidance(
            reward, self._table, reward.context(rows, setup.reward_widths), self.schedule, setup.sampler,
            torch.tensor(setup.dllm.eos_ids, device=setup.dllm.device), self.inner_steps, self.lr,
            guided_steps(setup.sampler.steps, self.every, self.window), self.diagnose_relaxation, setup.num_samples)
