"""Devices, dtypes and ``from_pretrained`` with a hub that may be unreachable: one-line errors that say the fix."""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import torch

from entrgi.errors import ConfigError


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device} was asked for but CUDA is not available; set device=cpu or device=auto")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(names)}")
    return names[dtype]


@lru_cache(maxsize=1)
def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be used, or None. Checked once per process, in at most 3 seconds,
    so that a missing network fails at once instead of after the hub client's retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=3).close()
    except OSError as error:
        return f"{endpoint.hostname} is unreachable: {error}"
    return None


def from_pretrained(loader, path: str, what: str, **kwargs):
    """``loader.from_pretrained(path)`` with a one-line error that says how to fix a failed load.

    ``path`` is a local directory or a hub id; without a reachable hub only the local cache is tried.
    """
    local = Path(path).expanduser()
    if (path.startswith((".", "/", "~")) or path.count("/") > 1) and not local.exists():
        raise ConfigError(f"{what} path {path!r} does not exist; point {what}.path at a model directory or a hub id")
    offline = None if local.exists() else hub_unreachable()
    if offline:
        kwargs["local_files_only"] = True
    try:
        return loader.from_pretrained(str(local) if local.exists() else path, **kwargs)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if local.exists():
            raise ConfigError(f"cannot load {what} {path!r}: {first} -- check {what}.path") from error
        reason = f" ({offline}; not in the local cache)" if offline else ""
        raise ConfigError(
            f"cannot load {what} {path!r}{reason}: {first} -- download it where there is network "
            f"(huggingface-cli download {path} --local-dir <dir>) and set {what}.path=<dir>"
        ) from error
