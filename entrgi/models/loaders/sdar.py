"""SDAR (JetLM/SDAR-*-Chat) and TraDo (Gen-Verse/TraDo-*-Instruct, SDAR trained further with TraceRL):
the Qwen3 architecture (q/k RMSNorm per head) run block-causally, no logit shift.

A position sees its own block of ``block_size`` positions and every earlier one, blocks counted
from the first position of the sequence (SDAR's ``block_diffusion_generate``); the checkpoints were
trained with ``block_size`` 4 and decode 4 steps a block. The vocabulary is Qwen3's with ``<|MASK|>``
added after it (id 151669), so the Skywork-Reward-V2-Qwen3 reward models read it token for token.
"""

from __future__ import annotations

from entrgi.models.attention import AttentionStructure
from entrgi.models.loaders import register
from entrgi.models.loaders.base import Family, without_remote_code

# SDAR's training and kernel switches: no counterpart in the forward
SDAR_ONLY = ("block_size", "mask_token_id", "attn_implementation", "fuse_cross_entropy", "ep_size", "debug",
             "micro_forward", "skip_checkpoint", "use_deepep")


def sdar_as_qwen3(raw: dict):
    """SDAR's config as a Qwen3 config: the same fields, less its own switches; no sliding window."""
    from transformers import Qwen3Config

    return Qwen3Config(**{**without_remote_code(raw, *SDAR_ONLY), "use_sliding_window": False,
                          "architectures": ["Qwen3ForCausalLM"]})


def block_causal(raw: dict) -> AttentionStructure:
    return AttentionStructure("block_causal", raw["block_size"])


SDAR = register(Family(
    name="sdar", label="SDAR", architectures=("SDARForCausalLM",),
    required=("hidden_size", "num_hidden_layers", "num_attention_heads", "head_dim", "vocab_size", "block_size"),
    network="Qwen3ForCausalLM", translate=sdar_as_qwen3, attention=block_causal, shift_logits=False,
    mask_token="<|MASK|>", eos_tokens=("<|im_end|>", "<|endoftext|>"),
))
