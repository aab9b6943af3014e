"""Console progress: prompts done, and the denoising steps of the batch in flight (with time left); and
what the console prints at the end, added to the job's log file."""

from __future__ import annotations

import logging
from contextlib import contextmanager


@contextmanager
def progress_bars(desc: str, total: int, initial: int = 0):
    """Yields ``(batch_done, step_done)``: call ``batch_done(n)`` after each batch of ``n`` prompts and
    ``step_done(done, steps)`` after each denoising step (``steps`` in the batch)."""
    from tqdm import tqdm

    with tqdm(total=total, initial=initial, desc=desc, unit="prompt") as prompts, \
            tqdm(total=0, desc="  denoising", unit="step", leave=False) as steps:
        def step_done(done: int, of: int) -> None:
            if steps.total != of or done == 1:
                steps.reset(total=of)
            steps.update(done - steps.n)

        yield prompts.update, step_done


def add_to_log_files(text: str) -> None:
    """Write ``text`` to the log files of this process's root logger (Hydra's ``run.log`` /
    ``train.log``) but not to the console: for what the console already printed in its own form."""
    record = logging.makeLogRecord({"name": "entrgi", "levelno": logging.INFO, "levelname": "INFO",
                                    "msg": "%s", "args": (text,)})
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
