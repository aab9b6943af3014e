"""The share of the words a prompt asks for that the answer uses (``type: keywords``)."""

from __future__ import annotations

import re

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.judges import register
from entrgi.evaluation.judges.base import ScoringJudge
from entrgi.evaluation.judges.lexical import words


def keyword_coverage(response: str, keywords: list[str]) -> float:
    """The share of ``keywords`` the response uses as whole words, in any case."""
    used = set(words(response))
    return sum(k in used for k in keywords) / len(keywords)


@register("keywords")
class KeywordJudge(ScoringJudge):
    """The share of the words a prompt asks for that the response uses (whole words, any case).

    A verifiable instruction, as in IFEval: the words are read from the prompt's text with
    ``pattern``, whose first group is the list ("a and b", "a, b and c").
    """

    def __init__(self, name: str = "keywords", pattern: str = r"Using the words (.+?), say"):
        try:
            self.pattern = re.compile(pattern)
        except re.error as error:
            raise ConfigError(f"eval_reward.pattern={pattern!r} is not a regular expression ({error}); fix it")
        if self.pattern.groups < 1:
            raise ConfigError(f"eval_reward.pattern={pattern!r} has no group; put the word list in ( )")
        self.name = name

    @classmethod
    def from_config(cls, cfg, device: str, dtype: str) -> KeywordJudge:
        return cls(cfg.get("name", "keywords"), cfg.get("pattern", cls().pattern.pattern))

    def required(self, prompt: Prompt) -> list[str]:
        found = self.pattern.search(prompt.text)
        if not found:
            raise ConfigError(f"prompt {prompt.id!r} does not match eval_reward.pattern={self.pattern.pattern!r}; "
                              f"set a pattern that finds its word list, or use another eval_reward")
        return [w for w in re.split(r",\s*|\s+and\s+", found.group(1).lower()) if w]

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        return [keyword_coverage(r, self.required(p)) for p, r in zip(prompts, responses)]
