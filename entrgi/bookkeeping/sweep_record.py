"""A sweep's own record of its grid: every job its launches asked for, in ``<sweep>/sweep.json``.

The resuming sweeper writes it before it launches anything, so the report can name a job that left
nothing behind (never started, its directory deleted) and knows which seeds each cell should have.
Each launch adds its jobs to the record: a re-launch with a wider grid widens it, one with a narrower
grid removes nothing. Updates hold a file lock (two launchers at once) and are written atomically.
"""

from __future__ import annotations

from pathlib import Path

from entrgi.bookkeeping.storage import locked, read_json, write_json
from entrgi.errors import ConfigError

RECORD = "sweep.json"


def job_entry(directory: str, overrides: list[str], settings: dict) -> dict:
    """One job of the grid: its directory (relative to the sweep's), the overrides that launch it, and
    its settings (``entrgi.bookkeeping.settings.job_settings``)."""
    return {"dir": directory, "overrides": list(overrides), "settings": settings}


def read_jobs(sweep_dir: Path) -> list[dict] | None:
    """The recorded jobs, sorted by directory; None for a sweep without a record."""
    path = Path(sweep_dir) / RECORD
    if not path.exists():
        return None
    jobs = read_json(path, "a sweep's record").get("jobs")
    if not isinstance(jobs, list) or not all(isinstance(j, dict) and "dir" in j for j in jobs):
        raise ConfigError(f"{path} has no list of jobs: not a sweep's record; delete it (the next launch of the "
                          f"sweep writes it again)")
    return jobs


def record_jobs(sweep_dir: Path, jobs: list[dict]) -> None:
    """Add ``jobs`` to the sweep's record (a job already there, by directory, is replaced)."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with locked(sweep_dir / f".{RECORD}.lock"):
        known = {job["dir"]: job for job in read_jobs(sweep_dir) or []}
        known.update({job["dir"]: job for job in jobs})
        write_json(sweep_dir / RECORD, {"jobs": [known[d] for d in sorted(known)]})
