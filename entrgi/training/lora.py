"""LoRA targets: what a training run adapts, checked against the model's names before any weight loads."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from entrgi.errors import ConfigError
from entrgi.models.loaders.base import Family


def check_lora_targets(lora: DictConfig, model: torch.nn.Module, record: Family) -> tuple[list[str], list[str]]:
    """The LoRA targets (linear layers, other parameters) ``lora`` names for ``model``, or a one-line error."""
    targets = list(lora.target_modules or record.lora_targets)
    parameters = list(lora.get("target_parameters") or record.lora_parameters)
    linear = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    missing = [t for t in targets if t not in linear]
    if missing:
        raise ConfigError(f"train.lora.target_modules names {missing}, which the model does not have; choose "
                          f"among its linear layers {sorted(linear)}")
    names = [name for name, _ in model.named_parameters()]
    absent = [t for t in parameters if not any(name.endswith(t) for name in names)]
    if absent:
        raise ConfigError(f"train.lora.target_parameters names {absent}, which the model does not have; set it to "
                          f"parameter names of the model or to null")
    if parameters and lora.dropout:
        raise ConfigError(f"LoRA on the parameters {parameters} (peft's ParamWrapper) takes no dropout; set "
                          f"train.lora.dropout=0")
    return targets, parameters
