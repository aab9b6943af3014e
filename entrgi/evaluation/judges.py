"""Judges: score (prompt, response) pairs for evaluation, never for guidance.

A judge that the guidance never saw is how reward hacking shows: the guided method may beat
best-of-K on the guiding reward model yet not on a held-out one.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Protocol

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.models.reward import RewardModel


class Judge(Protocol):
    name: str

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        """One score per (prompt, response) pair; higher is better."""
        ...


class RewardModelJudge:
    """A sequence-classification reward model scoring decoded text through its chat template."""

    def __init__(self, name: str, reward_model: RewardModel, batch_size: int = 16):
        self.name, self.reward_model, self.batch_size = name, reward_model, batch_size

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        return self.reward_model.score_texts([p.text for p in prompts], responses, self.batch_size)


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


class LexicalJudge:
    """Word overlap of the response with the prompt's reference answer: non-differentiable, model-free."""

    def __init__(self, name: str = "lexical", metric: str = "rouge_l"):
        if metric not in LEXICAL_METRICS:
            raise ConfigError(f"unknown eval_reward.metric={metric!r}; use one of {sorted(LEXICAL_METRICS)}")
        self.name, self.metric = name, metric

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        missing = [p.id for p in prompts if not p.reference]
        if missing:
            raise ConfigError(f"the lexical judge needs a reference answer per prompt and {missing[0]!r} has none; "
                              f"set benchmark.reference_field or use another eval_reward")
        metric = LEXICAL_METRICS[self.metric]
        return [metric(r, p.reference) for p, r in zip(prompts, responses)]


def keyword_coverage(response: str, keywords: list[str]) -> float:
    """The share of ``keywords`` the response uses as whole words, in any case."""
    used = set(words(response))
    return sum(k in used for k in keywords) / len(keywords)


class KeywordJudge:
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

    def required(self, prompt: Prompt) -> list[str]:
        found = self.pattern.search(prompt.text)
        if not found:
            raise ConfigError(f"prompt {prompt.id!r} does not match eval_reward.pattern={self.pattern.pattern!r}; "
                              f"set a pattern that finds its word list, or use another eval_reward")
        return [w for w in re.split(r",\s*|\s+and\s+", found.group(1).lower()) if w]

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        return [keyword_coverage(r, self.required(p)) for p, r in zip(prompts, responses)]


def make_judge(cfg, device: str = "auto", dtype: str = "auto") -> Judge | None:
    """The judge an ``eval_reward`` config describes; None for ``type: none``."""
    kind = cfg.get("type", "none")
    if kind == "none":
        return None
    if kind == "reward_model":
        model = RewardModel.load(cfg.path, device=device, dtype=dtype, trust_remote_code=cfg.trust_remote_code,
                                 chat_template=cfg.get("chat_template"))
        return RewardModelJudge(cfg.name, model)
    if kind == "lexical":
        return LexicalJudge(cfg.get("name", "lexical"), cfg.get("metric", "rouge_l"))
    if kind == "keywords":
        return KeywordJudge(cfg.get("name", "keywords"), cfg.get("pattern", KeywordJudge().pattern.pattern))
    raise ConfigError(f"unknown eval_reward.type={kind!r}; use none, reward_model, lexical or keywords")
