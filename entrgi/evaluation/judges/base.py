"""Judges: score (prompt, response) pairs for evaluation, never for guidance.

A judge that the guidance never saw is how reward hacking shows: the guided method may beat
best-of-K on the guiding reward model yet not on a held-out one.

Two kinds: a pointwise judge scores each answer alone (``verdicts``); a pairwise judge says which
of two answers is better (``compare``). Either may decline an answer it cannot score, saying why.
``judge_against_baseline`` runs either kind on a method's answers against best-of-K's, and
``summarize_judged`` aggregates what it returns.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.metrics import mean_stderr, outcomes, win_rate
from entrgi.models.reward import RewardModel

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


def judge_against_baseline(judge: Judge | PairwiseJudge, prompts: list[Prompt], answers: list[str],
                           baseline_answers: list[str]) -> list[dict]:
    """Judge each prompt's answer against the baseline's answer, all prompts in one call.

    One dict per prompt: ``id``, ``name`` (the judge), ``top1`` and ``baseline_top1`` (the judge's scores of
    the two answers; None from a pairwise judge or where unscorable), ``outcome`` (1 / 0.5 / 0 for the answer,
    None when the prompt could not be judged), ``details``, ``error`` (why not, or None) and ``cost``
    (this prompt's share of the judge's sequences, ``forwards``, and wall-clock ``seconds``).
    """
    if not len(prompts) == len(answers) == len(baseline_answers):
        raise ValueError(f"{len(prompts)} prompts, {len(answers)} answers, {len(baseline_answers)} baseline answers")
    n = len(prompts)
    start, forwards = time.perf_counter(), judge.forwards
    if getattr(judge, "pairwise", False):
        pairs = judge.compare(prompts, answers, baseline_answers)
        rows = [{"top1": None, "baseline_top1": None, "outcome": v.score, "details": v.details, "error": v.error}
                for v in pairs]
    else:
        verdicts = judge.verdicts(prompts + prompts, answers + baseline_answers)
        rows = []
        for mine, theirs in zip(verdicts[:n], verdicts[n:]):
            errors = [f"{which}: {v.error}" for which, v in (("answer", mine), ("baseline answer", theirs))
                      if v.score is None]
            scorable = not errors
            details = {"top1": mine.details, "baseline_top1": theirs.details} if mine.details or theirs.details else {}
            rows.append({"top1": mine.score, "baseline_top1": theirs.score,
                         "outcome": outcomes([mine.score], [theirs.score])[0] if scorable else None,
                         "details": details, "error": "; ".join(errors) or None})
    cost = {"forwards": (judge.forwards - forwards) / max(n, 1), "seconds": (time.perf_counter() - start) / max(n, 1)}
    return [{"id": p.id, "name": judge.name, **row, "cost": dict(cost)} for p, row in zip(prompts, rows)]


def _accuracies(details: list[dict]) -> dict[str, float]:
    """Micro-averaged accuracies from the answers' ``accuracy_counts`` ({metric: [hits, total]})."""
    hits, totals = Counter(), Counter()
    for d in details:
        for metric, (hit, total) in d.get("accuracy_counts", {}).items():
            hits[metric] += hit
            totals[metric] += total
    return {metric: hits[metric] / totals[metric] for metric in totals if totals[metric]}


def summarize_judged(rows: list[dict], seed: int = 0) -> dict:
    """What ``judge_against_baseline``'s rows add up to, over the prompts both answers could be judged on.

    ``top1`` / ``baseline_top1``: mean and standard error of the judge's scores (absent for a pairwise
    judge); ``win_rate``: the bootstrap win-rate of the outcomes, with the judge's name; ``unscorable``:
    how many prompts could not be judged and why; ``accuracy``: the judges' own accuracies per side
    (IFEval's prompt- and instruction-level, strict and loose); ``cost``: the judge's sequences and seconds.
    """
    scorable = [r for r in rows if r["outcome"] is not None]
    name = rows[0]["name"] if rows else None
    summary = {"judge": name, "num_prompts": len(rows),
               "win_rate": {**win_rate([r["outcome"] for r in scorable], seed=seed), "judge": name},
               "unscorable": {"count": len(rows) - len(scorable),
                              "prompts": [{"id": r["id"], "error": r["error"]} for r in rows if r["outcome"] is None]},
               "cost": {key: sum(r["cost"][key] for r in rows) for key in ("forwards", "seconds")}}
    if any(r["top1"] is not None for r in scorable):
        for side in ("top1", "baseline_top1"):
            summary[side] = mean_stderr([r[side] for r in scorable])
    accuracy = {side: _accuracies([r["details"][side] for r in scorable if side in r["details"]])
                for side in ("top1", "baseline_top1")}
    if any(accuracy.values()):
        summary["accuracy"] = accuracy
    return summary


class RewardModelJudge(ScoringJudge):
    """A sequence-classification reward model scoring decoded text through its chat template."""

    def __init__(self, name: str, reward_model: RewardModel, batch_size: int = 16):
        self.name, self.reward_model, self.batch_size = name, reward_model, batch_size

    @property
    def forwards(self) -> int:
        return self.reward_model.evaluations["forward"]

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


class LexicalJudge(ScoringJudge):
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

    def required(self, prompt: Prompt) -> list[str]:
        found = self.pattern.search(prompt.text)
        if not found:
            raise ConfigError(f"prompt {prompt.id!r} does not match eval_reward.pattern={self.pattern.pattern!r}; "
                              f"set a pattern that finds its word list, or use another eval_reward")
        return [w for w in re.split(r",\s*|\s+and\s+", found.group(1).lower()) if w]

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        return [keyword_coverage(r, self.required(p)) for p, r in zip(prompts, responses)]


def make_judge(cfg, device: str = "auto", dtype: str = "auto") -> Judge | PairwiseJudge | None:
    """The judge an ``eval_reward`` config describes, loaded once; None for ``type: none``."""
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
    if kind == "ifeval":
        from entrgi.evaluation.judges.ifeval import IFEvalJudge

        return IFEvalJudge(cfg.get("name", "ifeval"), cfg.get("score", "instruction_strict"))
    if kind in ("lmunit", "pairwise"):
        from entrgi.evaluation.generation import make_generator

        generator = make_generator(cfg, device, dtype)
        if kind == "lmunit":
            from entrgi.evaluation.judges.lmunit import LMUnitJudge

            return LMUnitJudge(generator, cfg.unit_tests, cfg.get("name", "lmunit"), cfg.get("system_prompt"))
        from entrgi.evaluation.judges.pairwise import PairwiseModelJudge

        return PairwiseModelJudge(generator, cfg.get("name", "pairwise"))
    raise ConfigError(f"unknown eval_reward.type={kind!r}; use none, reward_model, lexical, keywords, ifeval, lmunit "
                      f"or pairwise")
