"""Left padding and the bidirectional attention mask: how every model here sees a batch of rows."""

from __future__ import annotations

import torch


def left_pad(rows: list[list[int]], pad_id: int, width: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists to ``width`` (at least the longest row); returns ids and the 0/1 attention mask."""
    width = max([width] + [len(r) for r in rows])
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids, mask


def bidirectional_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4-D additive attention mask and position ids that run a model bidirectionally.

    Every query sees every real key. The dtype's minimum, not -inf, keeps fully masked (padding)
    query rows finite under eager attention; positions count real tokens only (cumsum - 1).
    """
    blocked = attention_mask[:, None, None, :] == 0
    additive = torch.zeros(blocked.shape, dtype=dtype, device=attention_mask.device)
    additive = additive.masked_fill(blocked, torch.finfo(dtype).min).expand(-1, 1, attention_mask.shape[1], -1)
    return additive, (attention_mask.cumsum(-1) - 1).clamp(min=0)


def first_real_columns(attention_mask: torch.Tensor) -> torch.Tensor:
    """Each row's first non-padding column ``[N]`` (0 for a row without any)."""
    return (attention_mask != 0).int().argmax(-1)


def column_blocks(columns: torch.Tensor, first: torch.Tensor, block_size: int | None) -> torch.Tensor:
    """The attention block ``[N, K]`` of canvas ``columns [K]`` in each row: blocks of ``block_size``
    counted from the row's first real column ``first [N]``, the prompt included (SDAR, TraDo,
    LLaDA2.x count them so); negative on left padding. ``None`` (bidirectional): all one block."""
    if block_size is None:
        return torch.zeros_like(columns)[None]
    return torch.div(columns[None] - first[:, None], block_size, rounding_mode="floor")


def structured_mask(attention_mask: torch.Tensor, key_columns: torch.Tensor, query_columns: torch.Tensor,
                    block_size: int | None, dtype: torch.dtype) -> torch.Tensor:
    """The 4-D additive mask ``[N, 1, q, K]`` of queries at canvas ``query_columns [q]`` over keys at
    ``key_columns [K]`` of rows whose real columns ``attention_mask [N, S]`` marks: a query sees a
    real key of its own block or an earlier one (block-causal, blocks counted from each row's first
    real column by :func:`column_blocks`), or every real key (``block_size=None``: bidirectional).
    The dtype's minimum keeps fully masked (padding) query rows finite, as :func:`bidirectional_mask`."""
    first = first_real_columns(attention_mask)
    key_blocks = column_blocks(key_columns, first, block_size)
    query_blocks = column_blocks(query_columns, first, block_size)
    seen = key_blocks[:, None, :] <= query_blocks[:, :, None]
    allowed = (attention_mask[:, key_columns] != 0)[:, None, None, :] & seen[:, None]
    return torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)
