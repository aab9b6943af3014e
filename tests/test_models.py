"""Every registered family's checkpoint, in its published format, loads natively and computes what its
architecture defines.

The reference below is the architecture written out in plain torch over each checkpoint's own
tensor names (Qwen2-style for Dream and DiffuCoder, LLaDA's OLMo-style names for LLaDA, Qwen3-style
for SDAR/TraDo, Qwen3-MoE hub names for LLaDA-MoE, LLaDA2's BailingMoE-V2 names): pre-norm decoder blocks
with RMSNorm, rotary attention over the non-padding tokens, a SiLU-gated MLP. Dream adds q/k/v biases and
shifts its logits right by one; SDAR normalizes q and k per head and attends block-causally (a position
sees its own block of ``block_size`` positions, counted from the sequence's first token, and every
earlier one); LLaDA-MoE normalizes q and k per head and sends each token through its top-k experts;
LLaDA2 reads q, k and v from one fused matrix, rotates half of each head's dimensions, routes each token
by sigmoid scores within its best expert groups, adds shared experts, and attends block-causally in
blocks of 32.
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


def llada2_names(i):
    p = f"model.layers.{i}."
    return {"attn_norm": p + "input_layernorm", "qkv": p + "attention.query_key_value", "o": p + "attention.dense",
            "q_norm": p + "attention.query_layernorm", "k_norm": p + "attention.key_layernorm",
            "mlp_norm": p + "post_attention_layernorm", "gate": p + "mlp.gate_proj", "up": p + "mlp.up_proj",
            "down": p + "mlp.down_proj"}


QWEN = dict(embed="model.embed_tokens.weight", norm="model.norm.weight", head="lm_head.weight", layer=dream_names,
            layers="num_hidden_layers", heads="num_attention_heads", kv_heads="num_key_value_heads",
            eps="rms_norm_eps", theta="rope_theta", shift=True, qk_norm=False, block=None, experts=None)
FAMILIES = {
    "dream": QWEN,
    "diffucoder": QWEN,
    "llada": dict(embed="model.transformer.wte.weight", norm="model.transformer.ln_f.weight",
                  head="model.transformer.ff_out.weight", layer=llada_names, layers="n_layers", heads="n_heads",
                  kv_heads="n_kv_heads", eps="rms_norm_eps", theta="rope_theta", shift=False, qk_norm=False,
                  block=None, experts=None),
    "sdar": {**QWEN, "shift": False, "qk_norm": True, "block": "block_size"},
    "llada_moe": {**QWEN, "shift": False, "qk_norm": True, "experts": "softmax"},
    "llada2": {**QWEN, "embed": "model.word_embeddings.weight", "layer": llada2_names, "shift": False,
               "qk_norm": True, "block": 32, "experts": "grouped_sigmoid"},
}


def gated_mlp(h, w, prefix):
    return F.linear(F.silu(F.linear(h, w[prefix + "gate_proj.weight"])) * F.linear(h, w[prefix + "up_proj.weight"]),
                    w[prefix + "down_proj.weight"])


def is_mixture_layer(f, cfg, layer):
    if f["experts"] == "softmax":  # LLaDA-MoE: a 0/1 per layer
        return bool(cfg["moe_layer_freq"][layer])
    return f["experts"] == "grouped_sigmoid" and layer >= cfg["first_k_dense_replace"]


def expert_weights(h, w, p, cfg, routing, use_bias=True, use_groups=True):
    """``[tokens..., experts]``: the weight of each expert's output for each token (0 where not chosen).

    ``softmax`` (LLaDA-MoE): softmax over all experts, the top k kept, not renormalized. ``grouped_sigmoid``
    (LLaDA2): sigmoid scores; the choice reads score + expert bias, only within the ``topk_group`` groups
    (of ``n_group`` consecutive experts) whose two best biased scores sum highest; the chosen experts'
    unbiased scores, renormalized, times ``routed_scaling_factor``. ``use_bias``/``use_groups`` False: the
    routing without them (to show that the stand-in's routing depends on each).
    """
    logits = F.linear(h.float(), w[p + "gate.weight"].float())
    if routing == "softmax":
        probs = torch.softmax(logits, -1)
        top, chosen = probs.topk(cfg["num_experts_per_tok"], -1)
        return torch.zeros_like(probs).scatter(-1, chosen, top)
    scores = torch.sigmoid(logits)
    choice = scores + w[p + "gate.expert_bias"].float() if use_bias else scores
    if use_groups:
        groups = choice.unflatten(-1, (cfg["n_group"], -1))
        best = groups.topk(2, -1).values.sum(-1).topk(cfg["topk_group"], -1).indices
        allowed = torch.zeros_like(groups[..., 0], dtype=torch.bool).scatter(-1, best, True)
        choice = choice.masked_fill(~allowed.repeat_interleave(groups.shape[-1], -1), float("-inf"))
    chosen = choice.topk(cfg["num_experts_per_tok"], -1).indices
    top = scores.gather(-1, chosen)
    top = top / top.sum(-1, keepdim=True) * cfg["routed_scaling_factor"]
    return torch.zeros_like(scores).scatter(-1, chosen, top)


def mixture(h, w, layer, cfg, routing, **options):
    """Every token through every expert, each weighted as :func:`expert_weights` says; plus LLaDA2's shared
    experts, which every token runs."""
    p = f"model.layers.{layer}.mlp."
    weights = expert_weights(h, w, p, cfg, routing, **options)
    out = sum(gated_mlp(h, w, p + f"experts.{e}.") * weights[..., e:e + 1].to(h.dtype)
              for e in range(cfg["num_experts"]))
    return out + gated_mlp(h, w, p + "shared_experts.") if routing == "grouped_sigmoid" else out


def rms_norm(x, weight, eps):
    normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(x.dtype)


def rotate(x, positions, theta, fp32, fraction=1.0):
    """Rotary embedding of ``x [N, heads, S, d]`` at ``positions [N, S]``, on the first ``fraction`` of the
    dimensions (rotate-half within them; the rest pass)."""
    d = int(x.shape[-1] * fraction)
    x, passed = x[..., :d], x[..., d:]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float) / d)
    angles = positions[:, None, :, None].float() * inv_freq
    angles = torch.cat([angles, angles], -1)
    compute = torch.float32 if fp32 else x.dtype
    cos, sin = angles.cos().to(compute), angles.sin().to(compute)
    xc = x.to(compute)
    rotated = torch.cat([-xc[..., d // 2:], xc[..., : d // 2]], -1)
    return torch.cat([(xc * cos + rotated * sin).to(x.dtype), passed], -1)


def reference_logits(checkpoint, family, ids, keep, dtype=torch.float32, rotary_fp32=False, **routing):
    """The family's architecture in plain torch; ``routing``: :func:`expert_weights`'s options."""
    f = FAMILIES[family]
    cfg = json.loads((checkpoint / "config.json").read_text())
    w = {k: v.to(dtype) for k, v in load_file(str(checkpoint / "model.safetensors")).items()}
    linear = lambda x, name: F.linear(x, w[name + ".weight"], w.get(name + ".bias"))  # noqa: E731
    heads, kv_heads = cfg[f["heads"]], cfg[f["kv_heads"]]
    positions = (keep.cumsum(-1) - 1).clamp(min=0)
    seen = (keep == 1)[:, None, :].expand(-1, keep.shape[1], -1)  # [N, query, key]
    if f["block"]:  # a key is seen from its own block and every later one
        blocks = positions // (f["block"] if isinstance(f["block"], int) else cfg[f["block"]])
        seen = seen & (blocks[:, None, :] <= blocks[:, :, None])
    bias = torch.zeros(seen.shape, dtype=dtype).masked_fill(~seen, torch.finfo(dtype).min)[:, None]
    x = w[f["embed"]][ids]
    N, S, H = x.shape
    head_dim = cfg.get("head_dim") or H // heads
    for i in range(cfg[f["layers"]]):
        n = f["layer"](i)
        h = rms_norm(x, w[n["attn_norm"] + ".weight"], cfg[f["eps"]])
        if "qkv" in n:  # one matrix: q's heads, then k's, then v's
            q, k, v = linear(h, n["qkv"]).split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], -1)
        else:
            q, k, v = (linear(h, n[r]) for r in ("q", "k", "v"))
        q, k, v = (t.view(N, S, -1, head_dim).transpose(1, 2) for t in (q, k, v))
        if f["qk_norm"]:
            q = rms_norm(q, w[n.get("q_norm", n.get("q", "").replace("q_proj", "q_norm")) + ".weight"], cfg[f["eps"]])
            k = rms_norm(k, w[n.get("k_norm", n.get("k", "").replace("k_proj", "k_norm")) + ".weight"], cfg[f["eps"]])
        fraction = cfg.get("partial_rotary_factor", 1.0)
        q, k = (rotate(t, positions, cfg[f["theta"]], rotary_fp32, fraction) for t in (q, k))
        k, v = k.repeat_interleave(heads // kv_heads, 1), v.repeat_interleave(heads // kv_heads, 1)
        attention = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + linear(attention.transpose(1, 2).reshape(N, S, -1), n["o"])
        h = rms_norm(x, w[n["mlp_norm"] + ".weight"], cfg[f["eps"]])
        if is_mixture_layer(f, cfg, i):
            x = x + mixture(h, w, i, cfg, f["experts"], **routing)
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
    """Two prompts of different lengths, left-padded, each followed by masked response positions (a block-causal
    model's blocks more, so that the rows span several blocks)."""
    mask_tail += dllm.attention.block_size or 0
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


@pytest.mark.parametrize("family", [f for f in sorted(FAMILIES) if FAMILIES[f]["block"]])
def test_a_block_causal_family_gives_the_architectures_logits_on_a_row_without_padding(checkpoints, family):
    """Without padding, DiffusionLM's blocks (counted from column 0) are the family's (from the sequence's
    first token): the whole architecture, block structure included, is checked on a row spanning blocks
    while the padded comparison above waits for the forward to count blocks per row."""
    dllm = load(checkpoints[family], family)
    _, ids, keep = padded_batch(dllm)
    ids, keep = ids[1:], keep[1:]  # the longer prompt: no padding
    assert keep.all() and ids.shape[1] > dllm.attention.block_size
    expected = reference_logits(checkpoints[family], family, ids, keep)
    assert torch.allclose(dllm.logits(ids, keep), expected, atol=1e-5, rtol=1e-4)


def test_llada2_routing_depends_on_the_expert_bias_and_the_groups(checkpoints):
    """The stand-in's routing exercises what the reference computes: dropping the expert bias from the choice,
    or the group limit, gives other logits than LLaDA2's (which ours equal, above)."""
    dllm = load(checkpoints["llada2"], "llada2")
    _, ids, keep = padded_batch(dllm)
    ids, keep = ids[1:], keep[1:]
    ours = dllm.logits(ids, keep)
    for options in ({"use_bias": False}, {"use_groups": False}):
        other = reference_logits(checkpoints["llada2"], "llada2", ids, keep, **options)
        assert (ours - other).abs().max() > 1e-3, options


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_prompt_gets_the_same_logits_padded_in_a_batch_as_alone(checkpoints, family):
    dllm = load(checkpoints[family], family)
    prompts, ids, keep = padded_batch(dllm)
    tail = ids.shape[1] - max(map(len, prompts))  # the masked response positions
    short = torch.tensor([prompts[0] + [dllm.mask_id] * tail])
    alone = dllm.logits(short, torch.ones_like(short))
    batched = dllm.logits(ids, keep)[0, -short.shape[1]:]
    # from the second position on (Dream's first real position shows the output of the padding before it);
    # a block-causal model's blocks count from the first real token, so padding does not move them
    assert torch.allclose(alone[0, 1:], batched[1:], atol=1e-5)
    # as the sampler reads it: the response's logits
    alone = dllm.logits(short, torch.ones_like(short), start=len(prompts[0]))
    batched = dllm.logits(ids, keep, start=ids.shape[1] - tail)[0]
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
