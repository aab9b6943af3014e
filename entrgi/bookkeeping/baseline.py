"""The unguided samples of a setting, computed once and shared by every job that needs them.

``base`` and ``bon`` draw the same K unguided samples (they differ only in which one they
answer with), and every guided job compares against best-of-K on the same prompts. So the
unguided records of a setting live in one content-addressed directory,
``<cache_dir>/<digest of baseline_settings>/``, filled prompt by prompt under a file lock:
concurrent jobs wait for each other instead of computing twice, and a job killed while filling
it leaves complete records that the next one keeps. A job whose prompts are all cached only
reads it (no lock, no write access needed).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from entrgi.bookkeeping.settings import differences, digest
from entrgi.bookkeeping.storage import ResultsLog, locked, read_jsonl, write_json
from entrgi.errors import ConfigError

if TYPE_CHECKING:
    from entrgi.evaluation.benchmarks import Prompt

log = logging.getLogger("entrgi")


class BaselineCache:
    def __init__(self, cache_dir: Path, settings: dict):
        self.settings = settings
        self.digest = digest(settings)
        self.dir = Path(cache_dir) / self.digest[:16]

    def records(self, prompts: list[Prompt], sample: Callable[[list[Prompt]], list[dict]], batch_size: int,
                wait_message_every: float = 60.0, on_batch: Callable[[int], None] | None = None,
                batch_key: Callable[[Prompt], int] | None = None) -> list[dict]:
        """The unguided records of ``prompts`` in their order, sampling only those not cached yet.

        A cache that already holds every prompt is only read: no lock, no write, so colleagues
        may share a cache they cannot write to. Filling it takes the lock. ``batch_key``: see
        ``ResultsLog.fill``.
        """
        cached = self._read_only(prompts)
        if cached is not None:
            return cached
        self.dir.mkdir(parents=True, exist_ok=True)
        waiting = f"waiting for the baseline cache {self.dir}: another job is filling it"
        with locked(Path(str(self.dir) + ".lock"), waiting_message=waiting, message_every=wait_message_every):
            self._check_settings()
            results = ResultsLog(self.dir / "results.jsonl")
            missing = len({p.id for p in prompts} - results.done())
            if missing:
                log.info("baseline cache %s: sampling %d of %d prompts", self.dir, missing, len(prompts))
            return results.fill(prompts, sample, batch_size, on_batch, batch_key)

    def _read_only(self, prompts: list[Prompt]) -> list[dict] | None:
        """The records of ``prompts`` when the cache holds all of them under these settings, else None."""
        if not (self.dir / "settings.json").exists():
            return None
        self._check_settings()
        by_id = {r["id"]: r for r in read_jsonl(self.dir / "results.jsonl")}
        if not all(p.id in by_id for p in prompts):
            return None
        return [by_id[p.id] for p in prompts]

    def _check_settings(self) -> None:
        path = self.dir / "settings.json"
        if not path.exists():
            write_json(path, {"digest": self.digest, "settings": self.settings})
            return
        stored = json.loads(path.read_text())
        if stored.get("digest") != self.digest:  # a 64-bit prefix collision, or a hand-edited cache
            keys = ", ".join(differences(stored.get("settings", {}), self.settings)) or "unknown keys"
            raise ConfigError(f"baseline cache {self.dir} holds other settings ({keys}); delete it or set "
                              f"baseline.cache_dir to another directory")
