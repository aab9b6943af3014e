"""The Hydra entrypoint for lm-evaluation-harness tasks, answered by any method of this runner.

    python -m entrgi.evaluate tasks=[gsm8k] method=entrgi model=dream reward=skywork
    python -m entrgi.evaluate -m tasks=[gsm8k,ifeval] method=base,bon,entrgi sweep=gsm8k   # a sweep
    python -m entrgi.report outputs/evaluations/sweeps/gsm8k   # tasks x methods, with lm-eval's stderr

Glue only: the backend is ``entrgi.evaluation.harness.EntrgiLM``; lm-eval builds the requests and
scores the answers. A job directory holds lm-eval's results (``results.json``, ``samples/``), the
answered requests (``requests.jsonl``: a killed job resumes from them), the resolved config and
``summary.json`` (metrics with their standard errors, costs per task), written last.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from entrgi.bookkeeping.baseline import BaselineCache
from entrgi.bookkeeping.settings import baseline_settings
from entrgi.bookkeeping.storage import write_atomic, write_json, write_jsonl
from entrgi.config_store import register
from entrgi.errors import ConfigError
from entrgi.from_config import build_method, in_job_directory, load_models
from entrgi.reporting.harness import lm_eval_metrics
from entrgi.sampling.sampler import SamplerConfig

log = logging.getLogger("entrgi")
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
register()  # for a launcher's workers, which unpickle a job without composing
SUPPORTED_REQUESTS = ("generate_until", "loglikelihood", "multiple_choice")
INSTALL = "pip install 'entrgi[harness]'"


def require_lm_eval():
    """lm-eval's package, or a one-line error naming the extra that installs it."""
    try:
        import lm_eval
    except ImportError as error:
        raise ConfigError(f"lm-eval is not installed ({error}); {INSTALL}") from error
    return lm_eval


def check_evaluation(cfg: DictConfig, tasks: bool = True) -> None:
    """Refuse settings that would fail later, before tasks or models load (``tasks``: check the task list)."""
    require_lm_eval()
    from entrgi.evaluation.harness import HarnessSettings

    if tasks and (not OmegaConf.is_list(cfg.tasks) or not cfg.tasks
                  or not all(isinstance(t, str) and t for t in cfg.tasks)):
        raise ConfigError(f"tasks={cfg.tasks!r}: name lm-eval tasks as a list, e.g. tasks=[gsm8k] "
                          f"(list them with: lm-eval ls tasks)")
    for key in ("seed", "num_samples", "batch_size"):
        value = cfg[key]
        if not isinstance(value, int) or isinstance(value, bool) or (key != "seed" and value < 1):
            raise ConfigError(f"{key}={value!r} must be {'an integer' if key == 'seed' else 'an integer >= 1'}")
    HarnessSettings(**cfg.harness)


def load_tasks(cfg: DictConfig):
    """lm-eval's task manager (with ``task_paths``); refuses unknown tasks and tasks whose requests the
    backend cannot answer. Loads the tasks' documents (lm-eval loads them again, from its cache)."""
    paths = [str(Path(p).expanduser().resolve()) for p in cfg.task_paths]
    for path in paths:
        if not Path(path).is_dir():
            raise ConfigError(f"task_paths: {path} is not a folder; point it at a folder of lm-eval task YAMLs")
    manager = task_manager(tuple(paths))
    for name in cfg.tasks:
        if not manager.match_tasks([name]):
            raise ConfigError(f"unknown lm-eval task {name!r}; list the tasks with: lm-eval ls tasks "
                              f"(your own task YAMLs: task_paths=[folder])")
    try:
        loaded = manager.load(list(cfg.tasks))
    except Exception as error:  # a hub dataset offline, a broken YAML: lm-eval's own message, on one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"lm-eval could not load {list(cfg.tasks)}: {first} (datasets from the Hub need "
                          f"network or a local copy in the datasets cache)") from error
    for name, task in loaded["tasks"].items():
        kind = task.get_config("output_type")
        if kind not in SUPPORTED_REQUESTS:
            raise ConfigError(f"task {name!r} asks for {kind} requests, which entrgi's backend does not answer "
                              f"(it answers {', '.join(SUPPORTED_REQUESTS)}); choose another task")
    return manager


@functools.lru_cache(maxsize=4)
def task_manager(paths: tuple[str, ...]):
    """lm-eval's index of its own tasks and those under ``paths``: built once per process (it reads every
    task YAML lm-eval ships, some seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(paths) or None)


def build_backend(cfg: DictConfig, answers: Path | None = None, salt: str = ""):
    """The lm-eval model a composed config describes: models loaded, method built; ``answers``: where
    answered requests are kept (None: in memory only)."""
    from entrgi.evaluation.harness import EntrgiLM, HarnessSettings

    method = build_method(cfg)
    sampler = SamplerConfig(**cfg.sampler)
    dllm, reward = load_models(cfg)
    dtype = str(next(dllm.model.parameters()).dtype).removeprefix("torch.")
    base = baseline_settings(cfg, dllm.device.type, dtype)

    def cache(extra: dict) -> BaselineCache:
        return BaselineCache(Path(cfg.baseline.cache_dir), {**base, **extra})

    return EntrgiLM(dllm, reward, method, sampler, cfg.num_samples, cfg.seed, cfg.batch_size,
                    HarnessSettings(**cfg.harness), answers, cache, salt)


def compose(overrides: list[str]) -> DictConfig:
    """conf/evaluate.yaml with ``overrides``, composed without a Hydra run."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name="evaluate", overrides=overrides)
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    return cfg


def backend_from_overrides(overrides: list[str]):
    """``model="entrgi"`` in lm-eval's own API: the backend conf/evaluate.yaml with ``overrides`` describes."""
    cfg = compose(overrides)
    check_evaluation(cfg, tasks=False)  # lm-eval names the tasks itself
    return build_backend(cfg)


def register_with_lm_eval() -> None:
    """``model="entrgi"`` in lm-eval's own API once this module is imported, ``model_args`` as Hydra
    overrides of conf/evaluate.yaml (``method=bon,num_samples=8``). Without lm-eval: nothing to register
    (running an evaluation then says how to install it)."""
    try:
        from lm_eval.api.registry import register_model
    except ImportError:
        return
    from entrgi.evaluation.harness import EntrgiLM

    @register_model("entrgi")
    class RegisteredEntrgiLM(EntrgiLM):
        @classmethod
        def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> EntrgiLM:
            return backend_from_overrides([item.strip() for item in arg_string.split(",") if item.strip()])

        @classmethod
        def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> EntrgiLM:
            return backend_from_overrides([f"{key}={value}" for key, value in arg_dict.items()])


def evaluate(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None) -> dict | None:
    """Run one evaluation job into ``out_dir`` (resuming what is already there) and return its summary.

    None: another process is computing this job.
    """
    started = time.time()
    check_evaluation(cfg)
    lm_eval = require_lm_eval()
    manager = load_tasks(cfg)
    out_dir = Path(out_dir)
    return in_job_directory(cfg, out_dir, lambda job_digest: evaluate_claimed(cfg, out_dir, lm_eval, manager,
                                                                              started, overrides, job_digest))


def evaluate_claimed(cfg: DictConfig, out_dir: Path, lm_eval, manager, started: float,
                     overrides: list[str] | None, job_digest: str) -> dict:
    backend = build_backend(cfg, out_dir / "requests.jsonl", job_digest)
    logger = open_wandb(cfg, out_dir, job_digest)
    try:
        results = lm_eval.simple_evaluate(
            model=backend, tasks=list(cfg.tasks), task_manager=manager, limit=cfg.limit, num_fewshot=cfg.num_fewshot,
            log_samples=True, random_seed=cfg.seed, numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed,
            fewshot_random_seed=cfg.seed, confirm_run_unsafe_code=cfg.allow_code_execution)
        summary = write_results(cfg, out_dir, results, backend, job_digest, started, overrides)
        if logger is not None:
            logger.run.summary.update(wandb_metrics(summary))
            logger.run.finish()
            logger.close()
            logger = None
    finally:
        if logger is not None:
            logger.abort()
    write_json(out_dir / "summary.json", summary)  # last: its presence marks the job finished
    return summary


def write_results(cfg: DictConfig, out_dir: Path, results: dict, backend, job_digest: str, started: float,
                  overrides: list[str] | None) -> dict:
    """lm-eval's results and samples into ``out_dir``; returns the job's summary (not written yet)."""
    from lm_eval.utils import handle_non_serializable

    samples = results.pop("samples", {})
    write_atomic(out_dir / "results.json", json.dumps(results, default=handle_non_serializable, indent=2) + "\n")
    for task, rows in samples.items():
        write_jsonl(out_dir / "samples" / f"{task}.jsonl",
                    [json.loads(json.dumps(r, default=handle_non_serializable)) for r in rows])
    return {
        "kind": "lm-eval", "method": cfg.method.name, "tasks": list(cfg.tasks), "seed": cfg.seed,
        "num_samples": cfg.num_samples, "model": cfg.model.name, "reward": cfg.reward.name,
        "metrics": lm_eval_metrics(results.get("results", {})), "costs": backend.costs_by_task(),
        "prepared": backend.prepared, "overrides": list(overrides or []), "lm_eval_version": lm_eval_version(),
        "settings_digest": job_digest, "started_at": started, "finished_at": time.time(),
        "job_wall_clock_seconds": time.time() - started,
    }


def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def open_wandb(cfg: DictConfig, out_dir: Path, job_digest: str):
    if cfg.logger.type == "none":
        return None
    if cfg.logger.type != "wandb":
        raise ConfigError(f"unknown logger.type={cfg.logger.type!r}; use wandb or none")
    from entrgi.bookkeeping.logging_wandb import WandbLogger

    logger = WandbLogger(cfg, out_dir, job_digest, job_type="evaluate", tags=[cfg.method.name, *cfg.tasks])
    cfg.logger.mode = logger.mode  # record what ran: offline when online had no credentials or no server
    write_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    return logger


def wandb_metrics(summary: dict) -> dict[str, float]:
    from entrgi.bookkeeping.logging_wandb import numeric_leaves

    return numeric_leaves({"lm_eval": summary["metrics"], "costs": summary["costs"]})


def print_results(summary: dict, out_dir: Path) -> None:
    for task, metrics in summary["metrics"].items():
        for metric, stat in metrics.items():
            stderr = "" if stat["stderr"] is None else f" ± {stat['stderr']:.4f}"
            print(f"{task} {metric}: {stat['value']:.4f}{stderr}")
    print(f"results in {out_dir}")


@hydra.main(config_path=CONF_DIR, config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN and cfg.logger.get("group", "") is None:
        cfg.logger.group = Path(hydra_cfg.sweep.dir).name
    try:
        summary = evaluate(cfg, out_dir, list(hydra_cfg.overrides.task))
    except ConfigError as error:
        sys.exit(f"entrgi: error: {error}")
    except KeyboardInterrupt:
        sys.exit(f"entrgi: interrupted; answered requests are saved in {out_dir}: run the same command to resume")
    if summary is not None:
        print_results(summary, out_dir)
    return summary


register_with_lm_eval()

if __name__ == "__main__":
    main()
