"""LLaDA-MoE-7B-A1B (inclusionAI): a bidirectional masked diffusion LM whose MLPs are mixtures of experts,
no logit shift, LLaDA's generation (semi-autoregressive blocks).

Its computation is transformers' Qwen3-MoE one: q/k RMSNorm per head, full rotary, a softmax router
choosing ``num_experts_per_tok`` of ``num_experts`` SiLU-gated experts whose outputs are weighted by
their router probabilities without renormalization (``norm_topk_prob=False``, as LLaDA-MoE fixes it),
dense layers where ``moe_layer_freq`` is 0. Its tensor names are Qwen3-MoE's hub names (one tensor per
expert), which transformers fuses on load. Options Qwen3-MoE lacks (shared experts, a router bias,
sigmoid or grouped routing, q/k/v clipping, partial rotary) are refused. The mask and end-of-text ids
are those of inclusionAI's published LLaDA-MoE inference example (dInfer): 156895 and 156892.
LoRA trains the attention projections and, through the fused expert matrices, every expert.
"""

from __future__ import annotations

import re

from entrgi.models.loaders import register
from entrgi.models.loaders.base import Family, refused_fields, without_remote_code

# LLaDA-MoE's options, at the values Qwen3-MoE computes
QWEN3_MOE_COMPUTES = {"shared_expert_intermediate_size": None, "moe_router_enable_expert_bias": False,
                      "moe_router_score_function": "softmax", "clip_qkv": None, "qk_layernorm": True,
                      "partial_rotary_factor": 1.0, "router_num_group": None, "router_topk_group": None,
                      "routed_scaling_factor": 1}


def unsupported_moe(raw: dict) -> str | None:
    unsupported = refused_fields(raw, QWEN3_MOE_COMPUTES)
    if unsupported:
        return (f"loader=llada_moe maps LLaDA-MoE's softmax top-k experts without shared experts only, not "
                f"{unsupported}; set model.loader=auto model.trust_remote_code=true to run the checkpoint's own code")
    return None


def llada_moe_as_qwen3_moe(raw: dict):
    """LLaDA-MoE's config as a Qwen3-MoE config (the mixture's fields renamed, its layout made explicit)."""
    from transformers import Qwen3MoeConfig

    layers = raw["num_hidden_layers"]
    # norm_topk_prob: LLaDA-MoE's experts ignore it (never renormalized)
    fields = without_remote_code(raw, *QWEN3_MOE_COMPUTES, "dense_intermediate_size", "expert_intermediate_size",
                                 "moe_layer_freq", "mask_token_id", "norm_topk_prob")
    return Qwen3MoeConfig(**{
        **fields, "intermediate_size": raw.get("dense_intermediate_size") or raw["expert_intermediate_size"],
        "moe_intermediate_size": raw["expert_intermediate_size"], "norm_topk_prob": False,
        "head_dim": raw["hidden_size"] // raw["num_attention_heads"], "decoder_sparse_step": 1,
        "mlp_only_layers": [i for i, moe in enumerate(raw.get("moe_layer_freq") or [1] * layers) if not moe],
        "architectures": ["Qwen3MoeForCausalLM"]})


EXPERT = re.compile(r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.")


def expert_count(raw: dict, names: list[str]) -> str | None:
    """Every mixture layer holds exactly the ``num_experts`` experts its config declares."""
    found: dict[int, set[int]] = {}
    for name in names:
        match = EXPERT.match(name)
        if match:
            found.setdefault(int(match[1]), set()).add(int(match[2]))
    declared = set(range(raw["num_experts"]))
    wrong = {layer: len(experts) for layer, experts in sorted(found.items()) if experts != declared}
    if wrong:
        return f"config.json declares {raw['num_experts']} experts, the weights hold {wrong} (layer: experts)"
    return None


LLADA_MOE = register(Family(
    name="llada_moe", label="LLaDA-MoE", architectures=("LLaDAMoEModelLM", "LLaDAMoEModel"),
    required=("hidden_size", "num_hidden_layers", "num_attention_heads", "num_experts", "num_experts_per_tok",
              "expert_intermediate_size", "vocab_size"),
    network="Qwen3MoeForCausalLM", translate=llada_moe_as_qwen3_moe, shift_logits=False, mask_token=156895,
    eos_tokens=(156892,), refuse=unsupported_moe, check_tensors=expert_count,
    lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"),
    lora_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
))
