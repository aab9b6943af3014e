"""The Hydra entrypoint: compose the config, load the stack, sample every prompt, write results.

    python -m entrgi.run                                  # EntRGi on the embedded offline default
    python -m entrgi.run method=aps schedule=power        # any group choice, any override
    python -m entrgi.run -m method=bon,aps,entrgi seed=1,2  # a sweep

Everything here is glue; the algorithm lives in ``sampler``, ``guidance`` and ``schedules``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

import entrgi
from entrgi.bookkeeping.baseline import BaselineCache
from entrgi.bookkeeping.settings import (
    baseline_settings,
    claim_directory,
    finished_summary,
    job_settings,
    register_resolvers,
)
from entrgi.bookkeeping.storage import ResultsLog, write_atomic, write_json
from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt, load_benchmark
from entrgi.evaluation.judges import Judge, make_judge
from entrgi.evaluation.metrics import mean_stderr, outcomes, peak_memory_bytes, win_rate
from entrgi.models.diffusion import DiffusionLM, load_diffusion_lm
from entrgi.models.reward import RewardModel
from entrgi.sampling.guidance import RewardGuidance, guided_steps
from entrgi.sampling.rng import row_key
from entrgi.sampling.sampler import SamplerConfig, generate
from entrgi.sampling.schedules import make_schedule

log = logging.getLogger("entrgi")
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
register_resolvers()


def load_models(cfg: DictConfig) -> tuple[DiffusionLM, RewardModel]:
    dllm = load_diffusion_lm(
        cfg.model.path, loader=cfg.model.loader, shift_logits=cfg.model.shift_logits, mask_token=cfg.model.mask_token,
        eos_tokens=list(cfg.model.eos_tokens) if cfg.model.eos_tokens else None, device=cfg.device,
        dtype=cfg.dtype, trust_remote_code=cfg.model.trust_remote_code, max_length=cfg.model.max_length,
        chat_template=cfg.model.chat_template, adapter=cfg.model.get("adapter"))
    reward = RewardModel.load(cfg.reward.path, device=cfg.device, dtype=cfg.dtype,
                              trust_remote_code=cfg.reward.trust_remote_code, chat_template=cfg.reward.chat_template)
    return dllm, reward


def load_prompts(cfg: DictConfig) -> list[Prompt]:
    b = cfg.benchmark
    return load_benchmark(b.name, b.source, b.path, field=b.field, split=b.split, subset=b.subset,
                          id_field=b.id_field, reference_field=b.reference_field, num_prompts=b.num_prompts,
                          seed=cfg.seed, distribution=b.get("distribution"))


def environment() -> dict:
    import transformers

    device = "cpu"
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    return {"entrgi": entrgi.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "host": platform.node(), "device": device,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def sample_batch(cfg: DictConfig, dllm: DiffusionLM, reward: RewardModel, batch: list[Prompt], guide_factory,
                 prompt_width: int | None = None):
    """Sample, score and summarize one batch of prompts; returns one record per prompt."""
    K = cfg.num_samples
    texts = [p.text for p in batch for _ in range(K)]
    prompt_ids = [ids for ids in dllm.encode_prompts([p.text for p in batch]) for _ in range(K)]
    keys = [row_key(cfg.seed, p.id, k) for p in batch for k in range(K)]
    evaluations = dict(reward.evaluations)
    start = time.perf_counter()
    guide = guide_factory(texts) if guide_factory else None
    window = cfg.guidance.get("window")
    steps = guided_steps(cfg.sampler.steps, cfg.guidance.get("every", 1), tuple(window) if window else None)
    out = generate(dllm, prompt_ids, keys, SamplerConfig(**cfg.sampler), guide, steps, prompt_width=prompt_width)
    responses = dllm.decode(out.tokens)
    scores = reward.score_texts(texts, responses)
    seconds = time.perf_counter() - start
    B = len(batch)
    per_prompt = {name: (reward.evaluations[name] - evaluations[name]) / B for name in evaluations}

    records = []
    for i, prompt in enumerate(batch):
        rows = slice(i * K, (i + 1) * K)
        rewards = scores[rows]
        best = max(range(K), key=lambda k: rewards[k])
        trace = {"step": [t["step"] for t in out.trace], "committed": [t["committed"] for t in out.trace]}
        for name in ("entropy_weight", "guided_reward"):
            if any(name in t for t in out.trace):  # None at steps left unguided
                trace[name] = [round(t[name][rows].mean().item(), 5) if name in t else None for t in out.trace]
        records.append({
            "id": prompt.id, "prompt": prompt.text, "reference": prompt.reference,
            "responses": responses[rows], "rewards": rewards, "best_index": best,
            "top1_reward": rewards[best], "mean_reward": sum(rewards) / K, "trace": trace,
            "cost": {"seconds": seconds / B, "dllm_forwards": out.dllm_forwards / B,
                     "reward_forwards": per_prompt["forward"], "reward_backwards": per_prompt["backward"]},
        })
    return records


def shard_of(prompts: list[Prompt], index: int, count: int) -> list[Prompt]:
    """Every ``count``-th prompt from ``index``: the shards of a setting partition its prompts."""
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard.index={index} shard.count={count}: need 0 <= shard.index < shard.count")
    return prompts[index::count]


def compare(records: list[dict], baseline: list[dict], prompts: list[Prompt], judge: Judge | None,
            answer_index: int | None = None) -> list[dict]:
    """Pair each prompt's answer with best-of-K's top-1: rewards, judge scores, outcomes (1 / 0.5 / 0).

    The answer is the top-1 response, or sample ``answer_index`` (``base``: one unselected sample).
    """
    answers = [r["best_index"] if answer_index is None else answer_index for r in records]
    for record, base, answer in zip(records, baseline, answers):
        assert record["id"] == base["id"]
        record["baseline"] = {"method": "bon", "response": base["responses"][base["best_index"]],
                              "top1_reward": base["top1_reward"]}
        record["outcome"] = {"guide": outcomes([record["rewards"][answer]], [base["top1_reward"]])[0]}
    if judge is not None:
        texts = [r["responses"][a] for r, a in zip(records, answers)] + [r["baseline"]["response"] for r in records]
        scores = judge.score(prompts + prompts, texts)
        n = len(records)
        for record, mine, theirs in zip(records, scores[:n], scores[n:]):
            record["judge"] = {"name": judge.name, "top1": mine, "baseline_top1": theirs}
            record["outcome"]["judge"] = outcomes([mine], [theirs])[0]
    return records


def summarize(cfg: DictConfig, records: list[dict], extra: dict) -> dict:
    cost = {name: sum(r["cost"][name] for r in records) for name in records[0]["cost"]} if records else {}
    summary = {
        "method": cfg.method.name, "benchmark": cfg.benchmark.name, "seed": cfg.seed,
        "num_prompts": len(records), "num_samples": cfg.num_samples,
        "shard": {"index": cfg.shard.index, "count": cfg.shard.count},
        "top1_reward": mean_stderr([r["top1_reward"] for r in records]),
        "mean_reward": mean_stderr([r["mean_reward"] for r in records]),
        "prompt_ids": [r["id"] for r in records],
        "cost": cost, **extra,
    }
    if records and "outcome" in records[0]:
        summary["baseline"]["top1_reward"] = mean_stderr([r["baseline"]["top1_reward"] for r in records])
        summary["win_rate"] = {kind: win_rate([r["outcome"][kind] for r in records], seed=cfg.seed)
                               for kind in records[0]["outcome"]}
        if "judge" in records[0]:
            summary["win_rate"]["judge"]["judge"] = records[0]["judge"]["name"]
    return summary


def open_logger(cfg: DictConfig, out_dir: Path, job_digest: str):
    """The experiment logger ``cfg.logger`` names, or None; W&B is imported only when asked for."""
    kind = cfg.logger.type
    if kind == "none":
        return None
    if kind == "wandb":
        from entrgi.bookkeeping.logging_wandb import WandbLogger

        return WandbLogger(cfg, out_dir, job_digest)
    raise ConfigError(f"unknown logger.type={kind!r}; use wandb or none")


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Run one job into ``out_dir`` (resuming what is already there) and return its summary.

    A job that already finished with the same settings returns its stored summary at once;
    ``out_dir`` holding another job's settings is an error.
    """
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    job_digest = claim_directory(out_dir, job_settings(cfg))
    finished = finished_summary(out_dir, job_digest)
    if finished is not None:
        log.info("%s already finished with these settings; nothing to do", out_dir)
        return finished
    write_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    torch.manual_seed(cfg.seed)
    prompts = load_prompts(cfg)
    dllm, reward = load_models(cfg)
    log.info("dLLM %s on %s; reward %s", cfg.model.name, dllm.device, cfg.reward.name)

    guide_factory = None
    extra = {"environment": environment()}
    if cfg.method.guided:
        bridge = reward.bridge(dllm.tokenizer, dllm.vocab_size, cfg.reward.unmatched, ignore=(dllm.mask_id,))
        extra["vocab_coverage"] = bridge.summary()
        log.info("vocabulary coverage: %.3f%% matched, %.3f%% represented (reward.unmatched=%s); unmatched e.g. %s",
                 100 * bridge.coverage, 100 * bridge.represented, cfg.reward.unmatched, bridge.unmatched_tokens[:5])
        if bridge.coverage < cfg.reward.min_coverage:
            compatible = cfg.reward.get("compatible_model")
            pair = f"model={compatible} (same tokenizer)" if compatible else "a dLLM with the same tokenizer"
            raise ConfigError(
                f"only {bridge.coverage:.1%} of {cfg.model.name}'s tokens are {cfg.reward.name} tokens "
                f"(reward.min_coverage={cfg.reward.min_coverage}); use {pair}, or lower reward.min_coverage "
                f"to bridge the vocabularies (reward.unmatched=retokenize)")
        schedule = make_schedule(**OmegaConf.to_container(cfg.schedule))
        sampler_cfg = SamplerConfig(**cfg.sampler)
        eos = torch.tensor(dllm.eos_ids, device=dllm.device)
        context_widths = reward.context_widths([p.text for p in prompts])

        def guide_factory(texts):
            return RewardGuidance(reward, bridge.table, reward.context(texts, context_widths), schedule, sampler_cfg,
                                  eos, cfg.guidance.inner_steps, cfg.guidance.lr)

    # one padding width for the whole setting, taken before sharding: a prompt's numbers depend
    # neither on its batch nor on its shard
    prompt_width = max(len(ids) for ids in dllm.encode_prompts([p.text for p in prompts]))
    prompts = shard_of(prompts, cfg.shard.index, cfg.shard.count)
    dtype = str(next(dllm.model.parameters()).dtype).removeprefix("torch.")
    cache = BaselineCache(Path(cfg.baseline.cache_dir), baseline_settings(cfg, dllm.device.type, dtype))
    extra["baseline"] = {"method": "bon", "digest": cache.digest, "cache": str(cache.dir.resolve()),
                         "settings": cache.settings}

    def unguided(batch):
        return sample_batch(cfg, dllm, reward, batch, None, prompt_width)

    logger = open_logger(cfg, out_dir, job_digest)
    try:
        if cfg.method.guided:
            records = sample_all(cfg, dllm, reward, prompts, guide_factory, prompt_width, out_dir, logger)
        else:  # base and bon: the shared unguided samples
            records = cache.records(prompts, unguided, cfg.batch_size)
        if cfg.method.name != "bon":
            baseline = records if not cfg.method.guided else cache.records(prompts, unguided, cfg.batch_size)
            judge = make_judge(cfg.eval_reward, device=cfg.device, dtype=cfg.dtype)
            records = compare(records, baseline, prompts, judge, 0 if cfg.method.name == "base" else None)
        write_atomic(out_dir / "results.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        extra["cost_total"] = {"wall_clock_seconds": time.time() - started,
                               "peak_memory_bytes": peak_memory_bytes(dllm.device)}
        extra.update(settings_digest=job_digest, started_at=started, finished_at=time.time())
        summary = summarize(cfg, records, extra)
        if logger is not None:
            logger.finish(summary, records)
            logger = None
    finally:
        if logger is not None:
            logger.abort()
    write_json(out_dir / "summary.json", summary)  # last: its presence marks the job finished
    return summary


def sample_all(cfg, dllm, reward, prompts, guide_factory, prompt_width, out_dir, logger) -> list[dict]:
    """Sample every prompt not in ``out_dir/results.jsonl`` yet, appending records batch by batch."""
    from tqdm import tqdm

    results = ResultsLog(out_dir / "results.jsonl")
    wanted = {p.id for p in prompts}
    done = len(wanted & results.done())
    if done:
        log.info("resuming: %d of %d prompts already done", done, len(prompts))
    with tqdm(total=len(prompts), initial=done, desc=cfg.method.name, unit="prompt") as bar:
        def after_batch(size: int) -> None:
            bar.update(size)
            if logger is not None:
                logger.progress([r for r in results.records if r["id"] in wanted], len(prompts))

        return results.fill(prompts, lambda batch: sample_batch(cfg, dllm, reward, batch, guide_factory, prompt_width),
                            cfg.batch_size, after_batch)


def print_summary(summary: dict, out_dir: Path) -> None:
    top1, mean = summary["top1_reward"], summary["mean_reward"]
    print(f"\n{summary['method']} on {summary['benchmark']} ({summary['num_prompts']} prompts x "
          f"{summary['num_samples']} samples, seed {summary['seed']})")
    print(f"  top-1 reward  {top1['mean']:+.4f} +- {top1['stderr']:.4f}")
    print(f"  mean@K reward {mean['mean']:+.4f} +- {mean['stderr']:.4f}")
    if "win_rate" in summary:
        base = summary["baseline"]["top1_reward"]
        print(f"  bon top-1     {base['mean']:+.4f} +- {base['stderr']:.4f}  (the baseline, same prompts)")
        for kind, rate in summary["win_rate"].items():
            judge = f" ({rate['judge']})" if "judge" in rate else ""
            print(f"  win-rate vs bon, {kind}{judge}: {rate['rate']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}]")
    cost = summary["cost_total"]
    print(f"  wall-clock    {cost['wall_clock_seconds']:.1f} s, peak memory {cost['peak_memory_bytes'] / 2**20:.0f} MiB")
    print(f"  results in    {out_dir}")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN and cfg.logger.get("group", "") is None:
        cfg.logger.group = Path(hydra_cfg.sweep.dir).name  # the runs of one sweep sit together in W&B
    try:
        summary = run(cfg, out_dir)
    except ConfigError as error:
        sys.exit(f"entrgi: error: {error}")
    print_summary(summary, out_dir)
    return summary


if __name__ == "__main__":
    main()
