"""Results files that survive a killed job: atomic writes and an append-only JSON lines log."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """Complete records only: a line cut short by a killed writer is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class ResultsLog:
    """One JSON record per prompt, appended as batches finish; keyed by ``id`` for resuming."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records = read_jsonl(self.path)
        # drop a half-written tail before appending after it
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

    def done(self) -> set[str]:
        return {r["id"] for r in self.records}

    def append(self, records: list[dict]) -> None:
        with self.path.open("a") as handle:
            handle.write("".join(json.dumps(r) + "\n" for r in records))
            handle.flush()
            os.fsync(handle.fileno())
        self.records += records

    def fill(self, items: Sequence, sample: Callable[[list], list[dict]], batch_size: int,
             on_batch: Callable[[int], None] | None = None) -> list[dict]:
        """Records of ``items`` (anything with an ``id``) in their order, sampling only the missing ones.

        ``sample`` turns a batch of items into their records; each batch is appended before the
        next starts, so a killed job keeps every finished batch. ``on_batch(n)`` follows each batch.
        """
        done = self.done()
        todo = [item for item in items if item.id not in done]
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            self.append(sample(batch))
            if on_batch is not None:
                on_batch(len(batch))
        by_id = {r["id"]: r for r in self.records}
        return [by_id[item.id] for item in items]
