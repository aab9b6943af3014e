"""LLaDA-8B-Instruct and LLaDA-1.5: a Llama-style masked diffusion LM under OLMo-style config and tensor
names, no logit shift, with the rotary embedding applied in fp32."""

from __future__ import annotations

import torch

from entrgi.models.loaders import register
from entrgi.models.loaders.base import Family, refused_fields

# LLaDA's checkpoint names -> Llama's: disjoint patterns with one capture group each (transformers 5.23
# leaves a second group's \2 unsubstituted)
LLADA_TO_LLAMA = {
    r"^model\.transformer\.wte\.": "model.embed_tokens.",
    r"^model\.transformer\.ln_f\.": "model.norm.",
    r"^model\.transformer\.ff_out\.": "lm_head.",
    r"^model\.transformer\.blocks\.(\d+)\.q_proj\.": r"model.layers.\1.self_attn.q_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.k_proj\.": r"model.layers.\1.self_attn.k_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.v_proj\.": r"model.layers.\1.self_attn.v_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.attn_out\.": r"model.layers.\1.self_attn.o_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.attn_norm\.": r"model.layers.\1.input_layernorm.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_norm\.": r"model.layers.\1.post_attention_layernorm.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_proj\.": r"model.layers.\1.mlp.gate_proj.",  # the SiLU gate
    r"^model\.transformer\.blocks\.(\d+)\.up_proj\.": r"model.layers.\1.mlp.up_proj.",
    r"^model\.transformer\.blocks\.(\d+)\.ff_out\.": r"model.layers.\1.mlp.down_proj.",
}

# LLaDA's block settings that Llama's blocks compute
LLAMA_BLOCKS = {"block_type": "llama", "activation_type": "silu", "layer_norm_type": "rms", "rope": True,
                "alibi": False, "attention_layer_norm": False, "include_bias": False, "include_qkv_bias": False,
                "scale_logits": False, "input_emb_norm": False, "block_group_size": 1}


def unsupported_blocks(raw: dict) -> str | None:
    unsupported = refused_fields(raw, LLAMA_BLOCKS)
    if unsupported:
        return (f"loader=llada maps LLaDA's Llama-style blocks only, not {unsupported}; "
                f"set model.loader=auto model.trust_remote_code=true to run the checkpoint's own code")
    return None


def llada_as_llama(raw: dict):
    """LLaDA's (OLMo-style) config as a Llama config."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=raw.get("embedding_size") or raw["vocab_size"], hidden_size=raw["d_model"],
        intermediate_size=raw["mlp_hidden_size"], num_hidden_layers=raw["n_layers"],
        num_attention_heads=raw["n_heads"], num_key_value_heads=raw.get("n_kv_heads") or raw["n_heads"],
        max_position_embeddings=raw["max_sequence_length"], rms_norm_eps=raw["rms_norm_eps"],
        rope_theta=raw["rope_theta"], hidden_act="silu", attention_bias=False, mlp_bias=False,
        tie_word_embeddings=raw.get("weight_tying", False), pad_token_id=raw.get("pad_token_id"),
        eos_token_id=raw.get("eos_token_id"), bos_token_id=raw.get("bos_token_id"),
        architectures=["LlamaForCausalLM"],
    )


def _fp32_rotary_attention(module, query, key, value, attention_mask, **kwargs):
    """Attention for rotary applied in fp32: q and k arrive rotated in fp32 and are rounded once."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query.to(value.dtype), key.to(value.dtype), value, attention_mask,
                                  **kwargs)


FP32_ROTARY_ATTENTION = "entrgi_fp32_rotary_sdpa"


def rotary_in_fp32(model, raw: dict) -> None:
    """Apply the rotary embedding to q and k in fp32, as LLaDA does (``rope_full_precision``, its default).

    transformers rounds cos/sin to the model dtype before rotating; LLaDA rotates in fp32 and rounds
    the result, which in bf16 moves logits by ~0.03. The rotary module here returns fp32 cos/sin
    (so the rotation runs in fp32) and the attention function rounds q and k to the value dtype.
    A no-op in fp32.
    """
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    if not raw.get("rope_full_precision", True):
        return
    AttentionInterface.register(FP32_ROTARY_ATTENTION, _fp32_rotary_attention)
    AttentionMaskInterface.register(FP32_ROTARY_ATTENTION, sdpa_mask)
    rotary = model.model.rotary_emb
    plain_forward = rotary.forward

    def fp32_forward(x, position_ids):
        return plain_forward(x.new_empty(0, dtype=torch.float32), position_ids)

    rotary.forward = fp32_forward
    model.config._attn_implementation = FP32_ROTARY_ATTENTION


LLADA = register(Family(
    name="llada", label="LLaDA", architectures=("LLaDAModelLM",),
    required=("d_model", "n_layers", "n_heads", "mlp_hidden_size", "max_sequence_length"),
    network="LlamaForCausalLM", translate=llada_as_llama, key_mapping=LLADA_TO_LLAMA, shift_logits=False,
    mask_token="<|mdm_mask|>", eos_tokens=("<|eot_id|>", "<|endoftext|>"), refuse=unsupported_blocks,
    prepare=rotary_in_fp32,
))
