"""Counter-based random numbers keyed by (seed, prompt, sample).

Every random draw of the sampler is a pure function of the row's key and a counter
(denoising step, stream, inner step, position). A prompt therefore gets the same samples
whatever batch it lands in, on any device, and no per-row ``torch.Generator`` loop is needed.
"""

from __future__ import annotations

import hashlib

import torch

_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche hash (murmur3's finalizer) on int64 tensors holding values < 2**32."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & _MASK32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & _MASK32
    return x ^ (x >> 16)


def row_key(seed: int, prompt_id: str, sample_index: int) -> int:
    """A stable 32-bit key for one (seed, prompt, sample) row; independent of Python's hash seed."""
    digest = hashlib.blake2b(f"{seed}\x1f{prompt_id}\x1f{sample_index}".encode(), digest_size=4)
    return int.from_bytes(digest.digest(), "little")


def derive_keys(keys: torch.Tensor, *counter: int | torch.Tensor) -> torch.Tensor:
    """Each key hashed with the counter ``(step, stream, ...)``; a counter may differ per row (a tensor)."""
    h = keys
    for c in counter:
        h = _mix32(h ^ _mix32(torch.as_tensor(c, dtype=torch.int64, device=h.device) + 0x9E3779B9))
    return h


class RowRandom:
    """Uniform draws in (0, 1) for a batch of rows, reproducible per row.

    ``keys`` holds one 32-bit key per row (see :func:`row_key`).
    """

    # Streams keep the draws of different uses apart at the same step.
    COMMIT = 0  # remasking: random order (`origin`) or Gumbel noise (`alg_temp`)
    TOKENS = 1  # the tokens committed at a step
    HARD = 2  # the hard token of the relaxation, one draw per inner step
    PARTICLES = 3  # particle resampling: the denoised estimate, the ancestor draws, fresh keys of copies
    PROPOSALS = 4  # a hook's further proposals of a step (``StepState.propose(draw=d)``, d >= 1)

    def __init__(self, keys: list[int] | torch.Tensor, device: torch.device | str = "cpu"):
        self.keys = torch.as_tensor(keys, dtype=torch.int64, device=device)

    def uniform(self, shape_tail: tuple[int, ...], *counter: int | torch.Tensor) -> torch.Tensor:
        """Draws of shape ``[rows, *shape_tail]`` for the counter ``(step, stream, ...)``; a counter
        element may be a tensor ``[rows]`` (each row's own step count)."""
        h = derive_keys(self.keys, *counter)
        n = 1
        for s in shape_tail:
            n *= s
        idx = torch.arange(n, device=h.device, dtype=torch.int64)
        bits = _mix32(_mix32(h[:, None] ^ (idx[None, :] * 0x27D4EB2F)) + idx[None, :])
        # 24 random bits -> a float32 strictly inside (0, 1)
        u = ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))
        return u.view(-1, *shape_tail)
