"""Every registered family's checkpoint, in its published format, loads natively and computes what its
architecture defines.

The reference below is the architecture written out in plain torch over each checkpoint's own
tensor names (Qwen2-style for Dream and DiffuCoder, LLaDA's OLMo-style names for LLaDA, Qwen3-style
for SDAR/TraDo, Qwen3-MoE hub names for LLaDA-MoE): pre-norm decoder blocks with RMSNorm, rotary
attention over the non-padding tokens, a SiLU-gated MLP. Dream adds q/k/v biases and shifts its
logits right by one; SDAR normalizes q and k per head and attends block-causally (a position sees
its own block of ``block_size`` positions, counted from the sequence's first token, and every
earlier one); LLaDA-MoE normalizes q and k per head and sends each token through its top-k experts.
"""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from entrgi.errors import ConfigError
from entrgi.models.loaders import families, load_diffusion_lm
from entrgi.testbed.standins import STANDINS


def dream_names(i):
    p = f"model.layers.{i}."
    return {"attn_norm": p + "input_layernorm", "q": p + "self_attn.q_proj", "k": p + "self_attn.k_proj",
            "v": p + "self_attn.v_proj", "o": p + "self_attn.o_proj", "mlp_norm": p + "post_attention_layernorm",
            "gate": p + "mlp.gate_proj", "up": p + "mlp.up_proj", "down": p + "mlp.down_proj"}


def llada_names(i):
    p = f"model.transformer.blocks.{i}."
    return {"attn_norm": p + "attn_norm", "q": p + "q_proj", "k": p + "k_proj", "v": p + "v_proj",
            "o": p + "attn_out", "mlp_norm": p + "ff_norm", "gate": p + "ff_proj", "up": p + "up_proj",
            "down": p + "ff_out"}


QWEN = dict(embed="model.embed_tokens.weight", norm="model.norm.weight", head="lm_head.weight", layer=dream_names,
            layers="num_hidden_layers", heads="num_attention_heads", kv_heads="num_key_value_heads",
            eps="rms_norm_eps", theta="rope_theta", shift=True, qk_norm=False, block=None, experts=False)
FAMILIES = {
    "dream": QWEN,
    "diffucoder": QWEN,
    "llada": dict(embed="model.transformer.wte.weight", norm="model.transformer.ln_f.weight",
                  head="model.transformer.ff_out.weight", layer=llada_names, layers="n_layers", heads="n_heads",
                  kv_heads="n_kv_heads", eps="rms_norm_eps", theta="rope_theta", shift=False, qk_norm=False,
                  block=None, experts=False),
    "sdar": {**QWEN, "shift": False, "qk_norm": True, "block": "block_size"},
    "llada_moe": {**QWEN, "shift": False, "qk_norm": True, "experts": True},
}


def mixture(h, w, layer, cfg):
    """Every token through every expert, each weighted by its router probability if it is among the token's
    top k (softmax over all experts, not renormalized), else by 0."""
    p = f"model.layers.{layer}.mlp."
    probs = torch.softmax(F.linear(h, w[p + "gate.weight"]).float(), -1)
    top, chosen = probs.topk(cfg["num_experts_per_tok"], -1)
    out = torch.zeros_like(h)
    for e in range(cfg["num_experts"]):
        q = p + f"experts.{e}."
        y = F.linear(F.silu(F.linear(h, w[q + "gate_proj.weight"])) * F.linear(h, w[q + "up_proj.weight"]),
                     w[q + "down_proj.weight"])
        out = out + y * (top * (chosen == e)).sum(-1, keepdim=True).to(h.dtype)
    return out


def rms_norm(x, weight, eps):
    normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(x.dtype)


def rotate(x, positions, theta, fp32):
    """Rotary embedding of ``x [N, heads, S, d]`` at ``positions [N, S]``."""
    d = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float) / d)
    angles = positions[:, None, :, None].float() * inv_freq
    angles = torch.cat([angles, angles], -1)
    compute = torch.float32 if fp32 else x.dtype
    cos, sin = angles.cos().to(compute), angles.sin().to(compute)
    xc = x.to(compute)
    rotated = torch.cat([-xc[..., d // 2:], xc[..., : d // 2]], -1)
    return (xc * cos + rotated * sin).to(x.dtype)


def reference_logits(checkpoint, family, ids, keep, dtype=torch.float32, rotary_fp32=False):
    f = FAMILIES[family]
    cfg = json.loads((checkpoint / "config.json").read_text())
    w = {k: v.to(dtype) for k, v in load_file(str(checkpoint / "model.safetensors")).items()}
    linear = lambda x, name: F.linear(x, w[name + ".weight"], w.get(name + ".bias"))  # noqa: E731
    heads, kv_heads = cfg[f["heads"]], cfg[f["kv_heads"]]
    positions = (keep.cumsum(-1) - 1).clamp(min=0)
    seen = (keep == 1)[:, None, :].expand(-1, keep.shape[1], -1)  # [N, query, key]
    if f["block"]:  # a key is seen from its own block and every later one
        blocks = positions // cfg[f["block"]]
        seen = seen & (blocks[:, None, :] <= blocks[:, :, None])
    bias = torch.zeros(seen.shape, dtype=dtype).masked_fill(~seen, torch.finfo(dtype).min)[:, None]
    x = w[f["embed"]][ids]
    N, S, H = x.shape
    head_dim = cfg.get("head_dim") or H // heads
    for i in range(cfg[f["layers"]]):
        n = f["layer"](i)
        h = rms_norm(x, w[n["attn_norm"] + ".weight"], cfg[f["eps"]])
        q, k, v = (linear(h, n[r]).view(N, S, -1, head_dim).transpose(1, 2) for r in ("q", "k", "v"))
        if f["qk_norm"]:
            q = rms_norm(q, w[n["q"].replace("q_proj", "q_norm") + ".weight"], cfg[f["eps"]])
            k = rms_norm(k, w[n["k"].replace("k_proj", "k_norm") + ".weight"], cfg[f["eps"]])
        q, k = rotate(q, positions, cfg[f["theta"]], rotary_fp32), rotate(k, positions, cfg[f["theta"]], rotary_fp32)
        k, v = k.repeat_interleave(heads // kv_heads, 1), v.repeat_interleave(heads // kv_heads, 1)
        attention = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + linear(attention.transpose(1, 2).reshape(N, S, -1), n["o"])
        h = rms_norm(x, w[n["mlp_norm"] + ".weight"], cfg[f["eps"]])
        if f["experts"] and cfg["moe_layer_freq"][i]:
            x = x + mixture(h, w, i, cfg)
        else:
            x = x + linear(F.silu(linear(h, n["gate"])) * linear(h, n["up"]), n["down"])
    logits = linear(rms_norm(x, w[f["norm"]], cfg[f["eps"]]), f["head"].removesuffix(".weight"))
    return torch.cat([logits[:, :1], logits[:, :-1]], 1) if f["shift"] else logits


def load(checkpoint, family, dtype="float32"):
    """As a model config names it: the loader alone (shift, mask and EOS tokens are the family's)."""
    return load_diffusion_lm(str(checkpoint), loader=family, device="cpu", dtype=dtype)


@pytest.fixture(scope="module")
def checkpoints(request, tmp_path_factory):
    written = {"dream": request.getfixturevalue("dream_dir"), "llada": request.getfixturevalue("llada_dir")}
    out = tmp_path_factory.mktemp("families")
    return {**written, **{name: write(out / name) for name, write in STANDINS.items() if name not in written}}


def test_every_registered_family_has_a_stand_in_and_a_reference():
    native = {name for name, f in families().items() if f.load is None}  # all but auto
    assert native == set(STANDINS) == set(FAMILIES)


def padded_batch(dllm, mask_tail=4):
    """Two prompts of different lengths, left-padded, each followed by masked response positions."""
    prompts = dllm.encode_prompts(["What is a list?", "Explain what os.path.join does with absolute parts."])
    ids, keep = dllm.pad_prompts(prompts)
    ids = torch.cat([ids, torch.full((2, mask_tail), dllm.mask_id)], 1)
    keep = torch.cat([keep, torch.ones(2, mask_tail, dtype=keep.dtype)], 1)
    return prompts, ids, keep


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_published_checkpoint_loads_natively_and_gives_the_architectures_logits(checkpoints, family):
    dllm = load(checkpoints[family], family)
    _, ids, keep = padded_batch(dllm)
    logits = dllm.logits(ids, keep)
    expected = reference_logits(checkpoints[family], family, ids, keep)
    real = keep.bool()  # padded rows are meaningless
    assert logits.shape == expected.shape
    assert torch.allclose(logits[real], expected[real], atol=1e-5, rtol=1e-4), (logits[real] - expected[real]).abs().max()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_prompt_gets_the_same_logits_padded_in_a_batch_as_alone(checkpoints, family):
    dllm = load(checkpoints[family], family)
    prompts, ids, keep = padded_batch(dllm)
    short = torch.tensor([prompts[0] + [dllm.mask_id] * 4])
    alone = dllm.logits(short, torch.ones_like(short))
    batched = dllm.logits(ids, keep)[0, -short.shape[1]:]
    # from the second position on (Dream's first real position shows the output of the padding before it);
    # a block-causal model's blocks count from the first real token, so padding does not move them
    assert torch.allclose(alone[0, 1:], batched[1:], atol=1e-5)
    # as the sampler reads it: the response's logits
    alone = dllm.logits(short, torch.ones_like(short), start=len(prompts[0]))
    batched = dllm.logits(ids, keep, start=ids.shape[1] - 4)[0]
    assert torch.allclose(alone[0], batched, atol=1e-5)


def test_llada_in_bf16_rotates_in_fp32_as_llada_does(checkpoints):
    """transformers' Llama rounds cos/sin to bf16 before rotating; LLaDA rotates in fp32."""
    dllm = load(checkpoints["llada"], "llada", dtype="bfloat16")
    _, ids, keep = padded_batch(dllm)
    real = keep.bool()
    ours = dllm.logits(ids, keep)[real].float()
    llada = reference_logits(checkpoints["llada"], "llada", ids, keep, torch.bfloat16, rotary_fp32=True)[real].float()
    llama = reference_logits(checkpoints["llada"], "llada", ids, keep, torch.bfloat16, rotary_fp32=False)[real].float()
    assert (ours - llada).abs().max() < (llama - llada).abs().max() / 4


def test_dream_tokenizer_has_the_real_qwen_vocabulary_and_mask_id(dream_dir):
    dllm = load(dream_dir, "dream")
    assert dllm.mask_id == 151666 and dllm.eos_ids == [151645, 151643]
    assert len(dllm.tokenizer) == 151667 and dllm.vocab_size == 152064
    assert dllm.tokenizer.convert_ids_to_tokens(dllm.tokenizer.encode(" hello world")) == ["Ġhello", "Ġworld"]


def test_loader_choice_errors_name_the_fix(dream_dir, llada_dir):
    with pytest.raises(ConfigError, match="model.loader=dream or model.loader=diffucoder to load it natively"):
        load_diffusion_lm(str(dream_dir), loader="auto", shift_logits=True, device="cpu")
    with pytest.raises(ConfigError, match="model.loader=auto"):
        load_diffusion_lm(str(llada_dir), loader="llada", shift_logits=False, trust_remote_code=True, device="cpu")
    with pytest.raises(ConfigError, match="not a LLaDA checkpoint"):
        load_diffusion_lm(str(dream_dir), loader="llada", shift_logits=False, mask_token="<|mask|>", device="cpu")
    with pytest.raises(ConfigError, match="not a Dream checkpoint"):
        load_diffusion_lm(str(llada_dir), loader="dream", shift_logits=True, mask_token="<|mdm_mask|>", device="cpu")
    with pytest.raises(ConfigError, match="model.loader"):
        load_diffusion_lm(str(llada_dir), loader="magic", shift_logits=False, device="cpu")
