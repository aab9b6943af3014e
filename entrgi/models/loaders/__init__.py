"""Loading diffusion LM checkpoints: one registered :class:`Family` record per published format.

Dream, LLaDA, SDAR/TraDo and the rest publish their architectures as hub remote code, which breaks
across transformers releases. Their checkpoints are plain transformer decoders, so each family's
record translates its config and tensor names into one of transformers' own classes (Qwen2, Llama,
Qwen3) and needs no remote code; ``auto`` is the Auto classes, with remote code only when
``model.trust_remote_code`` is set. Every module of this package is imported once, so a new family
is one module that calls :func:`register` (plus its ``conf/model`` entry and stand-in writer):

    load_diffusion_lm("JetLM/SDAR-8B-Chat", loader="sdar")
"""

from __future__ import annotations

from pathlib import Path

import torch

from entrgi.errors import ConfigError
from entrgi.models.diffusion import DiffusionLM
from entrgi.models.loaders.base import Family
from entrgi.models.loading import checkpoint_config, from_pretrained, resolve_device, resolve_dtype
from entrgi.registry import Registry

FAMILIES = Registry(__name__)  # model.loader=<name> -> its record; every module here registers its own


def register(family: Family) -> Family:
    """Make ``family`` available as ``model.loader=<family.name>``."""
    FAMILIES[family.name] = family
    return family


def families() -> dict[str, Family]:
    """Every registered family, by name."""
    return dict(FAMILIES.discover())


def family(name: str) -> Family:
    registered = families()
    if name not in registered:
        raise ConfigError(f"unknown model.loader={name!r}; choose one of {sorted(registered)}")
    return registered[name]


def check_loader(raw: dict, path: str, loader: str, trust_remote_code: bool) -> Family:
    """The family ``loader`` names, once it is known to read this checkpoint; else the setting that can."""
    chosen = family(loader)
    if trust_remote_code and not chosen.remote_code:
        raise ConfigError(f"model.loader={loader} runs transformers' own classes; to run the checkpoint's remote "
                          f"code instead set model.loader=auto (with model.trust_remote_code=true)")
    if chosen.remote_code and raw.get("auto_map") and not trust_remote_code:
        readers = [f.name for f in families().values() if set(raw.get("architectures") or []) & set(f.architectures)]
        native = f"set model.loader={' or model.loader='.join(readers)} to load it natively, or " if readers else \
            "no registered family reads it natively; set "
        raise ConfigError(f"model {path!r} (model_type {raw.get('model_type')!r}) ships its architecture as remote "
                          f"code; {native}model.trust_remote_code=true")
    chosen.check(raw, families())
    return chosen


def load_network(path: str, raw: dict, chosen: Family, dtype: torch.dtype, trust_remote_code: bool,
                 **extra) -> torch.nn.Module:
    """The network of a checkpoint with config ``raw``, read by family ``chosen``.

    ``extra``: more ``from_pretrained`` arguments (a quantization config and its device map).
    """
    if chosen.load is not None:
        return chosen.load(path, raw, dtype, trust_remote_code, **extra)
    if chosen.check_tensors is not None and Path(path).expanduser().is_dir():
        disagreement = chosen.check_tensors(raw, tensor_names(Path(path).expanduser()))
        if disagreement:
            raise ConfigError(f"model {path!r} does not match its config.json: {disagreement}; the checkpoint's "
                              f"files disagree with each other (a partial download?)")
    model, info = from_pretrained(chosen.network_class(), path, "model", weights=True,
                                  config=chosen.translate(raw), dtype=dtype, key_mapping=chosen.key_mapping,
                                  output_loading_info=True, **extra)
    missing, unexpected = list(info.get("missing_keys", [])), list(info.get("unexpected_keys", []))
    if missing or unexpected:  # a wrong mapping would otherwise leave randomly initialized weights
        raise ConfigError(f"model {path!r} does not match model.loader={chosen.name}: missing weights {missing[:5]}, "
                          f"unexpected weights {unexpected[:5]}; check model.loader")
    if chosen.prepare is not None:
        chosen.prepare(model, raw)
    return model


def network_skeleton(path: str, loader: str, trust_remote_code: bool = False) -> torch.nn.Module:
    """The network a checkpoint loads into, built on the meta device from its config alone: its module
    and parameter names (e.g. LoRA targets) can be checked before any weight is read."""
    import transformers

    raw = checkpoint_config(path)
    chosen = check_loader(raw, path, loader, trust_remote_code)
    with torch.device("meta"):
        if chosen.translate is None:  # the Auto classes read the config themselves
            config = from_pretrained(transformers.AutoConfig, path, "model", trust_remote_code=trust_remote_code)
            return transformers.AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        return chosen.network_class()(chosen.translate(raw))


def tensor_names(directory: Path) -> list[str]:
    """The tensor names in a checkpoint directory's safetensors files, read from their headers only."""
    from safetensors import safe_open

    names = []
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as weights:
            names += list(weights.keys())
    return names


def load_tokenizer(path: str, chosen: Family, trust_remote_code: bool):
    import transformers

    return from_pretrained(getattr(transformers, chosen.tokenizer), path, "model", trust_remote_code=trust_remote_code)


def merge_adapter(model: torch.nn.Module, adapter: str) -> torch.nn.Module:
    """``model`` with the LoRA adapter in directory ``adapter`` (as ``entrgi.train`` writes it) merged in."""
    if not (Path(adapter).expanduser() / "adapter_config.json").exists():
        raise ConfigError(f"model.adapter={adapter!r} is not a LoRA adapter directory (no adapter_config.json); "
                          f"set it to the adapter/ directory entrgi.train wrote, or to null")
    try:
        from peft import PeftModel
    except ImportError:
        raise ConfigError("model.adapter needs peft: pip install 'entrgi[train]'") from None
    return PeftModel.from_pretrained(model, str(Path(adapter).expanduser())).merge_and_unload()


def token_id(tokenizer, token: str | int) -> int:
    if isinstance(token, int):
        return token
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise ConfigError(f"token {token!r} is not in the tokenizer's vocabulary; set its id in the model config")
    return vocab[token]


def load_diffusion_lm(
    path: str,
    *,
    loader: str = "auto",
    shift_logits: bool | None = None,
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
    """Load a diffusion LM from a hub id or a local directory, read by the family ``loader`` names.

    ``shift_logits``, ``mask_token``, ``eos_tokens``, ``chat_template``: None takes the family's.
    ``adapter``: a LoRA adapter directory (``entrgi.train``'s) merged into the loaded weights.
    ``load_in_4bit``: NF4 weights through bitsandbytes, for training LoRA on them (CUDA only).
    """
    device_ = resolve_device(device)
    raw = checkpoint_config(path)
    chosen = check_loader(raw, path, loader, trust_remote_code)
    shift = chosen.shift_logits if shift_logits is None else shift_logits
    if shift is None:
        raise ConfigError(f"model.loader={loader} does not know whether {path!r} shifts its logits; "
                          f"set model.shift_logits (true: Dream-style, false: LLaDA-style)")
    tokenizer = load_tokenizer(path, chosen, trust_remote_code)
    if chat_template or chosen.chat_template:
        tokenizer.chat_template = chat_template or chosen.chat_template
    extra = {}
    if load_in_4bit:
        if device_.type != "cuda":
            raise ConfigError("4-bit weights need a CUDA device (bitsandbytes NF4); load them in full precision")
        from transformers import BitsAndBytesConfig

        extra = {"device_map": {"": device_}, "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=resolve_dtype(dtype, device_))}
    model = load_network(path, raw, chosen, resolve_dtype(dtype, device_), trust_remote_code, **extra)
    if adapter:
        model = merge_adapter(model, adapter)
    if not load_in_4bit:  # a quantized model is placed by its device map
        model.to(device_)
    model.eval().requires_grad_(False)
    mask = next((m for m in (mask_token, chosen.mask_token, tokenizer.mask_token) if m is not None), None)
    if mask is None:
        raise ConfigError(f"model {path!r} has no mask token; set model.mask_token")
    eos = [token_id(tokenizer, t) for t in (eos_tokens or chosen.eos_tokens or [tokenizer.eos_token])]
    config = model.config.get_text_config()
    return DiffusionLM(
        model=model,
        tokenizer=tokenizer,
        mask_id=token_id(tokenizer, mask),
        eos_ids=eos,
        shift_logits=shift,
        max_length=max_length or getattr(config, "max_position_embeddings", 4096),
        attention=chosen.attention(raw),
    )
