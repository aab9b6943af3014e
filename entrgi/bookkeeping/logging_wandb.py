"""Weights & Biases logging for one job: progress, per-step curves, a per-prompt table, the summary.

The run logs offline unless the user asks for online (``logger.mode=online`` or
``WANDB_MODE=online``): prompts and responses leave the machine only when asked to. Every file W&B
writes (the run, its cache and logs, staging copies of tables and artifacts) stays in the job's
``wandb/`` directory, not under the user's home, unless the user points W&B elsewhere.

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

from entrgi.bookkeeping.records import PromptResult, flatten
from entrgi.bookkeeping.settings import digest

log = logging.getLogger("entrgi")
MODES = ("online", "offline", "disabled")
# where wandb 0.31 puts files outside the run directory when these are unset (all under the home):
# the cache and wandb-core's logs (~/.cache/wandb), staging copies of logged tables and artifacts
# (~/.local/share/wandb), downloaded artifacts (./artifacts); wandb-core reads them when it starts
JOB_DIRS = {"WANDB_CACHE_DIR": "cache", "WANDB_DATA_DIR": "data", "WANDB_ARTIFACT_DIR": "artifacts"}


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


def mode_to_use(requested: str) -> str:
    """The mode a run asked for ``requested`` logs in: online only with credentials, else offline."""
    if requested not in MODES:
        from entrgi.errors import ConfigError

        raise ConfigError(f"logger.mode={requested!r}; use {', '.join(MODES)} (offline unless set)")
    if requested == "online" and not has_credentials():
        log.warning("W&B: no credentials (WANDB_API_KEY or `wandb login`); logging offline instead "
                    "(upload later with `wandb sync`)")
        return "offline"
    return requested


def numeric_leaves(tree: dict) -> dict[str, float]:
    """Numeric leaves of a nested dict as ``a/b/c`` keys (W&B's summary)."""
    return {k: v for k, v in flatten(tree, "/").items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def step_curves(records: list[PromptResult]) -> dict[int, dict[str, float]]:
    """Per denoising step: the mean over prompts of each traced quantity (guided reward, entropy weight, ...)."""
    sums: dict[int, dict[str, list[float]]] = {}
    for record in records:
        trace = record.trace
        for name in [k for k in trace if k not in ("step", "committed")]:
            for step, value in zip(trace["step"], trace[name]):
                if value is not None and not math.isnan(value):
                    sums.setdefault(step, {}).setdefault(name, []).append(value)
    return {step: {name: sum(v) / len(v) for name, v in names.items()} for step, names in sorted(sums.items())}


TABLE_COLUMNS = ["id", "prompt", "answer", "answer_reward", "top1_reward", "mean_reward", "baseline_response",
                 "baseline_top1_reward", "outcome_guide", "judge_answer", "judge_baseline_top1", "outcome_judge"]


def table_row(record: PromptResult) -> list:
    """One prompt's row: the answer the method gave (its top-1 unless it chose another), best-of-K's beside it."""
    base, judge, outcome = record.baseline or {}, record.judge or {}, record.outcome or {}
    answer = record.best_index if record.answer_index is None else record.answer_index
    return [record.id, record.prompt, record.responses[answer], record.rewards[answer], record.top1_reward,
            record.mean_reward, base.get("response"), base.get("top1_reward"), outcome.get("guide"),
            judge.get("top1"), judge.get("baseline_top1"), outcome.get("judge")]


class WandbLogger:
    """One job's W&B run. ``mode`` is the mode it logs in (online, offline or disabled): what the
    job's config should record, whatever ``logger.mode`` asked for."""

    def __init__(self, cfg: DictConfig, out_dir: Path, job_digest: str, job_type: str | None = None,
                 tags: list[str] | None = None):
        settings = cfg.logger
        self.mode = mode_to_use(settings.mode)
        self.run_id = digest([job_digest, settings.group])[:24]
        job_type = job_type or cfg.method.name
        tags = [*(tags or [cfg.method.name, cfg.benchmark.name]), f"seed={cfg.seed}", f"model={cfg.model.name}",
                f"reward={cfg.reward.name}", *settings.tags]
        options = dict(project=settings.project, entity=settings.entity, group=settings.group, name=out_dir.name,
                       id=self.run_id, resume="allow", dir=str(out_dir), job_type=job_type,
                       tags=[t[:64] for t in tags], config=OmegaConf.to_container(cfg, resolve=True),
                       settings=wandb.Settings(silent=True))  # its banner: one line of ours below
        self.directories_set = keep_files_in(Path(out_dir) / "wandb")
        try:
            self.run = self.start(options)
        except BaseException:
            self.close()
            raise
        if self.mode == "offline":
            folder = Path(self.run.dir).parent  # run.dir is its files/ folder
            log.info("W&B: logging offline to %s (upload later: wandb sync %s)", folder, folder)
        elif self.mode == "online":
            log.info("W&B: logging to %s", self.run.url)
        self.run.define_metric("progress/prompts_done")
        self.run.define_metric("progress/*", step_metric="progress/prompts_done")
        self.run.define_metric("denoising/step")
        self.run.define_metric("denoising/*", step_metric="denoising/step")

    def start(self, options: dict):
        """``wandb.init`` in ``self.mode``; online falls back to offline if the server cannot be reached."""
        options["config"]["logger"]["mode"] = self.mode  # the W&B run records the mode it ran in
        try:
            return wandb.init(mode=self.mode, **options)
        except Exception as error:  # an unreachable server must not lose the job's results
            if self.mode != "online":
                raise
            log.warning("W&B online init failed (%s); logging offline instead", str(error).splitlines()[0])
            self.mode = options["config"]["logger"]["mode"] = "offline"
            return wandb.init(mode="offline", **options)

    def progress(self, records: list[PromptResult], total: int) -> None:
        n = len(records)
        self.run.log({"progress/prompts_done": n, "progress/fraction_done": n / total,
                      "progress/top1_reward": sum(r.top1_reward for r in records) / n,
                      "progress/mean_reward": sum(r.mean_reward for r in records) / n}, step=n)

    def finish(self, summary: dict, records: list[PromptResult]) -> None:
        first = summary["num_prompts"] + 1  # history steps after the progress rows
        curves = step_curves(records)
        for offset, (step, values) in enumerate(curves.items()):
            self.run.log({"denoising/step": step, **{f"denoising/{k}": v for k, v in values.items()}},
                         step=first + offset)
        table = wandb.Table(columns=TABLE_COLUMNS, data=[table_row(r) for r in records])
        self.run.log({"prompts": table}, step=first + len(curves))
        keys = ("answer_reward", "top1_reward", "mean_reward", "win_rate", "cost_per_prompt", "cost_total",
                "num_prompts")
        metrics = {k: summary[k] for k in keys if k in summary}
        if "top1_reward" in summary["baseline"]:
            metrics["baseline"] = {"top1_reward": summary["baseline"]["top1_reward"]}
        self.run.summary.update(numeric_leaves(metrics))
        if "win_rate" in summary and "judge" in summary["win_rate"]:
            self.run.summary["win_rate/judge/name"] = summary["win_rate"]["judge"]["judge"]
        self.run.finish()
        self.close()

    def abort(self) -> None:
        self.run.finish(exit_code=1)
        self.close()

    def close(self) -> None:
        """End wandb-core (it read the job's directories when it started) and unset those directories."""
        wandb.teardown()
        for key in self.directories_set:
            os.environ.pop(key, None)


def keep_files_in(wandb_dir: Path) -> list[str]:
    """Point W&B's cache, staging and artifact directories into ``wandb_dir`` where the user has not
    chosen them; returns the variables it set."""
    unset = [key for key in JOB_DIRS if key not in os.environ]
    for key in unset:
        os.environ[key] = str((wandb_dir / JOB_DIRS[key]).resolve())
    return unset


def init_run(cfg: DictConfig, out_dir: Path, job_digest: str, job_type: str, tags: list[str]):
    """The W&B run of a job other than a test-time run (``entrgi.train``), with the same mode and files."""
    return WandbLogger(cfg, out_dir, job_digest, job_type, tags).run
