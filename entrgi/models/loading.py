"""Devices, dtypes and ``from_pretrained`` with a hub that may be unreachable: one-line errors that say the fix."""

from __future__ import annotations

import json
import logging
import socket
import warnings
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import torch

from entrgi.errors import ConfigError

log = logging.getLogger("entrgi")
# deprecations that TRL's and PEFT's own calls into transformers raise (they read
# `is_gradient_checkpointing`, which transformers 5.25 renamed): nothing a user of entrgi can act on.
# Only these messages, from transformers' modeling code, are filtered; every other warning still shows.
LIBRARY_DEPRECATIONS = r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated and will be removed in v6"


def silence_library_deprecations() -> None:
    warnings.filterwarnings("ignore", message=LIBRARY_DEPRECATIONS, category=FutureWarning,
                            module=r"transformers\.modeling_utils")


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


def download_command(repo: str, repo_type: str | None = None) -> str:
    """The command that saves hub repository ``repo`` into ``<dir>``, for the installed huggingface-hub:
    ``hf download`` (huggingface-hub 0.34 on; 1.0 dropped ``huggingface-cli``), else ``huggingface-cli``."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        scripts = {e.name for e in distribution("huggingface_hub").entry_points if e.group == "console_scripts"}
    except PackageNotFoundError:
        scripts = set()
    program = "hf" if "hf" in scripts or "huggingface-cli" not in scripts else "huggingface-cli"
    kind = f" --repo-type {repo_type}" if repo_type else ""
    return f"{program} download{kind} {repo} --local-dir <dir>"


WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt")
PICKLE_WEIGHTS = WEIGHTS[1:]  # torch.load formats: unpickling can run code
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "*.model", "*.tiktoken")


def check_checkpoint_dir(directory: Path, what: str) -> None:
    """Refuse a local directory that is not a checkpoint (saying what it lacks: ``config.json``,
    weights, tokenizer files), or whose weights are pickle files only.

    Checked before loading: transformers would otherwise fail deep inside (or, with a config and no
    tokenizer files, build an empty tokenizer without a word).
    """
    directory = Path(directory)
    has = lambda patterns: any(next(directory.glob(p), None) for p in patterns)  # noqa: E731
    missing = [phrase for phrase, present in (
        ("no config.json", (directory / "config.json").exists()),
        ("no weights (*.safetensors)", has(WEIGHTS)),
        ("no tokenizer files (tokenizer.json or tokenizer_config.json)", has(TOKENIZER_FILES))) if not present]
    if missing:
        raise ConfigError(f"{what} path {str(directory)!r} is not a model directory: {', '.join(missing)}; "
                          f"point {what}.path at a directory with a checkpoint's files")
    for weights in sorted(directory.glob(WEIGHTS[0])):
        check_safetensors(weights, what)
    if not has(WEIGHTS[:1]):
        pickles = sorted(p.name for pattern in PICKLE_WEIGHTS for p in directory.glob(pattern))
        raise ConfigError(
            f"{what} path {str(directory)!r} holds only pickle weights ({', '.join(pickles)}), which can run code "
            f"when loaded and are refused; convert them to safetensors where you trust them (save_pretrained with "
            f"safe_serialization=True) and point {what}.path at the result")


def check_safetensors(path: Path, what: str) -> None:
    """Refuse a safetensors file that is not whole (cut short by a copy, a download, a full disk), from its
    header alone: an 8-byte header length, the JSON header, then the tensors' bytes it lists."""
    size = path.stat().st_size
    problem = None
    try:
        with path.open("rb") as handle:
            header_length = int.from_bytes(handle.read(8), "little")
            if size < 8 or header_length > size - 8:
                problem = f"its header claims {header_length} bytes but the file has {size}"
            else:
                header = json.loads(handle.read(header_length))
                end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"),
                          default=0)
                if 8 + header_length + end > size:
                    problem = f"its tensors end at byte {8 + header_length + end} but the file has {size}"
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        problem = "its header is not a safetensors header"
    if problem:
        raise ConfigError(f"{what} weights {str(path)!r} are damaged ({problem}: cut short or not safetensors); "
                          f"copy or download them again, or point {what}.path at a whole checkpoint")


def from_pretrained(loader, path: str, what: str, weights: bool = False, **kwargs):
    """``loader.from_pretrained(path)`` with a one-line error that says how to fix a failed load.

    ``path`` is a local directory or a hub id; without a reachable hub only the local cache is tried.
    ``weights``: the loader reads weights, through safetensors only (``use_safetensors=True``): a
    pickle file (``pytorch_model.bin``) can run code when loaded.
    """
    local = Path(path).expanduser()
    if (path.startswith((".", "/", "~")) or path.count("/") > 1) and not local.exists():
        raise ConfigError(f"{what} path {path!r} does not exist; point {what}.path at a model directory or a hub id")
    if local.is_dir():
        check_checkpoint_dir(local, what)
    if weights:
        kwargs["use_safetensors"] = True
    offline = None if local.exists() else hub_unreachable()
    if offline:
        kwargs["local_files_only"] = True
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    if weights:  # one log line per model instead of transformers' "Loading weights" bar
        log.info("loading %s weights from %s", what, path)
        hf_logging.disable_progress_bar()
    try:
        return loader.from_pretrained(str(local) if local.exists() else path, **kwargs)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if local.exists():
            raise ConfigError(f"cannot load {what} {path!r}: {first} -- check {what}.path") from error
        reason = f" ({offline}; not in the local cache)" if offline else ""
        raise ConfigError(
            f"cannot load {what} {path!r}{reason}: {first} -- download it where there is network "
            f"({download_command(path)}) and set {what}.path=<dir>"
        ) from error
    finally:
        if bar:
            hf_logging.enable_progress_bar()


def checkpoint_config(path: str, what: str = "model") -> dict:
    """The raw ``config.json`` of a hub id or local directory, read without any model class
    (``what``: the config key errors name, ``model`` or ``reward``)."""
    from transformers import PretrainedConfig

    class _RawConfig:  # from_pretrained-shaped adapter, so ``from_pretrained`` gives the usual errors
        @staticmethod
        def from_pretrained(name, **kwargs):
            return PretrainedConfig.get_config_dict(name, **kwargs)[0]

    return from_pretrained(_RawConfig, path, what)
