"""LLaDA2.x-mini (inclusionAI/LLaDA2.0-mini, LLaDA2.0-mini-preview, LLaDA2.1-mini): a block-diffusion LM whose
MLPs are BailingMoE-V2 mixtures of experts, no logit shift, blocks of 32.

Its computation is transformers' GLM-4-MoE one, which needs no remote code:
- attention: grouped-query, q and k RMS-normalized per head (``use_qk_norm``), the rotary embedding on the
  first ``partial_rotary_factor`` of each head's dimensions (rotate-half), no biases;
- a sigmoid router: each token's experts are chosen by score + ``expert_bias`` (the bias steers the choice
  only), within the ``topk_group`` of ``n_group`` expert groups whose two best biased scores sum highest;
  the chosen experts' unbiased scores, renormalized (LLaDA2's code renormalizes whenever
  ``num_experts_per_tok`` > 1, whatever ``norm_topk_prob`` says), times ``routed_scaling_factor``, weight
  their SiLU-gated outputs; ``num_shared_experts`` shared experts (one MLP of that many experts' width) run
  for every token; the first ``first_k_dense_replace`` layers are dense MLPs.
Its tensors are renamed (``word_embeddings``, ``attention.dense``, ``query_layernorm``, ``gate.expert_bias``)
and its fused ``attention.query_key_value`` is split into q, k and v (q heads, then k, then v) on load.

Attention is block-causal in blocks of 32 counted from the sequence's first token, the prompt included (the
generation code builds its block mask over prompt + response from position 0 and prefills whole blocks).
The mask and end-of-text ids are 156895 and 156892, as for LLaDA-MoE (same vocabulary, 157,184 rows); the
tokenizer is a plain fast tokenizer with its own chat template, which the record leaves in place.

Sources (read, not copied): inclusionAI/dInfer ``python/dinfer/model/modeling_llada2_moe.py`` and
``configuration_llada2_moe.py`` (routing, fused q/k/v, tensor names, partial rotary), its
``benchmarks/benchmark.py`` (mask 156895, EOS 156892 for ``llada2`` and ``llada_moe``); the Hugging Face
``modeling_llada2_moe.py`` as vendored in ZHZisZZ/dllm-derived repositories
(``dllm/pipelines/llada2/models/``: ``generate`` with block_length 32, steps 32 per block, the block mask from
position 0, logits not shifted: its loss uses the same position's labels); sgl-project/sglang
``python/sglang/srt/dllm/config.py`` (LLaDA2MoeModelLM: block size 32, mask id 156895); jd-opensource/xllm's
``hf_model_loader`` test, which reads a LLaDA2.1-mini directory: model_type llada2_moe, hidden 2048, 20 layers,
16 heads, 4 KV heads, head_dim 128, 256 experts, 8 per token, n_group 8, topk_group 4, 1 shared expert,
first_k_dense_replace 1, partial_rotary_factor 0.5, rope_theta 600000, routed_scaling_factor 2.5,
score_function sigmoid, expert bias on, vocab 157184; a PreTrainedTokenizerFast with EOS ``<|endoftext|>``
and a ``<role>SYSTEM</role>`` chat template. No config.json of LLaDA2.0-mini itself was read (dInfer reads
2.0-mini and 2.0-mini-preview with the same class).
"""

from __future__ import annotations

from functools import lru_cache

from entrgi.models.attention import AttentionStructure
from entrgi.models.loaders import register
from entrgi.models.loaders.base import Family, refused_fields, without_remote_code
from entrgi.models.loaders.llada_moe import expert_count

BLOCK_SIZE = 32  # the block length LLaDA2 was trained and decodes with (its generate, SGLang's dLLM config)

# LLaDA2's checkpoint names -> GLM-4-MoE's (the fused q/k/v is split by the converter below)
LLADA2_TO_GLM4_MOE = {
    r"^model\.word_embeddings\.": "model.embed_tokens.",
    r"\.attention\.dense\.": ".self_attn.o_proj.",
    r"\.attention\.query_layernorm\.": ".self_attn.q_norm.",
    r"\.attention\.key_layernorm\.": ".self_attn.k_norm.",
    r"\.mlp\.gate\.expert_bias$": ".mlp.gate.e_score_correction_bias",
}

# LLaDA2's options, at the values GLM-4-MoE computes
GLM4_MOE_COMPUTES = {"use_qkv_bias": False, "use_bias": False, "norm_head": False, "score_function": "sigmoid",
                     "use_sliding_window": False, "rope_scaling": None}
# LLaDA2's fields the translation renames or drops (training switches, dropout, its own names)
LLADA2_ONLY = ("num_experts", "num_shared_experts", "partial_rotary_factor", "rope_theta", "rope_scaling",
               "use_qkv_bias", "use_bias", "norm_head", "score_function", "moe_router_enable_expert_bias",
               "embedding_dropout", "output_dropout", "attention_dropout", "use_sliding_window", "sliding_window",
               "max_window_layers", "router_dtype", "rotary_dim", "mask_token_id", "norm_topk_prob", "head_dim",
               "moe_shared_expert_intermediate_size", "num_nextn_predict_layers", "mtp_loss_scaling_factor")


def unsupported_llada2(raw: dict) -> str | None:
    unsupported = refused_fields(raw, GLM4_MOE_COMPUTES)
    if not raw.get("num_shared_experts"):
        unsupported["num_shared_experts"] = raw.get("num_shared_experts")
    if raw["num_experts"] % (raw.get("n_group") or 1):
        unsupported["n_group"] = raw["n_group"]
    if unsupported:
        return (f"loader=llada2 maps LLaDA2's sigmoid-routed experts with shared experts and no biases only, not "
                f"{unsupported}; set model.loader=auto model.trust_remote_code=true to run the checkpoint's own code")
    return None


def llada2_as_glm4_moe(raw: dict):
    """LLaDA2's config as a GLM-4-MoE config (the mixture's fields renamed, the rotary's in rope_parameters)."""
    from transformers import Glm4MoeConfig

    return Glm4MoeConfig(**{
        **without_remote_code(raw, *LLADA2_ONLY),
        "head_dim": raw.get("head_dim") or raw["hidden_size"] // raw["num_attention_heads"],
        "n_routed_experts": raw["num_experts"], "n_shared_experts": raw["num_shared_experts"],
        "n_group": raw.get("n_group") or 1, "topk_group": raw.get("topk_group") or 1,
        "first_k_dense_replace": raw.get("first_k_dense_replace") or 0,
        "norm_topk_prob": raw["num_experts_per_tok"] > 1, "use_qk_norm": raw.get("use_qk_norm", True),
        "attention_bias": False, "attention_dropout": 0.0, "num_mtp_layers": 0,
        "rope_parameters": {"rope_type": "default", "rope_theta": raw.get("rope_theta", 10000.0),
                            "partial_rotary_factor": raw.get("partial_rotary_factor", 0.5)},
        "architectures": ["Glm4MoeForCausalLM"]})


@lru_cache(maxsize=1)
def glm4_moe_reading_llada2():
    """GLM-4-MoE's causal LM under a name of its own, whose checkpoint conversion splits LLaDA2's fused
    q/k/v and fuses the per-expert tensors (GLM-4-MoE's own conversion, which a name of its own replaces)."""
    from transformers import Glm4MoeForCausalLM
    from transformers.conversion_mapping import (
        get_checkpoint_conversion_mapping,
        register_checkpoint_conversion_mapping,
    )
    from transformers.core_model_loading import Split, WeightConverter

    network = type("LLaDA2AsGlm4MoeForCausalLM", (Glm4MoeForCausalLM,), {"__module__": __name__})
    split_qkv = WeightConverter(source_patterns="attention.query_key_value.weight",
                                target_patterns=["self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                                 "self_attn.v_proj.weight"], operations=[Split(dim=0)])
    register_checkpoint_conversion_mapping(network.__name__, [split_qkv, *get_checkpoint_conversion_mapping("glm4_moe")],
                                           overwrite=True)
    return network


def block_causal(raw: dict) -> AttentionStructure:
    return AttentionStructure("block_causal", BLOCK_SIZE)


LLADA2 = register(Family(
    name="llada2", label="LLaDA2", architectures=("LLaDA2MoeModelLM",),
    required=("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
              "num_experts", "num_experts_per_tok", "moe_intermediate_size", "vocab_size"),
    network=glm4_moe_reading_llada2, translate=llada2_as_glm4_moe, key_mapping=LLADA2_TO_GLM4_MOE,
    attention=block_causal, shift_logits=False, mask_token=156895, eos_tokens=(156892,), refuse=unsupported_llada2,
    check_tensors=expert_count,
    # the attention projections and every routed expert (as LLaDA-MoE's); not the shared experts or the dense
    # layer's MLP: peft reads the names gate_proj/up_proj/down_proj on a GLM-4-MoE as its fused experts
    lora_targets=("q_proj", "k_proj", "v_proj", "o_proj"),
    lora_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
))
