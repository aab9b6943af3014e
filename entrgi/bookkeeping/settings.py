"""What identifies a job and its baseline: the settings that decide their results, and digests of them.

A job's output directory in a sweep, its W&B run id and the check that a directory holds this
job's results all come from ``job_settings``; the shared best-of-K cache is keyed by
``baseline_settings``. Both are plain dicts of the resolved config, so they work with or without
Hydra.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from entrgi.bookkeeping.storage import read_jsonl, write_json
from entrgi.errors import ConfigError

log = logging.getLogger("entrgi")

# keys that never change a job's numbers: where and how it logs, how it batches, where caches live,
# how many CPU threads it uses
NOT_RESULTS = ("hydra", "logger", "batch_size", "sweep", "baseline", "threads")
# nodes of switches that add to the records without changing the samples: part of a job's settings
# only when one is on, so that jobs from before the switch existed keep their identity
SWITCHES = ("diagnostics", "fast_paths")
# what decides the unguided samples, their rewards and the best of K; the method, its schedule
# and guidance, the judge and the sharding do not
BASELINE_KEYS = ("model", "reward", "benchmark", "seed", "num_samples", "sampler", "dtype", "device")


def digest(settings) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


# settings newer than some jobs, part of a job's identity only when set away from these values (the
# sampler's block modes; the reward model on the dLLM's device), so those jobs keep their identity
OPT_IN = {"sampler": {"cache": "none", "threshold": None}, "reward": {"device": None}}


def _resolved(cfg: DictConfig, keys) -> dict:
    out = {}
    for key in keys:
        value = cfg[key]
        out[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    for key, off in OPT_IN.items():
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k not in off or v != off[k]}
    return out


def job_settings(cfg: DictConfig) -> dict:
    """The resolved config minus what does not change results (so a re-launch with another
    batch size or logger resumes the same job)."""
    return _resolved(cfg, [k for k in cfg.keys() if k not in NOT_RESULTS
                           and (k not in SWITCHES or any(cfg[k].values()))])


def baseline_settings(cfg: DictConfig, device: str, dtype: str, scorer: dict | None = None) -> dict:
    """What decides best-of-K's outputs: its config, the device type and dtype actually used, and the
    versions of the code that computes them; ``scorer``: what decides a scorer reward's scores beyond
    its config (``Scorer.identity``: a scoring function's source digest)."""
    import torch
    import transformers

    import entrgi

    # the fast paths change unguided samples too; like every switch, part of the settings only when on
    switches = [k for k in ("fast_paths",) if k in cfg and any(cfg[k].values())]
    settings = _resolved(cfg, [k for k in BASELINE_KEYS if k in cfg] + switches)
    if scorer is not None:
        settings["scorer"] = scorer
    settings.update(device=device, dtype=dtype, versions={"entrgi": entrgi.__version__, "torch": torch.__version__,
                                                         "transformers": transformers.__version__})
    return settings


def join_name(*parts, limit: int = 120) -> str:
    """The non-empty ``parts`` joined by ``_``, cut to ``limit`` characters (then a digest of the whole
    keeps distinct names distinct): a directory name stays well under the file system's 255."""
    name = "_".join(str(p) for p in parts if p)
    if len(name) <= limit:
        return name
    return f"{name[:limit - 9]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def safe_name(text: str) -> str:
    """``text`` as one path component: characters other than letters, digits and ``._=,-`` become ``-``, and a leading ``.`` too, so a name such as ``../x`` cannot leave its parent
    directory or hide in it. Distinct settings keep distinct directories: the digest after the name
    covers the names as given."""
    name = re.sub(r"[^A-Za-z0-9._=,-]", "-", str(text))
    return re.sub(r"^\.", "-", name) or "-"


def adapter_name(adapter: str | None) -> str:
    """A LoRA adapter in a directory name: ``adapter=<its training run's directory>`` (the directory
    above ``adapter/``, which names the run), or ``""`` without one. The path itself is too long for a
    name; the settings digest beside it tells two adapters of one name apart."""
    if not adapter:
        return ""
    path = Path(str(adapter).rstrip("/"))
    return safe_name(f"adapter={path.parent.name if path.name == 'adapter' and path.parent.name else path.name}")


def job_name(cfg: DictConfig) -> str:
    """A readable, deterministic directory name: method, benchmark (an evaluation's tasks), the model's
    adapter (if any), seed, shard and a settings digest."""
    what = cfg.benchmark.name if "benchmark" in cfg else "+".join(cfg.tasks)
    name = join_name(cfg.method.name, what, adapter_name(cfg.model.get("adapter")), f"s{cfg.seed}")
    shard = cfg.get("shard")
    if shard is not None and shard.count > 1:
        name += f"_shard{shard.index}of{shard.count}"
    return safe_name(f"{name}_{digest(job_settings(cfg))[:8]}")


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            keys += differences(left, right, f"{prefix}{key}.")
        elif left != right:
            keys.append(f"{prefix}{key}")
    return keys


def claim_directory(out_dir: Path, settings: dict) -> str:
    """Record which settings ``out_dir`` holds; refuse a directory that holds another job's results.

    A directory claimed by other settings but holding no results (a run that failed before its
    first prompt finished, or a training run before its first checkpoint) is free: a corrected
    re-run takes it over.
    """
    job_digest = digest(settings)
    out_dir = Path(out_dir)
    path = out_dir / "settings.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("digest") == job_digest:
            return job_digest
        keys = ", ".join(differences(stored.get("settings", {}), settings)[:8]) or "unknown keys"
        if ((out_dir / "summary.json").exists() or read_jsonl(out_dir / "results.jsonl")
                or any(out_dir.glob("checkpoint-*"))):
            raise ConfigError(f"{out_dir} holds results of other settings (differing: {keys}); "
                              f"choose another output directory or delete it")
        log.info("%s was claimed by other settings (differing: %s) that wrote no results; taking it over",
                 out_dir, keys)
    write_json(path, {"digest": job_digest, "settings": settings})
    return job_digest


def finished_summary(out_dir: Path, job_digest: str) -> dict | None:
    """The summary of a finished job with these settings in ``out_dir``, else None."""
    path = Path(out_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return summary if summary.get("settings_digest") == job_digest else None


def open_job(out_dir: Path, cfg: DictConfig) -> tuple[str, dict | None]:
    """Claim ``out_dir`` for the job ``cfg`` describes (refusing one that holds other settings' results):
    the job's digest, and its stored summary when it already finished."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    job_digest = claim_directory(out_dir, job_settings(cfg))
    return job_digest, finished_summary(out_dir, job_digest)
