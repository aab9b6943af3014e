"""How a diffusion LM's positions attend to each other: model data the sampler reads.

``bidirectional`` (Dream, LLaDA): every position sees every non-padding position, so any cache of
another column's keys and values is an approximation. ``block_causal`` (SDAR, TraDo, LLaDA2.x):
the response is generated in blocks of ``block_size``; a position sees its own block and every
earlier one, so the prompt's and each committed block's keys and values can be cached exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from entrgi.errors import ConfigError

KINDS = ("bidirectional", "block_causal")


@dataclass(frozen=True)
class AttentionStructure:
    kind: str = "bidirectional"
    block_size: int | None = None  # block_causal only: the model's trained block length

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"attention kind {self.kind!r} is not one of {list(KINDS)}")
        if self.kind == "block_causal" and not (isinstance(self.block_size, int) and self.block_size >= 1):
            raise ConfigError(f"a block_causal model needs a block_size >= 1, not {self.block_size!r}")
        if self.kind == "bidirectional" and self.block_size is not None:
            raise ConfigError("a bidirectional model has no block_size; leave it null")

    @property
    def is_block_causal(self) -> bool:
        return self.kind == "block_causal"
