"""Training objectives: the masked-diffusion loss and a Bradley-Terry reward loss.

Used by ``entrgi.testbed.recipe`` to build the embedded default; plain functions on tensors (the
trainable forward is ``entrgi.models.diffusion.DiffusionLM.forward``).

The diffusion loss is the MDLM/LLaDA objective with prompt tokens never masked (SFT): each
sequence draws a masking ratio ``t ~ U(eps, 1)``, masks each response token with probability
``t``, and pays ``1/t`` times the cross-entropy of the masked tokens, averaged over the response
length. That is an upper bound on the response's negative log-likelihood.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from entrgi.models.reward import pooled_scores


def mask_responses(response: torch.Tensor, t: torch.Tensor, uniforms: torch.Tensor,
                   mask_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask each token of ``response [N, L]`` where ``uniforms [N, L] < t [N]``; returns (noised, masked)."""
    masked = uniforms < t[:, None]
    return response.masked_fill(masked, mask_id), masked


def masked_diffusion_loss(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor,
                          t: torch.Tensor) -> torch.Tensor:
    """``mean_n (1 / (t_n L)) sum_{i masked} -log p(x_i)`` for response logits ``[N, L, V]``."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # [N, L]
    per_sequence = (ce * masked).sum(-1) / (t * targets.shape[1])
    return per_sequence.mean()


def sample_masking_ratio(n: int, generator: torch.Generator, eps: float = 1e-3) -> torch.Tensor:
    """``t ~ U(eps, 1)`` per sequence."""
    return eps + (1 - eps) * torch.rand(n, generator=generator)


def last_column_scores(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scores ``[N]`` of left-padded rows as ``entrgi.reward.RewardModel.score_texts`` computes them, with gradients."""
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return pooled_scores(model, attention_mask, positions, input_ids=input_ids)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """``-log sigmoid(r_chosen - r_rejected)``, averaged: the pairwise preference likelihood."""
    return -F.logsigmoid(chosen - rejected).mean()
