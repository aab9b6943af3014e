"""Hydra's basic sweeper, minus the jobs that already finished, and with a record of the sweep's grid.

A job's directory is ``hydra.sweep.dir/hydra.sweep.subdir``, and entrgi's subdir is a function of
the job's settings; a finished job leaves ``summary.json`` with the digest of those settings.
Re-launching a named sweep therefore launches only what is missing (a partial job resumes at
prompt granularity inside ``entrgi.run.run``), on any launcher, Slurm included.

A setting that only some of the swept methods (or schedules) have, as ``method.inner_steps=3`` in
``-m method=bon,entrgi method.inner_steps=3``, is given to the jobs whose config has it and left out of
the others (bon's jobs run, and are recorded, as plain bon). A setting no job of the grid has is
still refused, by Hydra, as a typo.

Before launching, the sweeper adds every job of the grid (overrides, directory, settings) to
``<sweep>/sweep.json`` (``entrgi.bookkeeping.sweep_record``), so ``python -m entrgi.report`` can name
the jobs that left nothing behind.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
_ABSENT = object()


GROUP_SETTINGS = ("method.", "schedule.")  # settings of a group's choice: one method's, not another's


def override_key(override: str) -> str:
    return override.split("=", 1)[0]


class ResumingSweeper(BasicSweeper):
    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = SkipFinished(self.launcher, hydra_context, config)

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        if self.batch_index == 0:  # the whole grid is known now, before the first launch
            jobs = self.launcher.applicable([job for batch in self.overrides for job in batch])
            self.overrides = list(self.split_overrides_to_chunks(jobs, self.max_batch_size or len(jobs)))
            self.launcher.record_grid(jobs)
        return super().get_job_batch()


class SkipFinished(Launcher):
    """Wraps a launcher: returns stored summaries for finished jobs, launches the rest."""

    def __init__(self, inner: Launcher, hydra_context, config) -> None:
        self.inner, self.hydra_context, self.config = inner, hydra_context, config
        self.configs: dict[tuple[str, ...], DictConfig] = {}

    def setup(self, **kwargs: Any) -> None:
        self.inner.setup(**kwargs)

    def job_config(self, overrides: Sequence[str]) -> DictConfig:
        """A job's composed config (with ``hydra``), composed once per job."""
        key = tuple(overrides)
        if key not in self.configs:
            self.configs[key] = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        return self.configs[key]

    def applicable(self, job_overrides: list[list[str]]) -> list[list[str]]:
        """Each job's overrides without the group settings (``method.*``, ``schedule.*``) its own config
        lacks but another job's has; jobs that become the same job are launched once."""
        group_settings = {override_key(o) for job in job_overrides for o in job if o.startswith(GROUP_SETTINGS)}
        if not group_settings:
            return job_overrides
        has: dict[tuple[str, ...], set[str]] = {}
        for overrides in job_overrides:
            rest = tuple(o for o in overrides if override_key(o) not in group_settings)
            if rest not in has:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(rest))
                has[rest] = {k for k in group_settings if OmegaConf.select(cfg, k, default=_ABSENT) is not _ABSENT}
        used = set().union(*has.values())  # a setting no job has stays in, for Hydra to refuse as a typo
        jobs, dropped = {}, set()
        for overrides in job_overrides:
            own = has[tuple(o for o in overrides if override_key(o) not in group_settings)]
            kept = [o for o in overrides if override_key(o) not in used - own]
            dropped |= {(override_key(o), self._method(kept)) for o in overrides if o not in kept}
            jobs.setdefault(tuple(kept), kept)
        for key, method in sorted(dropped):
            log.info("%s left out of the %s jobs: its config has no such setting", key, method)
        return list(jobs.values())

    def _method(self, overrides: list[str]) -> str:
        return str(self.job_config(overrides).method.name)

    def record_grid(self, job_overrides: Sequence[Sequence[str]]) -> None:
        from entrgi.bookkeeping.settings import job_settings
        from entrgi.bookkeeping.sweep_record import job_entry, record_jobs

        jobs = []
        for overrides in job_overrides:
            cfg = self.job_config(overrides)
            jobs.append(job_entry(str(cfg.hydra.sweep.subdir), list(overrides), job_settings(cfg)))
        record_jobs(Path(str(self.config.hydra.sweep.dir)), jobs)

    def finished(self, overrides: Sequence[str]) -> JobReturn | None:
        from entrgi.bookkeeping.settings import digest, finished_summary, job_settings

        cfg = self.job_config(overrides)
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
