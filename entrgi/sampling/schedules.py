"""Entropy-weight schedules: the weight ``w`` of the hard (straight-through) part of the relaxation.

Each schedule maps logits ``[..., V]`` to one weight in [0, 1] per position (``[...]``). The
relaxation (see ``guidance.relaxed_embeddings``) uses ``w`` in the same formula for every method:
``w = 0`` is the continuous relaxation, ``w = 1`` the straight-through estimator, and EntRGi's
``w = H(softmax(phi)) / log V`` lies in between per position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from entrgi.errors import ConfigError
from entrgi.sampling.sampler import top_p_top_k_filter


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H(softmax(logits)) / log V`` in fp32: 0 for a one-hot, 1 for a uniform distribution."""
    probs = torch.softmax(logits.float(), dim=-1)
    entropy = -torch.special.xlogy(probs, probs).sum(-1)  # xlogy: 0 log 0 = 0 for -inf logits
    return (entropy / math.log(logits.shape[-1])).clamp(0.0, 1.0)


@dataclass
class Constant:
    """``w = value`` everywhere: 0 is the expectation (continuous) relaxation, 1 is APS."""

    value: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.value <= 1.0:
            raise ConfigError(f"constant schedule value {self.value} is outside [0, 1]; set schedule.value in [0, 1]")

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.full(logits.shape[:-1], float(self.value), device=logits.device)


@dataclass
class Entropy:
    """EntRGi (the paper): ``w = H(softmax(phi)) / log V`` per position."""

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return normalized_entropy(logits)


@dataclass
class Power:
    """``w = (H / log V) ** gamma``: gamma < 1 goes hard sooner, gamma > 1 stays soft longer."""

    gamma: float = 2.0

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return normalized_entropy(logits) ** self.gamma


@dataclass
class Sigmoid:
    """A smooth threshold: ``w = sigmoid((H / log V - center) / width)``."""

    center: float = 0.5
    width: float = 0.1

    def __post_init__(self):
        if self.width <= 0:
            raise ConfigError(f"sigmoid schedule width must be > 0, got {self.width}; set schedule.width")

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((normalized_entropy(logits) - self.center) / self.width)


@dataclass
class TopPEntropy:
    """Entropy normalized over the top-p support: ``H(p restricted to the nucleus) / log |nucleus|``.

    With a large vocabulary almost all of ``log V`` is never reached, so plain normalized entropy
    stays small; measured over the tokens that can actually be sampled, a position whose nucleus
    is spread evenly gets ``w`` near 1. A one-token nucleus gives 0.
    """

    top_p: float = 0.95

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        filtered = top_p_top_k_filter(logits.float(), top_p=self.top_p)
        probs = torch.softmax(filtered, dim=-1)
        entropy = -torch.special.xlogy(probs, probs).sum(-1)
        size = (probs > 0).sum(-1).float()
        return torch.where(size > 1, entropy / size.clamp(min=2).log(), torch.zeros_like(entropy)).clamp(0, 1)


SCHEDULES = {"constant": Constant, "entropy": Entropy, "power": Power, "sigmoid": Sigmoid, "top_p_entropy": TopPEntropy}


def make_schedule(name: str, **params):
    """Build a schedule by name, e.g. ``make_schedule("power", gamma=2.0)``."""
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](**params)
