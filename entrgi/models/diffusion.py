"""Loading Hugging Face checkpoints, and the diffusion LM wrapper the sampler talks to.

Diffusion LMs differ by data, not code: the mask token, whether logits are shifted (Dream
predicts position i from the output at i-1; LLaDA does not), the EOS tokens and the chat
template. ``DiffusionLM`` holds those and runs the model with bidirectional attention.

Dream and LLaDA publish their architectures only as hub remote code, which breaks across
transformers releases. Their checkpoints are plain transformer decoders, so the ``dream`` and
``llada`` loaders read them into transformers' own Qwen2 and Llama classes (config and weight
names translated) and need no remote code; ``auto`` is the Auto classes, with remote code only
when ``trust_remote_code`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entrgi.errors import ConfigError
from entrgi.models.attention import AttentionStructure
from entrgi.models.batching import bidirectional_mask, left_pad, structured_mask
from entrgi.models.loading import from_pretrained, resolve_device, resolve_dtype


@dataclass
class DiffusionLM:
    """A masked diffusion LM: the network plus the data that says how to run it."""

    model: torch.nn.Module
    tokenizer: object
    mask_id: int
    eos_ids: list[int]
    shift_logits: bool  # Dream-style: logits at i come from the output at i - 1
    max_length: int
    attention: AttentionStructure = AttentionStructure()  # bidirectional, or block-causal with its block size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocab_size(self) -> int:
        return self.model.config.get_text_config().vocab_size

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.eos_ids[0] if pad is None else pad

    def encode_prompts(self, prompts: list[str]) -> list[list[int]]:
        """Token ids of each prompt as a user turn, ready for the assistant's response."""
        return [
            list(self.tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                    tokenize=True, return_dict=False))
            for p in prompts
        ]

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Response text of each row: everything before the first EOS, special tokens dropped."""
        rows = []
        eos = set(self.eos_ids)
        for row in tokens.tolist():
            cut = next((i for i, t in enumerate(row) if t in eos), len(row))
            rows.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True))
        return rows

    def check_length(self, length: int) -> None:
        if length > self.max_length:
            raise ConfigError(
                f"prompt + response is {length} tokens but the model takes {self.max_length} (model.max_length); "
                f"lower sampler.gen_length or set benchmark.max_prompt_tokens"
            )

    def check_prompts(self, prompt_ids: list[list[int]], gen_length: int) -> None:
        """Refuse, before any sampling, prompts (as :meth:`encode_prompts` gives them) that leave no room
        for ``gen_length`` response tokens in the model's length."""
        too_long = [len(ids) for ids in prompt_ids if len(ids) + gen_length > self.max_length]
        if not too_long:
            return
        template = len(self.encode_prompts([""])[0])  # the chat template's own tokens
        room = self.max_length - gen_length - template
        if room > 0:
            fix = (f"set benchmark.max_prompt_tokens={room} (keeps each prompt's last {room} tokens) or lower "
                   f"sampler.gen_length")
        elif self.max_length > template:
            fix = f"lower sampler.gen_length below {self.max_length - template}"
        else:
            fix = f"the chat template alone takes {template} tokens: raise model.max_length"
        raise ConfigError(
            f"{len(too_long)} of {len(prompt_ids)} prompts leave no room for the response: the longest is "
            f"{max(too_long)} tokens with the chat template, + sampler.gen_length={gen_length} > {self.max_length} "
            f"(model.max_length); {fix}")

    def pad_prompts(self, prompt_ids: list[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad prompts to ``width`` (default: the longest); returns ids and the 0/1 attention mask."""
        ids, mask = left_pad(prompt_ids, self.pad_id, width or 0)
        return ids.to(self.device), mask.to(self.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int = 0,
                network: torch.nn.Module | None = None, columns: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[N, S - start, V]`` of positions ``start:``, attending as ``self.attention`` says over
        the non-padding tokens (block-causal blocks start at ``start``, the response's first column).

        With gradients (training); :meth:`logits` is the same without. With ``shift_logits`` (Dream)
        the logits at position i come from the output at i - 1. Only the positions asked for go
        through the output layer, which is most of a small model's cost: ``columns [N, n]`` (indices
        into ``start:``) narrows them to those columns of each row, giving ``[N, n, V]``.

        ``network``: this model as wrapped for training (PEFT, then DDP or FSDP), run through its own
        forward (a causal LM's, with ``logits_to_keep``): a wrapper synchronizes gradients only for
        calls that go through it.
        """
        if self.attention.is_block_causal:
            every = torch.arange(input_ids.shape[1], device=input_ids.device)
            additive = structured_mask(attention_mask, every, every, start, self.attention.block_size,
                                       next(self.model.parameters()).dtype)
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        else:
            additive, position_ids = bidirectional_mask(attention_mask, next(self.model.parameters()).dtype)
        if network is not None:
            first = max(start - 1, 0) if self.shift_logits else start  # the first output position needed
            logits = network(input_ids=input_ids, attention_mask=additive, position_ids=position_ids,
                             use_cache=False, logits_to_keep=input_ids.shape[1] - first).logits
            if self.shift_logits:
                logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1) if start == 0 else logits[:, :-1]
            return logits
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=additive, position_ids=position_ids,
                                       use_cache=False).last_hidden_state
        if self.shift_logits:
            hidden = torch.cat([hidden[:, :1], hidden[:, :-1]], dim=1)
        hidden = hidden[:, start:]
        if columns is not None:
            hidden = hidden.gather(1, columns.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        return self.model.get_output_embeddings()(hidden)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int = 0,
               columns: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward` without gradients: what the sampler reads."""
        return self.forward(input_ids, attention_mask, start, columns=columns)

    @torch.no_grad()
    def cached_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int, query: slice,
                      cache: "KVCache | None" = None, columns: torch.Tensor | None = None,
                      keep: torch.Tensor | None = None,
                      hidden_at: int | None = None) -> tuple[torch.Tensor, "KVCache | None"]:
        """Logits of the canvas columns ``query`` (a slice of ``input_ids [N, S]``) computed with the
        other columns' keys and values read from ``cache`` instead of recomputed.

        ``start`` is the response's first column: the logits are those of ``query`` minus ``start``
        onward, narrowed to ``columns [N, n]`` (indices from ``query.start - start``) as in
        :meth:`forward`. Queries attend as ``self.attention`` says; for a block-causal model whose
        cache holds every earlier block this equals :meth:`forward` over the canvas (to rounding),
        for a bidirectional one it is the cache's approximation. ``keep [K + q]`` (bool over the
        cache's columns then ``query``'s): return a new cache of those columns' keys and values,
        and of the output at canvas column ``hidden_at`` (default: ``query``'s last), from which a
        shifted model's logits at the next column come.
        """
        from transformers import DynamicCache

        device = input_ids.device
        queries = torch.arange(query.start, query.stop, device=device)
        keys = queries if cache is None else torch.cat([cache.columns, queries])
        dtype = next(self.model.parameters()).dtype
        additive = structured_mask(attention_mask[:, keys], keys, queries, start,
                                   self.attention.block_size if self.attention.is_block_causal else None, dtype)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, query]
        past = DynamicCache(cache.layers if cache is not None else None, config=None if cache else self.model.config)
        hidden = self.model.base_model(input_ids=input_ids[:, query], attention_mask=additive,
                                       position_ids=position_ids, cache=past,
                                       use_cache=True).last_hidden_state
        new_cache = None
        if keep is not None:
            at = query.stop - 1 if hidden_at is None else hidden_at
            new_cache = KVCache(tuple((layer.keys[:, :, keep], layer.values[:, :, keep]) for layer in past.layers),
                                keys[keep], hidden[:, at - query.start])
        if self.shift_logits:  # logits at column c come from the output at c - 1
            before = hidden[:, :1] if cache is None or cache.last_hidden is None else cache.last_hidden[:, None]
            hidden = torch.cat([before, hidden[:, :-1]], dim=1)
        hidden = hidden[:, max(start - query.start, 0):]
        if columns is not None:
            hidden = hidden.gather(1, columns.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        return self.model.get_output_embeddings()(hidden), new_cache


@dataclass
class KVCache:
    """The dLLM's keys and values at some canvas columns, per layer, for a batch of rows."""

    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer: keys, values [N, heads, K, head_dim]
    columns: torch.Tensor  # [K] the canvas column of each key
    # [N, H] the output at the column before the next query (a shifted model's logits there come
    # from it); None: the query's own first column stands in, as :meth:`DiffusionLM.forward` does
    last_hidden: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> "KVCache":
        """The cache of the rows ``index`` (a subset or a reordering)."""
        return KVCache(tuple((k[index], v[index]) for k, v in self.layers), self.columns,
                       None if self.last_hidden is None else self.last_hidden[index])

    def put_rows(self, index: torch.Tensor, part: "KVCache") -> None:
        """Write ``part`` (the cache of rows ``index``, same columns) into these rows."""
        for (k, v), (pk, pv) in zip(self.layers, part.layers):
            k[index], v[index] = pk, pv
        if self.last_hidden is not None:
            self.last_hidden[index] = part.last_hidden


def token_id(tokenizer, token: str | int) -> int:
    if isinstance(token, int):
        return token
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise ConfigError(f"token {token!r} is not in the tokenizer's vocabulary; set its id in the model config")
    return vocab[token]


LOADERS = ("auto", "dream", "llada")


def checkpoint_config(path: str, what: str = "model") -> dict:
    """The raw ``config.json`` of a hub id or local directory, read without any model class
    (``what``: the config key errors name, ``model`` or ``reward``)."""
    from transformers import PretrainedConfig

    class _RawConfig:  # from_pretrained-shaped adapter, so ``from_pretrained`` gives the usual errors
        @staticmethod
        def from_pretrained(name, **kwargs):
            return PretrainedConfig.get_config_dict(name, **kwargs)[0]

    return from_pretrained(_RawConfig, path, what)


def _require(raw: dict, family: str, fields: tuple[str, ...]) -> None:
    absent = [f for f in fields if f not in raw]
    if absent:
        raise ConfigError(f"model.path is not a {family} checkpoint (its config.json has no {absent}); "
                          f"check model.loader (auto, dream or llada)")


def dream_as_qwen2(raw: dict):
    """Dream's config as a Qwen2 config: same fields; its own model type and remote-code map dropped.

    Sliding-window attention stays off, as Dream runs it (its config carries Qwen2's window size).
    """
    from transformers import Qwen2Config

    fields = {k: v for k, v in raw.items() if k not in ("auto_map", "architectures", "model_type",
                                                         "transformers_version") and v is not None}
    return Qwen2Config(**{**fields, "use_sliding_window": False, "architectures": ["Qwen2ForCausalLM"]})


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


def llada_as_llama(raw: dict):
    """LLaDA's (OLMo-style) config as a Llama config; features Llama lacks are refused."""
    from transformers import LlamaConfig

    expected = {"block_type": "llama", "activation_type": "silu", "layer_norm_type": "rms", "rope": True,
                "alibi": False, "attention_layer_norm": False, "include_bias": False, "include_qkv_bias": False,
                "scale_logits": False, "input_emb_norm": False, "block_group_size": 1}
    unsupported = {k: raw[k] for k, v in expected.items() if k in raw and raw[k] != v}
    if unsupported:
        raise ConfigError(f"loader=llada maps LLaDA's Llama-style blocks only, not {unsupported}; "
                          f"set model.loader=auto model.trust_remote_code=true to run the checkpoint's own code")
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


def rotary_in_fp32(model) -> None:
    """Apply the rotary embedding to q and k in fp32, as LLaDA does (``rope_full_precision``).

    transformers rounds cos/sin to the model dtype before rotating; LLaDA rotates in fp32 and rounds
    the result, which in bf16 moves logits by ~0.03. The rotary module here returns fp32 cos/sin
    (so the rotation runs in fp32) and the attention function rounds q and k to the value dtype.
    A no-op in fp32.
    """
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(FP32_ROTARY_ATTENTION, _fp32_rotary_attention)
    AttentionMaskInterface.register(FP32_ROTARY_ATTENTION, sdpa_mask)
    rotary = model.model.rotary_emb
    plain_forward = rotary.forward

    def fp32_forward(x, position_ids):
        return plain_forward(x.new_empty(0, dtype=torch.float32), position_ids)

    rotary.forward = fp32_forward
    model.config._attn_implementation = FP32_ROTARY_ATTENTION


def check_loader(raw: dict, path: str, loader: str, trust_remote_code: bool) -> None:
    """Refuse a loader that cannot read this checkpoint, with the setting that can."""
    if loader not in LOADERS:
        raise ConfigError(f"unknown model.loader={loader!r}; choose one of {list(LOADERS)}")
    if loader == "auto" and raw.get("auto_map") and not trust_remote_code:
        raise ConfigError(
            f"model {path!r} (model_type {raw.get('model_type')!r}) ships its architecture as remote code; "
            f"set model.loader=dream or model.loader=llada to load it natively, or model.trust_remote_code=true")
    if loader == "dream":
        _require(raw, "Dream", ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"))
    if loader == "llada":
        _require(raw, "LLaDA", ("d_model", "n_layers", "n_heads", "mlp_hidden_size", "max_sequence_length"))
    if loader != "auto" and trust_remote_code:
        raise ConfigError(f"model.loader={loader} runs transformers' own classes; to run the checkpoint's remote "
                          f"code instead set model.loader=auto (with model.trust_remote_code=true)")


def load_network(path: str, raw: dict, loader: str, dtype: torch.dtype, trust_remote_code: bool,
                 **extra) -> torch.nn.Module:
    """The network of a diffusion LM checkpoint with config ``raw``, by ``loader`` (see the module docstring).

    ``extra``: more ``from_pretrained`` arguments (a quantization config and its device map).
    """
    from transformers import AutoModel, AutoModelForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM

    if loader == "auto":
        auto_map = raw.get("auto_map") or {}
        # Dream registers its remote class under AutoModel only
        auto = AutoModel if "AutoModel" in auto_map and "AutoModelForCausalLM" not in auto_map else AutoModelForCausalLM
        return from_pretrained(auto, path, "model", weights=True, dtype=dtype, trust_remote_code=trust_remote_code,
                               **extra)
    if loader == "dream":
        model, info = from_pretrained(Qwen2ForCausalLM, path, "model", weights=True, config=dream_as_qwen2(raw),
                                      dtype=dtype, output_loading_info=True, **extra)
    else:
        model, info = from_pretrained(LlamaForCausalLM, path, "model", weights=True, config=llada_as_llama(raw),
                                      dtype=dtype, key_mapping=LLADA_TO_LLAMA, output_loading_info=True, **extra)
    missing, unexpected = list(info.get("missing_keys", [])), list(info.get("unexpected_keys", []))
    if missing or unexpected:  # a wrong mapping would otherwise leave randomly initialized weights
        raise ConfigError(f"model {path!r} does not match model.loader={loader}: missing weights {missing[:5]}, "
                          f"unexpected weights {unexpected[:5]}; check model.loader")
    if loader == "llada" and raw.get("rope_full_precision", True):
        rotary_in_fp32(model)
    return model


def load_tokenizer(path: str, loader: str, trust_remote_code: bool):
    from transformers import AutoTokenizer, Qwen2TokenizerFast

    # Dream's tokenizer is Qwen2's under a remote-code class name; read its files with Qwen2's class
    tokenizer_class = Qwen2TokenizerFast if loader == "dream" else AutoTokenizer
    return from_pretrained(tokenizer_class, path, "model", trust_remote_code=trust_remote_code)


def merge_adapter(model: torch.nn.Module, adapter: str) -> torch.nn.Module:
    """``model`` with the LoRA adapter in directory ``adapter`` (as ``entrgi.train`` writes it) merged in."""
    from pathlib import Path

    if not (Path(adapter).expanduser() / "adapter_config.json").exists():
        raise ConfigError(f"model.adapter={adapter!r} is not a LoRA adapter directory (no adapter_config.json); "
                          f"set it to the adapter/ directory entrgi.train wrote, or to null")
    try:
        from peft import PeftModel
    except ImportError:
        raise ConfigError("model.adapter needs peft: pip install 'entrgi[train]'") from None
    return PeftModel.from_pretrained(model, str(Path(adapter).expanduser())).merge_and_unload()


def load_diffusion_lm(
    path: str,
    *,
    shift_logits: bool,
    loader: str = "auto",
    mask_token: str | int | None = None,
    eos_tokens: list[str | int] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    max_length: int | None = None,
    chat_template: str | None = None,
    adapter: str | None = None,
    load_in_4bit: bool = False,
) -> DiffusionLM:
    """Load a diffusion LM from a hub id or a local directory (``loader``: see the module docstring).

    ``adapter``: a LoRA adapter directory (``entrgi.train``'s) merged into the loaded weights.
    ``load_in_4bit``: NF4 weights through bitsandbytes, for training LoRA on them (CUDA only).
    """
    device_ = resolve_device(device)
    raw = checkpoint_config(path)
    check_loader(raw, path, loader, trust_remote_code)
    tokenizer = load_tokenizer(path, loader, trust_remote_code)
    if chat_template:
        tokenizer.chat_template = chat_template
    extra = {}
    if load_in_4bit:
        if device_.type != "cuda":
            raise ConfigError("4-bit weights need a CUDA device (bitsandbytes NF4); load them in full precision")
        from transformers import BitsAndBytesConfig

        extra = {"device_map": {"": device_}, "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=resolve_dtype(dtype, device_))}
    model = load_network(path, raw, loader, resolve_dtype(dtype, device_), trust_remote_code, **extra)
    if adapter:
        model = merge_adapter(model, adapter)
    if not load_in_4bit:  # a quantized model is placed by its device map
        model.to(device_)
    model.eval().requires_grad_(False)
    mask = mask_token if mask_token is not None else tokenizer.mask_token
    if mask is None:
        raise ConfigError(f"model {path!r} has no mask token; set model.mask_token")
    eos = [token_id(tokenizer, t) for t in (eos_tokens or [tokenizer.eos_token])]
    config = model.config.get_text_config()
    return DiffusionLM(
        model=model,
        tokenizer=tokenizer,
        mask_id=token_id(tokenizer, mask),
        eos_ids=eos,
        shift_logits=shift_logits,
        max_length=max_length or getattr(config, "max_position_embeddings", 4096),
    )
