"""The Hydra entrypoint of post-training: RGRL, diffu-GRPO or RFT on the dLLM's own samples.

    python -m entrgi.train                                   # RGRL on the embedded tiny stack
    python -m entrgi.train train=diffu_grpo train.steps=100  # a baseline recipe, any override
    accelerate launch --config_file conf/accelerate/ddp.yaml -m entrgi.train reward=skywork_0.6b
    python -m entrgi.train -m train=rgrl,diffu_grpo,rft seed=1,2 sweep=recipes [hydra/launcher=slurm]

The run directory (``outputs/train/<recipe>_<prompts>_s<seed>_<digest>/``, a function of the settings)
holds the resolved config, ``checkpoint-<step>/`` (adapter, optimizer, scheduler, RNG, trainer state),
``samples.jsonl`` (the training samples and rewards), ``eval.jsonl`` (held-out evaluations), the final
``adapter/``, ``summary.json``, ``README.md`` (the model card, also in ``adapter/``) and ``train.log``.
The same command after a kill resumes from the last checkpoint.
Everything here is glue; the training is :mod:`entrgi.training.trainer`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from entrgi.bookkeeping.settings import open_job
from entrgi.bookkeeping.storage import read_jsonl, run_lock, write_atomic, write_json
from entrgi.config_store import register
from entrgi.errors import ConfigError
from entrgi.evaluation.judges import make_judge
from entrgi.from_config import build_method, fast_paths, load_models, load_prompts, set_threads
from entrgi.methods.base import SamplingSetup
from entrgi.models.loaders import family
from entrgi.models.loaders.base import Family
from entrgi.sampling.sampler import SamplerConfig
from entrgi.training.lora import check_lora_targets
from entrgi.validation import check_train_extra, preflight, validate

log = logging.getLogger("entrgi")
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


register()  # for a launcher's workers, which unpickle a job without composing


def check_settings(cfg: DictConfig, device: torch.device) -> None:
    """Refuse settings that cannot train on ``device``, each with the key to change (the rest: the table,
    :func:`entrgi.validation.validate`)."""
    t = cfg.train
    if cfg.eval_reward.get("type") == "pairwise":  # before any model loads
        raise ConfigError(f"eval_reward={cfg.eval_reward.name} compares two answers; the training evaluation scores "
                          f"each answer on its own: pick a pointwise judge (e.g. keywords, ifeval) or eval_reward=none")
    if t.load_in_4bit and device.type != "cuda":
        raise ConfigError("train.load_in_4bit=true needs CUDA (bitsandbytes NF4); set train.load_in_4bit=false "
                          "on this device")


def lora_config(lora: DictConfig, model: torch.nn.Module, record: Family):
    """peft's LoRA config, refusing targets the model does not have. ``lora.target_modules`` (linear layers)
    and ``lora.target_parameters`` (other matrices: a mixture's fused experts) null: the model family's
    (``record``). ``model`` may be its meta-device skeleton (:func:`check_lora_targets`)."""
    from peft import LoraConfig

    targets, parameters = check_lora_targets(lora, model, record)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                      target_parameters=parameters or None, task_type="CAUSAL_LM")


# TRL's GRPOConfig argument <- the train setting it is read from (conf/train.yaml's ``train`` node)
TRL_ARGS = {"max_steps": "steps", "learning_rate": "lr", "lr_scheduler_type": "lr_scheduler",
            "warmup_steps": "warmup_steps", "weight_decay": "weight_decay", "max_grad_norm": "max_grad_norm",
            "per_device_train_batch_size": "batch_size", "num_generations": "num_samples",
            "gradient_accumulation_steps": "gradient_accumulation", "gradient_checkpointing": "gradient_checkpointing",
            "beta": "beta", "epsilon": "epsilon", "num_iterations": "num_iterations", "save_steps": "save_every",
            "save_total_limit": "keep_checkpoints"}
# and those no setting changes: TRL's GRPO loss for diffu_grpo, one log line and a checkpoint schedule per step
FIXED_TRL_ARGS = {"loss_type": "grpo", "scale_rewards": "group", "disable_dropout": False,
                  "remove_unused_columns": False, "logging_steps": 1, "save_strategy": "steps",
                  "dataloader_num_workers": 0, "log_completions": False,
                  # every LoRA weight takes part in each forward: DDP need not search for unused ones (and warn)
                  "ddp_find_unused_parameters": False}


def training_args(cfg: DictConfig, out_dir: Path, device: torch.device, report_to: list[str]):
    import dataclasses

    from trl import GRPOConfig

    args = {arg: cfg.train[key] for arg, key in TRL_ARGS.items()}
    # transformers 5.25 renamed gradient_checkpointing (a deprecated alias since); older ones know only it
    if "activation_checkpointing" in {f.name for f in dataclasses.fields(GRPOConfig)}:
        args["activation_checkpointing"] = args.pop("gradient_checkpointing")
    return GRPOConfig(
        output_dir=str(out_dir), seed=cfg.seed, max_completion_length=cfg.sampler.gen_length, report_to=report_to,
        use_cpu=device.type == "cpu", bf16=device.type == "cuda" and cfg.dtype != "float32",
        **args, **FIXED_TRL_ARGS)


def last_checkpoint(out_dir: Path) -> str | None:
    """The latest complete ``checkpoint-<step>``: one that every process finished saving (the trainer's
    marker, :data:`~entrgi.training.trainer.CHECKPOINT_COMPLETE`); a kill can leave a later one half-written."""
    from entrgi.training.trainer import CHECKPOINT_COMPLETE

    complete = [p for p in Path(out_dir).glob("checkpoint-*")
                if p.name.split("-")[-1].isdigit() and (p / CHECKPOINT_COMPLETE).exists()]
    return str(max(complete, key=lambda p: int(p.name.split("-")[-1]))) if complete else None


def train(cfg: DictConfig, out_dir: Path) -> dict:
    """Train into ``out_dir``, resuming from its last checkpoint; returns the summary.

    A job that already finished with the same settings returns its stored summary at once;
    ``out_dir`` holding another job's settings is an error, and so is one that another launch (or
    the workers a killed launch left running) is training: every process holds the directory's lock.
    """
    from accelerate import PartialState

    validate(cfg, "train")
    # the processes' distributed state, as the trainer will set it up (on a CPU only with cpu=True)
    state = PartialState(cpu=cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()))
    with run_lock(Path(out_dir), state.process_index, state.num_processes):
        return train_locked(cfg, Path(out_dir), state)


def train_locked(cfg: DictConfig, out_dir: Path, state) -> dict:
    """:func:`train` in a directory whose lock this process holds."""
    from datasets import Dataset

    from entrgi.training.console import TrainingConsole
    from entrgi.training.evaluation import HeldOut
    from entrgi.training.model_card import model_card
    from entrgi.training.trainer import DiffusionPolicyTrainer, EvaluateEvery, recipe_of, truncate_log

    device = state.device if cfg.device == "auto" else torch.device(cfg.device)
    recipe_of(cfg.train.recipe)
    set_threads(cfg.get("threads", "auto"))
    check_settings(cfg, device)
    job_digest, finished = open_job(out_dir, cfg)
    if finished is not None:
        log.info("%s already finished with these settings; nothing to do", out_dir)
        return finished
    resume = last_checkpoint(out_dir)
    if state.is_main_process:
        write_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        resumed_at = int(Path(resume).name.split("-")[-1]) if resume else 0
        truncate_log(out_dir / "samples.jsonl", resumed_at)  # drawn after the checkpoint: drawn again
        truncate_log(out_dir / "eval.jsonl", resumed_at + 1 if resume else 0)
    state.wait_for_everyone()

    train_prompts = load_prompts(cfg, "train_prompts")
    held_out_prompts = load_prompts(cfg)[:cfg.train.eval.num_prompts]  # entrgi.run's with benchmark.num_prompts=that
    method = build_method(cfg)  # the guidance of a guided recipe's samples and of the guided evaluation
    dllm, reward = load_models(cfg, str(device), cfg.train.load_in_4bit)
    sampler = SamplerConfig(**cfg.sampler)
    setup = SamplingSetup(dllm, reward, sampler, cfg.train.num_samples, cfg.seed)  # each batch padded to its own widths
    prepared = method.prepare(setup, train_prompts)
    # the evaluation samples as entrgi.run does these prompts: its padding widths, K and the seed
    held_out = HeldOut(held_out_prompts, SamplingSetup.for_prompts(dllm, reward, held_out_prompts, sampler,
                                                                   cfg.train.eval.num_samples, cfg.seed),
                       make_judge(cfg.eval_reward, device=str(device), dtype=cfg.dtype), cfg.train.eval.batch_size)
    if cfg.train.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        dllm.model = prepare_model_for_kbit_training(dllm.model, cfg.train.gradient_checkpointing)

    peft_config = lora_config(cfg.train.lora, dllm.model, family(cfg.model.loader))
    run = None
    if cfg.logger.type == "wandb" and state.is_main_process:
        from entrgi.bookkeeping.logging_wandb import init_run

        run = init_run(cfg, out_dir, job_digest, "train", [cfg.train.recipe, cfg.train_prompts.name])
    trainer = DiffusionPolicyTrainer(
        setup=setup, method=method, recipe=cfg.train.recipe, prompt_mask_rate=cfg.train.prompt_mask_rate,
        out_dir=out_dir, held_out=held_out,
        estimator=cfg.train.estimator, likelihood_attention=cfg.train.likelihood_attention,
        completion_eos=cfg.train.completion_eos, loss_scale=cfg.train.loss_scale,
        # W&B from the main process only (the others' trainer state says process zero before training starts)
        args=training_args(cfg, out_dir, device, ["wandb"] if run is not None else []),
        train_dataset=Dataset.from_list([{"prompt": p.text, "id": p.id} for p in train_prompts]),
        peft_config=peft_config, callbacks=[EvaluateEvery(cfg.train.eval.every)])
    judge_name = held_out.judge.name if held_out.judge is not None else None
    TrainingConsole.install(trainer, out_dir / "eval.jsonl", judge_name)
    log.info("%s on %d prompts, %d steps, %d process(es); %s", cfg.train.recipe, len(train_prompts), cfg.train.steps,
             state.num_processes, f"resuming from {resume}" if resume else "from the start")
    with fast_paths(cfg):
        if not any(r["step"] == 0 for r in read_jsonl(out_dir / "eval.jsonl")):
            trainer.evaluate()  # the untrained policy: what later evaluations are compared with
        trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out_dir / "adapter"))
    if cfg.train.save_merged and state.is_main_process:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.save_pretrained(out_dir / "merged")
        dllm.tokenizer.save_pretrained(out_dir / "merged")
    evaluations = read_jsonl(out_dir / "eval.jsonl")
    summary = {"recipe": cfg.train.recipe, "steps": trainer.state.global_step, "adapter": str(out_dir / "adapter"),
               "processes": state.num_processes, "train_prompts": len(train_prompts),
               **prepared, "settings_digest": job_digest,
               "final_eval": {r["mode"]: r["summary"] for r in evaluations if r["step"] == trainer.state.global_step},
               "untrained_eval": {r["mode"]: r["summary"] for r in evaluations if r["step"] == 0},
               "judge": judge_name}
    if state.is_main_process:
        card = model_card(cfg, summary, judge_name)
        write_atomic(out_dir / "README.md", card)  # in place of TRL's and PEFT's templates
        write_atomic(out_dir / "adapter" / "README.md", card)
        write_json(out_dir / "summary.json", summary)  # last: its presence marks the job finished
    if run is not None:
        run.finish()
    return summary


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN and cfg.logger.get("group", "") is None:
        cfg.logger.group = Path(hydra_cfg.sweep.dir).name
    try:
        summary = train(cfg, Path(hydra_cfg.runtime.output_dir))
    except ConfigError as error:
        sys.exit(f"entrgi: error: {error}")
    if not is_main_process():
        return summary
    from entrgi.training.console import print_summary

    print_summary(summary, summary.get("judge"))
    return summary


def cli(argv: list[str] | None = None) -> None:
    """``python -m entrgi.train``: the training extra and the command line checked before Hydra makes the
    run directory (:mod:`entrgi.validation`), then train."""
    from entrgi.run import check_moved_keys

    argv = sys.argv[1:] if argv is None else list(argv)
    check_train_extra()
    check_moved_keys(argv)  # guidance.* moved to method.*, as for entrgi.run
    preflight(argv, "train", "train", CONF_DIR)
    sys.argv = [sys.argv[0], *argv]
    main()


if __name__ == "__main__":
    cli()
