"""Word overlap with the prompt's reference answer (``type: lexical``): ROUGE-L or n-gram F1."""

from __future__ import annotations

import re
from collections import Counter

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.judges import register
from entrgi.evaluation.judges.base import ScoringJudge


def words(text: str) -> list[str]:
    """Lower-cased word tokens: runs of letters, digits and underscores."""
    return re.findall(r"\w+", text.lower())


def _f1(overlap: int, predicted: int, reference: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / reference
    return 2 * precision * recall / (precision + recall)


def ngram_f1(response: str, reference: str, n: int = 1) -> float:
    """F1 of the response's word n-grams against the reference's (clipped counts)."""
    grams = lambda ws: Counter(tuple(ws[i:i + n]) for i in range(len(ws) - n + 1))  # noqa: E731
    got, want = grams(words(response)), grams(words(reference))
    return _f1(sum((got & want).values()), sum(got.values()), sum(want.values()))


def rouge_l(response: str, reference: str) -> float:
    """ROUGE-L F1: the longest common word subsequence as precision and recall."""
    got, want = words(response), words(reference)
    previous = [0] * (len(want) + 1)
    for g in got:  # one row of the LCS table at a time
        current = [0]
        for j, w in enumerate(want):
            current.append(previous[j] + 1 if g == w else max(previous[j + 1], current[j]))
        previous = current
    return _f1(previous[-1], len(got), len(want))


LEXICAL_METRICS = {"rouge_l": rouge_l, "unigram_f1": lambda r, ref: ngram_f1(r, ref, 1),
                   "bigram_f1": lambda r, ref: ngram_f1(r, ref, 2)}


@register("lexical")
class LexicalJudge(ScoringJudge):
    """Word overlap of the response with the prompt's reference answer: non-differentiable, model-free."""

    def __init__(self, name: str = "lexical", metric: str = "rouge_l"):
        if metric not in LEXICAL_METRICS:
            raise ConfigError(f"unknown eval_reward.metric={metric!r}; use one of {sorted(LEXICAL_METRICS)}")
        self.name, self.metric = name, metric

    @classmethod
    def from_config(cls, cfg, device: str, dtype: str) -> LexicalJudge:
        return cls(cfg.get("name", "lexical"), cfg.get("metric", "rouge_l"))

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        missing = [p.id for p in prompts if not p.reference]
        if missing:
            raise ConfigError(f"the lexical judge needs a reference answer per prompt and {missing[0]!r} has none; "
                              f"set benchmark.reference_field or use another eval_reward")
        metric = LEXICAL_METRICS[self.metric]
        return [metric(r, p.reference) for p, r in zip(prompts, responses)]
