"""The objects a composed config describes: models, prompts, the method, the logger.

Shared by the entrypoints (``entrgi.run``, ``entrgi.train``); each takes the resolved Hydra config.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf

from entrgi.bookkeeping.settings import open_job
from entrgi.bookkeeping.storage import locked, write_atomic
from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt, check_truncation, load_benchmark, register_source
from entrgi.methods import make_method, scorer_refusal
from entrgi.methods.base import Method
from entrgi.models.attention import AttentionStructure
from entrgi.models.diffusion import DiffusionLM
from entrgi.models.loaders import load_diffusion_lm
from entrgi.models.reward import RewardModel
from entrgi.models.scorer import Scorer, is_scorer, make_scorer
from entrgi.sampling.sampler import SamplerConfig, check_structure
from entrgi.testbed.corpus import training_prompts

register_source("testbed")(training_prompts)  # benchmark.source=testbed: the tiny testbed's training prompts

log = logging.getLogger("entrgi")


def load_models(cfg: DictConfig, device: str | None = None,
                load_in_4bit: bool = False) -> tuple[DiffusionLM, RewardModel | Scorer]:
    """The dLLM on ``device`` (default ``cfg.device``) and the reward: a reward model on ``cfg.reward.device``
    (default: the dLLM's; guidance moves the relaxed embeddings there and their gradients back), or a scorer
    (``entrgi.models.scorer``), built first so that its errors come before the dLLM loads; ``load_in_4bit``:
    the dLLM's base weights in NF4, for training LoRA on them (``entrgi.train``)."""
    from entrgi.models.loading import silence_library_deprecations

    silence_library_deprecations()  # the adapter's merge (PEFT) and the trainer (TRL) call deprecated names
    device = device or cfg.device
    scorer = make_scorer(cfg.reward) if is_scorer(cfg.reward) else None
    dllm = load_diffusion_lm(
        cfg.model.path, loader=cfg.model.loader, shift_logits=cfg.model.shift_logits, mask_token=cfg.model.mask_token,
        eos_tokens=list(cfg.model.eos_tokens) if cfg.model.eos_tokens else None, device=device,
        dtype=cfg.dtype, trust_remote_code=cfg.model.trust_remote_code, max_length=cfg.model.max_length,
        chat_template=cfg.model.chat_template, adapter=cfg.model.get("adapter"), load_in_4bit=load_in_4bit)
    if cfg.model.get("attention"):  # a checkpoint run with the attention structure its config names
        dllm.attention = model_attention(cfg)
    if scorer is not None:
        return dllm, scorer
    reward = RewardModel.load(cfg.reward.path, device=cfg.reward.get("device") or device, dtype=cfg.dtype,
                              trust_remote_code=cfg.reward.trust_remote_code, chat_template=cfg.reward.chat_template)
    if cfg.get("fast_paths", {}).get("compile"):
        reward.compile()
    return dllm, reward


def free_cores() -> int:
    """The cores this process may run on less the load already on them (the 1-minute load average),
    at least 1: on a machine others share, more threads than free cores make every step wait."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - round(os.getloadavg()[0]))


def set_threads(setting) -> None:
    """torch's CPU threads from ``threads``: ``auto`` takes the free cores, unless the environment
    already chose (``OMP_NUM_THREADS``, as ``accelerate launch`` sets per process); an integer sets it."""
    import torch

    if setting == "auto":
        if os.environ.get("OMP_NUM_THREADS"):
            return
        count = free_cores()
        log.info("torch threads: %d (the free cores now; threads=N to choose)", count)
    elif isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        count = setting
    else:
        raise ConfigError(f"threads={setting!r}; use auto (the cores free now) or an integer >= 1")
    torch.set_num_threads(count)


def fast_paths(cfg: DictConfig):
    """A context in which the sampler's fast paths ``cfg.fast_paths`` switches on are on."""
    from entrgi.sampling import fastpaths

    return fastpaths.using(OmegaConf.to_container(cfg.fast_paths) if cfg.get("fast_paths") else {})


def load_prompts(cfg: DictConfig, group: str = "benchmark") -> list[Prompt]:
    """The prompts of the benchmark config at ``cfg[group]`` (``train_prompts`` for entrgi.train's)."""
    b = cfg[group]
    try:
        return load_benchmark(b.name, b.source, b.path, field=b.field, split=b.split, subset=b.subset,
                              id_field=b.id_field, reference_field=b.reference_field, num_prompts=b.num_prompts,
                              seed=cfg.seed, distribution=b.get("distribution"), on_bad_rows=b.on_bad_rows,
                              metadata_fields=b.get("metadata_fields"),
                              where=OmegaConf.to_container(b.where) if b.get("where") else None)
    except ConfigError as error:  # the loader names the benchmark group's keys
        if group == "benchmark":
            raise
        raise ConfigError(str(error).replace("benchmark.", f"{group}.")) from error


def build_method(cfg: DictConfig) -> Method:
    """The method ``cfg.method`` names, with its schedule and the reward config's vocabulary settings.

    A method that needs the reward's gradient refuses a scorer here, before any model loads."""
    method = make_method(OmegaConf.to_container(cfg.method, resolve=True), OmegaConf.to_container(cfg.schedule),
                         unmatched=cfg.reward.get("unmatched", "retokenize"),
                         min_coverage=cfg.reward.get("min_coverage", 0.0),
                         compatible_model=cfg.reward.get("compatible_model"), model_name=cfg.model.name,
                         diagnose_relaxation=bool(cfg.get("diagnostics", {}).get("relaxation", False)))
    if is_scorer(cfg.reward) and method.needs_reward_gradient:
        raise ConfigError(scorer_refusal(cfg.method.name, cfg.reward.get("name") or cfg.reward.type))
    return method


def model_attention(cfg: DictConfig) -> AttentionStructure:
    """The attention structure ``model.attention`` (and ``model.block_size``) names; bidirectional by default."""
    return AttentionStructure(cfg.model.get("attention") or "bidirectional", cfg.model.get("block_size"))


def check_job(cfg: DictConfig) -> None:
    """Refuse settings that would fail or mislead later, before anything heavy loads."""
    check_truncation(cfg.benchmark.max_prompt_tokens, cfg.benchmark.truncation)
    check_structure(SamplerConfig(**cfg.sampler), model_attention(cfg))
    if is_scorer(cfg.reward):
        make_scorer(cfg.reward)  # a bad scorer (type, pattern, import path) fails now, not after the dLLM loads
    for key in ("seed", "num_samples", "batch_size"):
        value = cfg[key]
        if not isinstance(value, int) or isinstance(value, bool) or (key != "seed" and value < 1):
            need = "an integer" if key == "seed" else "an integer >= 1"
            raise ConfigError(f"{key}={value!r} must be {need}")
    shard_of([], cfg.shard.index, cfg.shard.count)


def shard_of(prompts: list[Prompt], index: int, count: int) -> list[Prompt]:
    """Every ``count``-th prompt from ``index``: the shards of a setting partition its prompts."""
    if not (isinstance(index, int) and isinstance(count, int)) or count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard.index={index} shard.count={count}: need integers with 0 <= shard.index < shard.count")
    if prompts and count > len(prompts):
        raise ConfigError(f"shard.count={count} is more than the benchmark's {len(prompts)} prompts: shard "
                          f"{index} would hold none; set shard.count <= {len(prompts)}")
    return prompts[index::count]


def open_logger(cfg: DictConfig, out_dir: Path, job_digest: str):
    """The experiment logger ``cfg.logger`` names, or None; W&B is imported only when asked for."""
    kind = cfg.logger.type
    if kind == "none":
        return None
    if kind == "wandb":
        from entrgi.bookkeeping.logging_wandb import WandbLogger

        return WandbLogger(cfg, out_dir, job_digest)
    raise ConfigError(f"unknown logger.type={kind!r}; use wandb or none")


def in_job_directory(cfg: DictConfig, out_dir: Path, work: Callable[[str], dict]) -> dict | None:
    """``work(job_digest)`` in ``out_dir``, held by this process, with ``config.yaml`` written, torch
    seeded and the fast paths on. The stored summary when the job already finished there; None when
    another process holds the directory (the same sweep launched twice: the second launcher skips the
    jobs the first is computing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with locked(out_dir / ".job.lock", wait=False) as mine:
        if not mine:
            log.warning("%s is being computed by another process; skipping it (run the command again when that "
                        "process is done to collect it)", out_dir)
            return None
        with fast_paths(cfg):
            job_digest, finished = open_job(out_dir, cfg)
            if finished is not None:
                log.info("%s already finished with these settings; nothing to do", out_dir)
                return finished
            write_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
            torch.manual_seed(cfg.seed)
            return work(job_digest)
