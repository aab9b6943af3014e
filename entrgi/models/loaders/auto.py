"""``auto``: transformers' Auto classes read the checkpoint as it is (the embedded tiny dLLM, any
checkpoint transformers knows), with its own remote code only when ``model.trust_remote_code`` is set."""

from __future__ import annotations

import torch

from entrgi.models.loaders import register
from entrgi.models.loaders.base import Family
from entrgi.models.loading import from_pretrained


def load_auto(path: str, raw: dict, dtype: torch.dtype, trust_remote_code: bool, **extra) -> torch.nn.Module:
    from transformers import AutoModel, AutoModelForCausalLM

    auto_map = raw.get("auto_map") or {}
    # Dream registers its remote class under AutoModel only
    auto = AutoModel if "AutoModel" in auto_map and "AutoModelForCausalLM" not in auto_map else AutoModelForCausalLM
    return from_pretrained(auto, path, "model", weights=True, dtype=dtype, trust_remote_code=trust_remote_code, **extra)


AUTO = register(Family(name="auto", label="transformers", architectures=(), required=(), load=load_auto,
                       remote_code=True))
