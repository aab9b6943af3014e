"""Hydra's basic sweeper, minus the jobs that already finished.

A job's directory is ``hydra.sweep.dir/hydra.sweep.subdir``, and entrgi's subdir is a function of
the job's settings; a finished job leaves ``summary.json`` with the digest of those settings.
Re-launching a named sweep therefore launches only what is missing (a partial job resumes at
prompt granularity inside ``entrgi.run.run``), on any launcher, Slurm included.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class ResumingSweeper(BasicSweeper):
    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = SkipFinished(self.launcher, hydra_context, config)


class SkipFinished(Launcher):
    """Wraps a launcher: returns stored summaries for finished jobs, launches the rest."""

    def __init__(self, inner: Launcher, hydra_context, config) -> None:
        self.inner, self.hydra_context, self.config = inner, hydra_context, config

    def setup(self, **kwargs: Any) -> None:
        self.inner.setup(**kwargs)

    def finished(self, overrides: Sequence[str]) -> JobReturn | None:
        from entrgi.bookkeeping.settings import digest, finished_summary, job_settings, register_resolvers

        register_resolvers()
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        out_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        summary = finished_summary(out_dir, digest(job_settings(cfg)))
        if summary is None:
            return None
        task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
        return JobReturn(overrides=list(overrides), cfg=task_cfg, hydra_cfg=cfg, working_dir=str(out_dir),
                         task_name=cfg.hydra.job.name, status=JobStatus.COMPLETED, _return_value=summary)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        done = [self.finished(overrides) for overrides in job_overrides]
        todo = [overrides for overrides, ret in zip(job_overrides, done) if ret is None]
        if len(todo) < len(job_overrides):
            log.info("skipping %d finished job(s) of %d; launching %d", len(job_overrides) - len(todo),
                     len(job_overrides), len(todo))
        launched = iter(self.inner.launch(todo, initial_job_idx) if todo else [])
        return [ret if ret is not None else next(launched) for ret in done]
