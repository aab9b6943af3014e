"""Weights & Biases logging for one job: progress, per-step curves, a per-prompt table, the summary.

The run id is a digest of the job's settings and its W&B group, so a re-launched job continues
its run (``resume="allow"``) instead of starting a twin. History rows carry explicit steps
(prompts done, then past them the denoising steps), and W&B drops rows whose step is not new, so
a job resumed part-way does not log a row twice.
"""

from __future__ import annotations

import logging
import math
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

import wandb
from omegaconf import DictConfig, OmegaConf

from entrgi.bookkeeping.settings import digest

log = logging.getLogger("entrgi")


def has_credentials() -> bool:
    """Whether an online run could authenticate: an API key in the environment or from `wandb login`."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def flatten(tree: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as ``a/b/c`` keys."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def step_curves(records: list[dict]) -> dict[int, dict[str, float]]:
    """Per denoising step: the mean over prompts of each traced quantity (guided reward, entropy weight,
    a particle method's or a diagnostic's statistics)."""
    sums: dict[int, dict[str, list[float]]] = {}
    for record in records:
        trace = record.get("trace", {})
        for name in [n for n in trace if n not in ("step", "committed")]:
            for step, value in zip(trace.get("step", []), trace.get(name, [])):
                if value is not None and not math.isnan(value):
                    sums.setdefault(step, {}).setdefault(name, []).append(value)
    return {step: {name: sum(v) / len(v) for name, v in names.items()} for step, names in sorted(sums.items())}


TABLE_COLUMNS = ["id", "prompt", "response", "top1_reward", "mean_reward", "baseline_response",
                 "baseline_top1_reward", "outcome_guide", "judge_top1", "judge_baseline_top1", "outcome_judge"]


def table_row(record: dict) -> list:
    base, judge, outcome = record.get("baseline", {}), record.get("judge", {}), record.get("outcome", {})
    return [record["id"], record["prompt"], record["responses"][record["best_index"]], record["top1_reward"],
            record["mean_reward"], base.get("response"), base.get("top1_reward"), outcome.get("guide"),
            judge.get("top1"), judge.get("baseline_top1"), outcome.get("judge")]


class WandbLogger:
    def __init__(self, cfg: DictConfig, out_dir: Path, job_digest: str):
        settings = cfg.logger
        mode = settings.mode
        if mode not in ("online", "offline", "disabled"):
            from entrgi.errors import ConfigError

            raise ConfigError(f"logger.mode={mode!r}; use online, offline or disabled")
        if mode == "online" and not has_credentials():
            log.warning("W&B: no credentials (WANDB_API_KEY or `wandb login`); logging offline into %s "
                        "(upload later with `wandb sync`)", out_dir)
            mode = "offline"
        self.run_id = digest([job_digest, settings.group])[:24]
        tags = [cfg.method.name, cfg.benchmark.name, f"seed={cfg.seed}", f"model={cfg.model.name}",
                f"reward={cfg.reward.name}", *settings.tags]
        options = dict(project=settings.project, entity=settings.entity, group=settings.group, name=out_dir.name,
                       id=self.run_id, resume="allow", dir=str(out_dir), job_type=cfg.method.name,
                       tags=[t[:64] for t in tags], config=OmegaConf.to_container(cfg, resolve=True),
                       settings=wandb.Settings(quiet=True))
        try:
            self.run = wandb.init(mode=mode, **options)
        except Exception as error:  # an unreachable server must not lose the job's results
            if mode != "online":
                raise
            log.warning("W&B online init failed (%s); logging offline instead", str(error).splitlines()[0])
            self.run = wandb.init(mode="offline", **options)
        self.run.define_metric("progress/prompts_done")
        self.run.define_metric("progress/*", step_metric="progress/prompts_done")
        self.run.define_metric("denoising/step")
        self.run.define_metric("denoising/*", step_metric="denoising/step")

    def progress(self, records: list[dict], total: int) -> None:
        n = len(records)
        self.run.log({"progress/prompts_done": n, "progress/fraction_done": n / total,
                      "progress/top1_reward": sum(r["top1_reward"] for r in records) / n,
                      "progress/mean_reward": sum(r["mean_reward"] for r in records) / n}, step=n)

    def finish(self, summary: dict, records: list[dict]) -> None:
        first = summary["num_prompts"] + 1  # history steps after the progress rows
        curves = step_curves(records)
        for offset, (step, values) in enumerate(curves.items()):
            self.run.log({"denoising/step": step, **{f"denoising/{k}": v for k, v in values.items()}},
                         step=first + offset)
        table = wandb.Table(columns=TABLE_COLUMNS, data=[table_row(r) for r in records])
        self.run.log({"prompts": table}, step=first + len(curves))
        keys = ("top1_reward", "mean_reward", "win_rate", "cost", "cost_total", "num_prompts")
        metrics = {k: summary[k] for k in keys if k in summary}
        if "top1_reward" in summary["baseline"]:
            metrics["baseline"] = {"top1_reward": summary["baseline"]["top1_reward"]}
        self.run.summary.update(flatten(metrics))
        if "win_rate" in summary and "judge" in summary["win_rate"]:
            self.run.summary["win_rate/judge/name"] = summary["win_rate"]["judge"]["judge"]
        self.run.finish()

    def abort(self) -> None:
        self.run.finish(exit_code=1)
