"""Results files that survive a killed job: atomic writes, an append-only JSON lines log, and locks."""

from __future__ import annotations

import json
import logging
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from entrgi.errors import ConfigError

log = logging.getLogger("entrgi")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a part.

    The temporary file is created with mode 0666 less the umask, as ``open`` would create ``path``
    itself (``tempfile.mkstemp`` makes it 0600, and the rename would keep that: results on shared
    storage would be unreadable to everyone else).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _jsonl_text(records: Sequence[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def write_jsonl(path: Path, records: Sequence[dict]) -> None:
    """Write ``records`` as a JSON lines file, atomically (see :func:`write_atomic`)."""
    write_atomic(path, _jsonl_text(records))


def append_jsonl(path: Path, records: Sequence[dict]) -> None:
    """Append ``records`` to a JSON lines file, on disk (fsync) before returning."""
    with Path(path).open("a") as handle:
        handle.write(_jsonl_text(records))
        handle.flush()
        os.fsync(handle.fileno())


def read_json(path: Path, what: str = "a JSON object"):
    """The JSON object in ``path``, or a one-line error naming the file and what is wrong with it (a file
    cut short by a killed writer or a full disk, a hand edit)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not {what}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not text (byte {error.start}): not {what}; delete or restore it") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}): "
                          f"cut short or edited; delete or restore it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a JSON {type(data).__name__}, not {what}; delete or restore it")
    return data


def parse_jsonl(text: str) -> tuple[list[dict], list[int]]:
    """The JSON objects of JSON lines ``text``, and the numbers of the lines that are not one (a line
    cut short by a killed writer, a hand edit). Blank lines are neither."""
    records, bad = [], []
    # split on newlines only: str.splitlines also splits inside JSON strings holding U+2028 and kin
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad.append(number)
    return records, bad


def read_jsonl(path: Path, strict: bool = False) -> list[dict]:
    """The records of a JSON lines file (none if it does not exist). A line that is not a JSON object
    is skipped (a writer was killed mid-line), or with ``strict`` (a user's file) refused in one line."""
    path = Path(path)
    if not path.exists():
        return []
    records, bad = parse_jsonl(path.read_text())
    if strict and bad:
        raise ConfigError(f"{path}:{bad[0]} is not a JSON object; fix or remove that line")
    return records


class ResultsLog:
    """One JSON record per prompt, appended as batches finish; keyed by ``id`` for resuming.

    Opening it only reads (a reader needs no write access); the first :meth:`append` drops a
    half-written tail left by a killed writer before appending after it. Two writers must not
    append at once: hold the file's lock (:func:`locked`) while writing.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        text = self.path.read_text() if self.path.exists() else ""
        self.records, bad = parse_jsonl(text)
        # a torn or unreadable line, or a last line without its newline, which an append would extend
        self._needs_repair = bool(bad) or (text != "" and not text.endswith("\n"))

    def done(self) -> set[str]:
        return {r["id"] for r in self.records}

    def append(self, records: list[dict]) -> None:
        if self._needs_repair:
            write_jsonl(self.path, self.records)
            self._needs_repair = False
        append_jsonl(self.path, records)
        self.records += records

    def fill(self, items: Sequence, sample: Callable[[list], list[dict]], batch_size: int,
             on_batch: Callable[[int], None] | None = None, batch_key: Callable | None = None) -> list[dict]:
        """Records of ``items`` (anything with an ``id``) in their order, sampling only the missing ones.

        ``sample`` turns a batch of items into their records; each batch is appended before the
        next starts, so a killed job keeps every finished batch. ``on_batch(n)`` follows each batch.
        ``batch_key``: the missing items are batched in the (stable) order of this key, so items
        that share it share batches; the records still come back in ``items``' order.
        """
        done = self.done()
        todo = [item for item in items if item.id not in done]
        if batch_key is not None:
            todo.sort(key=batch_key)
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            self.append(sample(batch))
            if on_batch is not None:
                on_batch(len(batch))
        by_id = {r["id"]: r for r in self.records}
        return [by_id[item.id] for item in items]


@contextmanager
def locked(lock_path: Path, wait: bool = True, waiting_message: str | None = None,
           message_every: float = 60.0) -> Iterator[bool]:
    """Hold the file lock ``lock_path`` for the ``with`` block; yields whether it is held.

    ``wait``: block until the lock is free, logging ``waiting_message`` every ``message_every``
    seconds; else yield False at once when another process holds it. The lock is the operating
    system's (``flock``): a killed holder releases it, so it never goes stale.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path))
    while True:
        try:
            lock.acquire(timeout=message_every if wait else 0)
            break
        except Timeout:
            if not wait:
                yield False
                return
            if waiting_message:
                log.info(waiting_message)
    try:
        yield True
    finally:
        lock.release()


@contextmanager
def run_lock(run_dir: Path, process: int = 0, processes: int = 1) -> Iterator[None]:
    """Hold a training run directory for the ``with`` block: process ``process`` of ``processes`` takes
    ``.train-<process>.lock``, and the main process also finds no other rank's lock held (the workers
    of a wider launch, some of them orphaned by a killed launcher). Refuses in one line otherwise.

    Each worker holds its own lock, so a launcher killed without its workers leaves the directory
    locked for as long as any of them runs (``docs/post-training-safety.md``: stopping them).
    """
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    def refuse(path: Path):
        return ConfigError(f"{run_dir} is being trained by another launch ({path.name} is held: a run still "
                           f"going, or the workers of a killed accelerate launch); stop it first "
                           f"(docs/post-training-safety.md) or pick another hydra.run.dir")

    mine = FileLock(str(run_dir / f".train-{process}.lock"))
    try:
        mine.acquire(timeout=0)
    except Timeout:
        raise refuse(run_dir / f".train-{process}.lock") from None
    try:
        if process == 0:
            for path in sorted(run_dir.glob(".train-*.lock")):
                rank = path.name.removeprefix(".train-").removesuffix(".lock")
                if not rank.isdigit() or int(rank) < processes:
                    continue
                other = FileLock(str(path))
                try:
                    other.acquire(timeout=0)
                except Timeout:
                    raise refuse(path) from None
                other.release()
        yield
    finally:
        mine.release()
