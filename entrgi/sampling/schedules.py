"""Entropy-weight schedules: the weight ``w`` of the hard (straight-through) part of the relaxation.

Each schedule maps logits ``[..., V]`` and the step's diffusion time ``t`` (1: all masked, near 0: the
last step) to one weight in [0, 1] per position (``[...]``); parameters that could leave [0, 1] are
refused. A new schedule is one class here, registered by name with ``@register``, and one YAML file
in ``conf/schedule/``. The relaxation (see ``guidance.relaxed_embeddings``) uses ``w`` in the same
formula for every method: ``w = 0`` is the continuous relaxation, ``w = 1`` the straight-through estimator, and EntRGi's
``w = H(softmax(phi)) / log V`` lies in between per position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Protocol

import torch

from entrgi.errors import ConfigError
from entrgi.registry import Registry
from entrgi.sampling.sampler import entropy, top_p_top_k_filter


class Schedule(Protocol):
    def __call__(self, logits: torch.Tensor, t: float = 1.0) -> torch.Tensor: ...

    # a schedule may also define ``is_zero`` (True: w = 0 at every position and time, no hard sample needed)


SCHEDULES = Registry()  # all in this module
register = SCHEDULES.register  # @register("power"): a schedule class, available to make_schedule and schedule=<name>


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H(softmax(logits)) / log V`` in fp32: 0 for a one-hot, 1 for a uniform distribution."""
    return (entropy(logits.float()) / math.log(logits.shape[-1])).clamp(0.0, 1.0)


@register("constant")
@dataclass
class Constant:
    """``w = value`` everywhere: 0 is the expectation (continuous) relaxation, 1 is APS."""

    value: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.value <= 1.0:
            raise ConfigError(f"constant schedule value {self.value} is outside [0, 1]; set schedule.value in [0, 1]")

    @property
    def is_zero(self) -> bool:
        return self.value == 0.0

    def __call__(self, logits: torch.Tensor, t: float = 1.0) -> torch.Tensor:
        return torch.full(logits.shape[:-1], float(self.value), device=logits.device)


@register("entropy")
@dataclass
class Entropy:
    """EntRGi (the paper): ``w = H(softmax(phi)) / log V`` per position."""

    def __call__(self, logits: torch.Tensor, t: float = 1.0) -> torch.Tensor:
        return normalized_entropy(logits)


@register("power")
@dataclass
class Power:
    """``w = (H / log V) ** gamma``: gamma < 1 goes hard sooner, gamma > 1 stays soft longer."""

    gamma: float = 2.0

    def __post_init__(self):
        if not self.gamma > 0:  # gamma <= 0 would give w >= 1 (and > 1 below zero)
            raise ConfigError(f"power schedule gamma={self.gamma} must be > 0; set schedule.gamma, e.g. 0.5 or 2")

    def __call__(self, logits: torch.Tensor, t: float = 1.0) -> torch.Tensor:
        return normalized_entropy(logits) ** self.gamma


@register("sigmoid")
@dataclass
class Sigmoid:
    """A smooth threshold: ``w = sigmoid((H / log V - center) / width)``."""

    center: float = 0.5
    width: float = 0.1

    def __post_init__(self):
        if self.width <= 0:
            raise ConfigError(f"sigmoid schedule width must be > 0, got {self.width}; set schedule.width")

    def __call__(self, logits: torch.Tensor, t: float = 1.0) -> torch.Tensor:
        return torch.sigmoid((normalized_entropy(logits) - self.center) / self.width)


@register("top_p_entropy")
@dataclass
class TopPEntropy:
    """Entropy normalized over the top-p support: ``H(p restricted to the nucleus) / log |nucleus|``.

    With a large vocabulary almost all of ``log V`` is never reached, so plain normalized entropy
    stays small; measured over the tokens that can actually be sampled, a position whose nucleus
    is spread evenly gets ``w`` near 1. A one-token nucleus gives 0.
    """

    top_p: float = 0.95

    def __post_init__(self):
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p_entropy schedule top_p={self.top_p} must be in (0, 1]; set schedule.top_p")

    def __call__(self, logits: torch.Tensor, t: float = 1.0) -> torch.Tensor:
        filtered = top_p_top_k_filter(logits.float(), top_p=self.top_p)
        probs = torch.softmax(filtered, dim=-1)
        h = entropy(filtered, probs)
        size = (probs > 0).sum(-1).float()
        return torch.where(size > 1, h / size.clamp(min=2).log(), torch.zeros_like(h)).clamp(0, 1)


@register("linear_time")
@dataclass
class LinearTime:
    """``w`` moves linearly with the diffusion time: ``start`` at t = 1 (all masked), ``end`` as t -> 0.

    The default stays soft while most of the answer is undecided and turns hard as it is committed.
    """

    start: float = 0.0
    end: float = 1.0

    def __post_init__(self):
        for key, value in (("start", self.start), ("end", self.end)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"linear_time schedule {key}={value} is outside [0, 1]; set schedule.{key} in [0, 1]")

    def __call__(self, logits: torch.Tensor, t: float = 1.0) -> torch.Tensor:
        return torch.full(logits.shape[:-1], self.end + (self.start - self.end) * float(t), device=logits.device)

    @property
    def is_zero(self) -> bool:
        return self.start == self.end == 0.0


def always_zero(schedule: Schedule) -> bool:
    """Whether ``schedule`` gives ``w = 0`` at every position and time (its ``is_zero``; no hard sample is then
    needed). A schedule that does not say is taken to be nonzero somewhere."""
    return bool(getattr(schedule, "is_zero", False))


def make_schedule(name: str, **params):
    """Build a schedule by name, e.g. ``make_schedule("power", gamma=2.0)``."""
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    cls = SCHEDULES[name]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"schedule {name!r} has no parameter {unknown[0]!r}; its parameters: {sorted(known) or 'none'}")
    return cls(**params)
