"""Optional wall-clock sections of a guided step, for ``scripts/bench.py``.

The sampler and the guidance mark their parts with ``with section("reward_backward"):``. Nothing
is measured unless a :class:`SectionTimer` is active, so the marks cost a function call each.
When one is active it synchronizes the device at every boundary: a breakdown run is slower
than a plain one, and throughput is measured without it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext

import torch

_active: "SectionTimer | None" = None


class SectionTimer:
    """Accumulates seconds per section name while active (``with SectionTimer(device) as t:``)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = defaultdict(float)  # process CPU time: robust to a shared machine
        self.calls: dict[str, int] = defaultdict(int)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def measure(self, name: str):
        self._sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - start
            self.cpu_seconds[name] += time.process_time() - cpu_start
            self.calls[name] += 1

    def __enter__(self) -> "SectionTimer":
        global _active
        _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        _active = None


def section(name: str):
    """A context that times ``name`` when a :class:`SectionTimer` is active, else does nothing."""
    return _active.measure(name) if _active is not None else nullcontext()
