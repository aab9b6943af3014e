"""Faster passes that agree with the default ones to fp32 rounding, not bit for bit: off unless enabled.

- ``compile``: the passes marked :func:`compilable` run through ``torch.compile``, which fuses a
  pass's element-wise steps into one loop over the vocabulary but rounds and sums in its own
  order. Compiling costs seconds to minutes per function and input rank (shapes are dynamic).
  ``RewardModel.compile`` does the same for the reward model's forward and backward.
- ``entropy``: ``sampler.entropy`` without a logarithm per token (4x cheaper, as precise).

Either can move a draw that falls on a rounding edge, and with it the rest of that row's
trajectory; on a random-weight model, whose positions' entropies lie within rounding of each
other, the entropy remasking order changes everywhere. ``scripts/bench.py --compile`` and
``--fast-entropy`` measure what they cost and save and how many rows keep the default samples.
"""

from __future__ import annotations

import contextlib
import functools

import torch

_enabled = {"compile": False, "entropy": False}
_compiled: dict = {}  # function -> its compiled form, while compiling is enabled


def enable(name: str, on: bool = True) -> None:
    """Turn the fast path ``name`` ("compile" or "entropy") on or off from now on."""
    if name not in _enabled:
        raise ValueError(f"unknown fast path {name!r}; one of {sorted(_enabled)}")
    _enabled[name] = on
    _compiled.clear()


@contextlib.contextmanager
def using(switches: dict):
    """The fast paths ``switches`` names (``{"entropy": True, ...}``) on or off while the block runs;
    the state before it afterwards."""
    previous = dict(_enabled)
    try:
        for name, on in switches.items():
            enable(name, bool(on))
        yield
    finally:
        _enabled.update(previous)
        _compiled.clear()


def enabled(name: str) -> bool:
    return _enabled[name]


def compilable(fn):
    """``fn`` as is, or compiled (once, with dynamic shapes) while compiling is enabled."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not _enabled["compile"]:
            return fn(*args, **kwargs)
        if fn not in _compiled:
            _compiled[fn] = torch.compile(fn, dynamic=True)
        return _compiled[fn](*args, **kwargs)

    return call
