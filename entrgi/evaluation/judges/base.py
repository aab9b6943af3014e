"""What every judge is: a pointwise judge scores each answer alone (``verdicts``); a pairwise judge says
which of two answers is better (``compare``). Either may decline an answer it cannot score, saying why.
Judges are built by name from an ``eval_reward`` config (``entrgi.evaluation.judges.make_judge``); each
one's ``from_config`` reads its own settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from entrgi.evaluation.benchmarks import Prompt

if TYPE_CHECKING:
    from entrgi.evaluation.generation import ChatGenerator, Reply


@dataclass
class Verdict:
    """A judge's word on one answer (pointwise) or on one pair (pairwise: the outcome 1 / 0.5 / 0 for the
    first answer). ``score`` is None when the judge could not score it and ``error`` says why in one line;
    ``details`` is what it saw (per-instruction verdicts, raw outputs). ``details["accuracy_counts"]``, if
    given, maps a metric to [hits, total], which ``summarize_judged`` adds up over prompts."""

    score: float | None
    details: dict = field(default_factory=dict)
    error: str | None = None


class Judge(Protocol):
    """Scores each answer on its own; higher is better. ``forwards`` counts the judge model's sequences."""

    name: str
    forwards: int

    def verdicts(self, prompts: list[Prompt], responses: list[str]) -> list[Verdict]: ...


class PairwiseJudge(Protocol):
    """Says for each prompt how the answer fares against the baseline's: a Verdict whose score is the outcome."""

    name: str
    forwards: int
    pairwise: bool  # True

    def compare(self, prompts: list[Prompt], answers: list[str], baseline_answers: list[str]) -> list[Verdict]: ...


class ScoringJudge:
    """A pointwise judge that always scores: ``score`` gives plain floats and ``verdicts`` wraps them."""

    name: str
    forwards = 0

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        raise NotImplementedError

    def verdicts(self, prompts: list[Prompt], responses: list[str]) -> list[Verdict]:
        return [Verdict(s) for s in self.score(prompts, responses)]


class ModelJudge:
    """What the chat-model judges (LMUnit, pairwise) share: the model's ``generator``, asked each question as a
    user turn after an optional system turn; ``forwards`` counts the model's sequences."""

    def __init__(self, generator: ChatGenerator, name: str, system_prompt: str | None):
        self.generator, self.name, self.system_prompt = generator, name, system_prompt

    @property
    def forwards(self) -> int:
        return self.generator.forwards

    def conversations_of(self, user_turns: Iterable[str]) -> list[list[dict]]:
        """One conversation per user turn: the system turn (if any), then the user turn."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [system + [{"role": "user", "content": turn}] for turn in user_turns]

    def reply(self, conversations: list[list[dict]]) -> list[Reply]:
        """The model's reply to each conversation, through its chat template, in one batched generation."""
        return self.generator.generate(self.generator.chat_texts(conversations))
