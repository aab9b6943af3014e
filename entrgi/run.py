"""The Hydra entrypoint for test-time adaptation: compose the config, build the job, sample, write results.

    python -m entrgi.run                                  # EntRGi on the embedded offline default
    python -m entrgi.run method=aps schedule=power        # any group choice, any override
    python -m entrgi.run -m method=bon,aps,entrgi seed=1,2  # a sweep

Glue only: methods live in ``entrgi.methods``, the sampler in ``entrgi.sampling``, the comparison
with best-of-K and the summary in ``entrgi.evaluation.comparison``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from entrgi.bookkeeping.baseline import BaselineCache
from entrgi.bookkeeping.progress import progress_bars
from entrgi.bookkeeping.records import PromptResult, environment
from entrgi.bookkeeping.settings import baseline_settings
from entrgi.bookkeeping.storage import ResultsLog, write_atomic, write_json, write_jsonl
from entrgi.config_store import register
from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import truncate_prompts
from entrgi.evaluation.comparison import compare_with_baseline, print_summary, summarize
from entrgi.evaluation.flop_model import summary_flops
from entrgi.evaluation.judges import make_judge
from entrgi.evaluation.metrics import peak_memory_bytes
from entrgi.from_config import (build_method, check_job, in_job_directory, load_models, load_prompts,
                                open_logger, set_threads, shard_of)
from entrgi.methods.base import Method, SamplingSetup
from entrgi.methods.unguided import best_of_k
from entrgi.sampling.sampler import SamplerConfig
from entrgi.validation import preflight, validate

log = logging.getLogger("entrgi")
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
register()  # for a launcher's workers, which unpickle a job without composing
MOVED_KEYS = {"guidance.": "method."}  # old override prefix -> new: the guided methods' own settings


def run(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None) -> dict | None:
    """Run one job into ``out_dir`` (resuming what is already there) and return its summary.

    A job that already finished with the same settings returns its stored summary at once;
    ``out_dir`` holding another job's settings is an error. ``overrides``, the command line's choices,
    are recorded in the summary: what was run. None: another process is computing this job.
    """
    started = time.time()
    validate(cfg, "run")
    check_job(cfg)
    set_threads(cfg.get("threads", "auto"))
    sampler = SamplerConfig(**cfg.sampler)
    method = build_method(cfg)
    out_dir = Path(out_dir)
    return in_job_directory(cfg, out_dir, lambda job_digest: run_claimed(cfg, out_dir, method, sampler, started,
                                                                         overrides, job_digest))


def run_claimed(cfg: DictConfig, out_dir: Path, method: Method, sampler: SamplerConfig, started: float,
                overrides: list[str] | None, job_digest: str) -> dict:
    """``run`` in a directory this process holds (:func:`entrgi.from_config.in_job_directory`)."""
    prompts = load_prompts(cfg)
    dllm, reward = load_models(cfg)
    prompts = truncate_prompts(prompts, dllm.tokenizer, cfg.benchmark.max_prompt_tokens, cfg.benchmark.truncation)
    log.info("dLLM %s on %s; reward %s", cfg.model.name, dllm.device, cfg.reward.name)
    setup = SamplingSetup.for_prompts(dllm, reward, prompts, sampler, cfg.num_samples, cfg.seed)
    extra = {"environment": environment(), **method.prepare(setup, prompts),
             # how the sampler stepped (docs/block-diffusion.md): the modes change the samples
             "sampling_mode": {"attention": dllm.attention.kind, "block_size": dllm.attention.block_size,
                               "block_length": sampler.block_length, "cache": sampler.cache,
                               "threshold": sampler.threshold}}
    prompts = shard_of(prompts, cfg.shard.index, cfg.shard.count)
    dtype = str(next(dllm.model.parameters()).dtype).removeprefix("torch.")
    cache = BaselineCache(Path(cfg.baseline.cache_dir),
                          baseline_settings(cfg, dllm.device.type, dtype, getattr(reward, "identity", None)))
    bon = best_of_k()
    extra["baseline"] = {"method": bon.name, "digest": cache.digest, "cache": str(cache.dir.resolve()),
                         "settings": cache.settings}
    extra["baseline"]["prompts_sampled_here"] = 0  # the rest were read from the cache
    if method.shares_baseline_samples:
        extra["baseline"]["shared_samples"] = True  # this job's samples are the cache's
    extra.update(answer=method.answer_description, answer_is_top1=method.answers_with_top1)

    def baseline_records() -> list[PromptResult]:
        def batch_done(size: int) -> None:
            extra["baseline"]["prompts_sampled_here"] += size
            prompts_done(size)

        with progress_bars("bon (shared baseline)", len(prompts)) as (prompts_done, setup.on_step):
            rows = cache.records(prompts, lambda batch: [r.to_json() for r in bon.sample(setup, batch)],
                                 cfg.batch_size, on_batch=batch_done, batch_key=setup.batch_key())
        return [PromptResult.from_json(r) for r in rows]

    logger = open_logger(cfg, out_dir, job_digest)
    if logger is not None:  # record what ran: offline when online had no credentials or no server
        cfg.logger.mode = logger.mode
        write_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    try:
        records = baseline_records() if method.shares_baseline_samples else sample_all(
            cfg, method, setup, prompts, out_dir, logger)
        if method.compares_with_baseline:
            baseline = records if method.shares_baseline_samples else baseline_records()
            judge = make_judge(cfg.eval_reward, device=cfg.device, dtype=cfg.dtype)
            compare_with_baseline(records, baseline, prompts, judge, [method.answer_index(r) for r in records])
        rows = [r.to_json() for r in records]
        write_jsonl(out_dir / "results.jsonl", rows)
        # job: from the start of this process's work on it, loading included; sampling: only sampling,
        # and for shared baseline samples the time it took whoever computed them
        extra["cost_total"] = {"job_wall_clock_seconds": time.time() - started,
                               "peak_memory_bytes": peak_memory_bytes(dllm.device)}
        extra.update(settings_digest=job_digest, started_at=started, finished_at=time.time())
        summary = summarize(records, cfg.seed, method=cfg.method.name, benchmark=cfg.benchmark.name,
                            overrides=list(overrides or []), num_samples=cfg.num_samples,
                            shard={"index": cfg.shard.index, "count": cfg.shard.count}, **extra)
        summary["flops"] = summary_flops(summary, setup)
        if logger is not None:
            logger.finish(summary, records)
            logger = None
    finally:
        if logger is not None:
            logger.abort()
    write_json(out_dir / "summary.json", summary)  # last: its presence marks the job finished
    return summary


def sample_all(cfg, method: Method, setup: SamplingSetup, prompts, out_dir: Path, logger) -> list[PromptResult]:
    """Sample every prompt not in ``out_dir/results.jsonl`` yet, appending records batch by batch."""
    results = ResultsLog(out_dir / "results.jsonl")
    wanted = {p.id for p in prompts}
    done = len(wanted & results.done())
    if done:
        log.info("resuming: %d of %d prompts already done", done, len(prompts))
    with progress_bars(cfg.method.name, len(prompts), done) as (batch_done, setup.on_step):
        def after_batch(size: int) -> None:
            batch_done(size)
            if logger is not None:
                logger.progress([PromptResult.from_json(r) for r in results.records if r["id"] in wanted],
                                len(prompts))

        rows = results.fill(prompts, lambda batch: [r.to_json() for r in method.sample(setup, batch)],
                            cfg.batch_size, after_batch, setup.batch_key())
    return [PromptResult.from_json(r) for r in rows]


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN and cfg.logger.get("group", "") is None:
        cfg.logger.group = Path(hydra_cfg.sweep.dir).name  # the runs of one sweep sit together in W&B
    try:
        summary = run(cfg, out_dir, list(hydra_cfg.overrides.task))
    except ConfigError as error:
        sys.exit(f"entrgi: error: {error}")
    except KeyboardInterrupt:
        sys.exit(f"entrgi: interrupted; finished batches are saved in {out_dir}: run the same command "
                 f"(in a sweep, the same sweep) to resume")
    if summary is not None:  # None: another process holds the job
        print_summary(summary, out_dir)
    return summary


def check_moved_keys(argv: list[str]) -> None:
    """Overrides of keys that moved fail with the new key, not with Hydra's multi-line struct error."""
    for arg in argv:
        for old, new in MOVED_KEYS.items():
            if arg.lstrip("+~").startswith(old):
                key = arg.lstrip("+~").split("=")[0]
                sys.exit(f"entrgi: error: {key} moved to {new}{key[len(old):]} (the guided methods' own settings); "
                         f"write {new}{arg.lstrip('+~')[len(old):]}")


def cli(argv: list[str] | None = None) -> None:
    """``python -m entrgi.run``: the command line checked before Hydra makes a directory (moved keys, unknown
    names, the table, the files it reads: :mod:`entrgi.validation`), then run."""
    argv = sys.argv[1:] if argv is None else list(argv)
    check_moved_keys(argv)
    preflight(argv, "config", "run", CONF_DIR)
    sys.argv = [sys.argv[0], *argv]
    main()


if __name__ == "__main__":
    cli()
