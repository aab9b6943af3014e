"""Optional ``torch.compile`` of vocabulary-wide passes; off unless :func:`enable` is called.

A compiled pass fuses its element-wise steps into one loop over the vocabulary, but rounds and
sums in its own order: it agrees with eager to fp32 rounding, not bit for bit, so a draw that
falls on a rounding edge can go the other way. Compiling costs seconds to minutes per function
and input rank (shapes are dynamic); ``scripts/bench.py --compile`` measures what it costs and
saves. ``RewardModel.compile`` does the same for the reward model's forward and backward.
"""

from __future__ import annotations

import functools

import torch

_enabled = False
_compiled: dict = {}  # function -> its compiled form, while enabled


def enable(on: bool = True) -> None:
    """Run the passes marked :func:`compilable` through ``torch.compile`` from now on (or no longer)."""
    global _enabled
    _enabled = on
    _compiled.clear()


def compilable(fn):
    """``fn`` as is, or compiled (once, with dynamic shapes) while compiling is enabled."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not _enabled:
            return fn(*args, **kwargs)
        if fn not in _compiled:
            _compiled[fn] = torch.compile(fn, dynamic=True)
        return _compiled[fn](*args, **kwargs)

    return call
