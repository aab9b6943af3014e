"""Unguided sampling: ``base`` answers with one sample, ``bon`` with the best of K by the reward model.

Both draw the same K samples per prompt, so a job reads them from the shared best-of-K cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from entrgi.bookkeeping.records import PromptResult
from entrgi.errors import ConfigError
from entrgi.methods import register
from entrgi.methods.base import Method

ANSWERS = ("best", "first")


@register("unguided")
@dataclass
class Unguided(Method):
    name: str = "bon"
    answer: str = "best"  # best: the top-1 by the guiding reward (best-of-K); first: one unselected sample
    shares_baseline_samples = True

    def __post_init__(self):
        if self.answer not in ANSWERS:
            raise ConfigError(f"method.answer={self.answer!r}; use one of {list(ANSWERS)}")

    @property
    def compares_with_baseline(self) -> bool:
        return self.answer != "best"  # best-of-K is the baseline

    @property
    def answers_with_top1(self) -> bool:
        return self.answer == "best"

    @property
    def answer_description(self) -> str:
        return ("the top-1 of its K unguided samples by the guiding reward" if self.answer == "best"
                else "its first unguided sample, unselected")

    def answer_index(self, result: PromptResult) -> int:
        return result.best_index if self.answer == "best" else 0


def best_of_k() -> Unguided:
    """The baseline every method is compared with: the best of the K shared unguided samples."""
    return Unguided(name="bon", answer="best")
