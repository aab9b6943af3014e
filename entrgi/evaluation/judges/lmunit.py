"""LMUnit (Saad-Falcon et al., 2024): a model that grades an answer against natural-language unit tests.

The protocol of the authors' evaluation (ContextualAI's ``lmunit`` package and its ``eval/eval.py``): the
user turn ``Query: {prompt}\\n\\nResponse: {answer}\\n\\nUnit Test: {unit test}`` after the system turn
``rationale=No``, through the model's chat template with the generation prompt; greedy, 10 new tokens,
top-20 log-probabilities. The model writes ``{"score": N}``; the score is the mean of the digits 0-6
weighted by their probabilities at that token, renormalized over the digits among the top-20. Each answer
gets the mean over the unit tests. Where the package gives 0 to an output it cannot parse, this judge
declines the answer and says why, so that the summary counts it instead of averaging a 0 in.
"""

from __future__ import annotations

import math

from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.generation import ChatGenerator, Reply, make_generator
from entrgi.evaluation.judges import register
from entrgi.evaluation.judges.base import ModelJudge, Verdict

UNIT_TEST_PROMPT = "Query: {query}\n\nResponse: {response}\n\nUnit Test: {unit_test}"
SCORE_DIGITS = [str(d) for d in range(7)]  # the tokens the package weighs, valued 0..6


def lmunit_score(reply: Reply) -> float:
    """The probability-weighted score at the score token of ``{"score": N}``; ValueError if there is none."""
    tokens = reply.tokens
    at = next((i + 3 for i in range(len(tokens) - 1) if tokens[i] == "score" and tokens[i + 1] == '":'), None)
    if at is None:
        raise ValueError(f"no score in the judge's output {reply.text!r}")
    if at >= len(tokens) or tokens[at].strip() not in SCORE_DIGITS:
        raise ValueError(f"the score in the judge's output {reply.text!r} is not a digit 0-6")
    top = reply.top_logprobs[at]
    weights = [(int(d), math.exp(top[d])) for d in SCORE_DIGITS if d in top]
    if not weights:
        raise ValueError(f"no digit among the top log-probabilities of the score in {reply.text!r}")
    return sum(value * p for value, p in weights) / sum(p for _, p in weights)


@register("lmunit")
class LMUnitJudge(ModelJudge):
    """Scores every answer against every unit test in one batched generation (answers x unit tests)."""

    def __init__(self, generator: ChatGenerator, unit_tests: list[str], name: str = "lmunit",
                 system_prompt: str | None = "rationale=No"):
        super().__init__(generator, name, system_prompt)
        self.unit_tests = list(unit_tests)

    @classmethod
    def from_config(cls, cfg, device: str, dtype: str) -> LMUnitJudge:
        return cls(make_generator(cfg, device, dtype), cfg.unit_tests, cfg.get("name", "lmunit"),
                   cfg.get("system_prompt"))

    def conversations(self, prompts: list[Prompt], responses: list[str]) -> list[list[dict]]:
        """One conversation per (answer, unit test), answer-major."""
        return self.conversations_of(UNIT_TEST_PROMPT.format(query=p.text, response=r, unit_test=t)
                                     for p, r in zip(prompts, responses) for t in self.unit_tests)

    def verdicts(self, prompts: list[Prompt], responses: list[str]) -> list[Verdict]:
        replies = self.reply(self.conversations(prompts, responses))
        T = len(self.unit_tests)
        verdicts = []
        for i in range(len(responses)):
            scores, errors = [], []
            for test, reply in zip(self.unit_tests, replies[i * T:(i + 1) * T]):
                try:
                    scores.append(lmunit_score(reply))
                except ValueError as error:
                    scores.append(None)
                    errors.append(f"unit test {test!r}: {error}")
            details = {"unit_tests": scores}
            verdicts.append(Verdict(None, details, errors[0]) if errors else Verdict(sum(scores) / T, details))
        return verdicts
