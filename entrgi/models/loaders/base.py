"""The record that says, as data, everything that differs between diffusion LM families.

A family reads one published checkpoint format (its ``config.json`` architectures and fields, its
tensor names, its tokenizer files) into one of transformers' own architecture classes, and says
how the sampler runs it: logit shift, mask token, EOS tokens, chat template and attention structure.
``entrgi.models.loaders.load_diffusion_lm`` does the rest, the same for every family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from entrgi.errors import ConfigError
from entrgi.models.attention import AttentionStructure

# the linear layers of a Llama/Qwen-style decoder block: attention projections and the gated MLP
DENSE_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# what a translation drops from a checkpoint's config: how its own remote code registers itself
REMOTE_CODE_FIELDS = ("auto_map", "architectures", "model_type", "transformers_version")


def bidirectional(raw: dict) -> AttentionStructure:
    return AttentionStructure()


@dataclass(frozen=True)
class Family:
    """One diffusion LM family (``model.loader=<name>``).

    ``translate`` turns the checkpoint's raw config into the config of transformers' class
    ``network``; ``key_mapping`` renames its tensors to that class's (regex -> replacement, as
    ``from_pretrained(key_mapping=...)``). ``None`` in ``shift_logits``/``mask_token``: the model
    config must say (``auto`` reads any checkpoint). ``prepare`` runs on the loaded network (e.g.
    LLaDA's rotary in fp32); ``load`` replaces the native loading altogether (``auto``'s Auto classes).
    """

    name: str
    label: str  # how errors name it: "Dream", "LLaDA", ...
    architectures: tuple[str, ...]  # the config.json "architectures" this family reads (empty: any)
    required: tuple[str, ...]  # config.json fields the translation reads
    # the transformers class the weights load into: its name, or a function giving a class of our own
    network: str | Callable[[], type] = ""
    translate: Callable[[dict], object] | None = None
    key_mapping: dict[str, str] | None = None
    attention: Callable[[dict], AttentionStructure] = bidirectional
    shift_logits: bool | None = None  # Dream-style: logits at i come from the output at i - 1
    mask_token: str | int | None = None  # a token string, or its id
    eos_tokens: tuple[str | int, ...] = ()  # empty: the tokenizer's EOS
    chat_template: str | None = None  # None: the tokenizer's own
    lora_targets: tuple[str, ...] = DENSE_LORA_TARGETS  # train.lora.target_modules when it is null
    # parameters that are not linear layers, trained through LoRA too (a mixture's fused expert matrices)
    lora_parameters: tuple[str, ...] = ()
    tokenizer: str = "AutoTokenizer"  # the transformers class that reads its tokenizer files
    refuse: Callable[[dict], str | None] = field(default=lambda raw: None)  # what it cannot run, or None
    prepare: Callable[[torch.nn.Module, dict], None] | None = None
    # the checkpoint's tensor names against its config, before any weight is read: what disagrees, or None
    check_tensors: Callable[[dict, list[str]], str | None] | None = None
    load: Callable[..., torch.nn.Module] | None = None
    remote_code: bool = False  # runs the checkpoint's own code when model.trust_remote_code is set

    def network_class(self) -> type:
        import transformers

        return self.network() if callable(self.network) else getattr(transformers, self.network)

    def check(self, raw: dict, families: dict[str, Family]) -> None:
        """Refuse a checkpoint this family cannot read, naming the family that can (or every registered one)."""
        architectures = raw.get("architectures") or []
        wrong = self.architectures and not set(architectures) & set(self.architectures)
        absent = [f for f in self.required if f not in raw]
        if wrong or absent:
            why = f"its architectures are {architectures}" if wrong else f"its config.json has no {absent}"
            readers = [f.name for f in families.values() if set(architectures) & set(f.architectures)]
            fix = (f"set model.loader={' or model.loader='.join(readers)}" if readers else
                   f"no registered family reads it ({sorted(families)}); add one (docs/models.md)")
            raise ConfigError(f"model.path is not a {self.label} checkpoint ({why}); {fix}")
        unsupported = self.refuse(raw)
        if unsupported:
            raise ConfigError(unsupported)


def without_remote_code(raw: dict, *drop: str) -> dict:
    """The checkpoint's config fields, less its remote-code registration, ``drop`` and nulls."""
    return {k: v for k, v in raw.items() if k not in (*REMOTE_CODE_FIELDS, *drop) and v is not None}


def refused_fields(raw: dict, computed: dict) -> dict:
    """The fields of config ``raw`` set to another value than the one the target class computes
    (``computed``: field -> the only value it supports)."""
    return {k: raw[k] for k, v in computed.items() if k in raw and raw[k] != v}
