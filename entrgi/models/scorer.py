"""Rewards that are not networks: any scorer of (prompt, response text) as the guide.

Derivative-free methods (best-of-K, FK, SVDD, RWS) only ever score decoded text, so a rule can
guide them as well as a reward model: the testbed's keyword rule, IFEval's checkers (the share of
a prompt's instructions the response follows), a regular expression, or a Python function given
by import path (``reward=function reward.path=mypackage.module:score``). A scorer stands in for
``RewardModel`` where text is scored (``score_texts``, ``evaluations``, the padding widths, which
it does not need); gradient methods refuse it before any model loads.

A scorer sees each row's ``Prompt`` (id, text, reference, metadata), not only its text: IFEval
reads the instruction ids from the metadata. ``know(prompts)`` tells it the job's prompts
(``SamplingSetup.for_prompts`` does); a prompt text it was not told of reaches it as a bare
``Prompt`` with that text.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import re
from typing import Callable

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt

SCORERS = ("keywords", "ifeval", "regex", "function")
REWARD_MODEL = "reward_model"  # a reward config without `type` is a reward model


class Scorer:
    """A non-differentiable reward: ``score(prompts, responses)`` gives one number per pair."""

    def __init__(self, name: str, score: Callable[[list[Prompt], list[str]], list[float]], identity: dict):
        self.name, self._score = name, score
        self.identity = identity  # what decides its scores, for the shared best-of-K cache's key
        self.evaluations = {"forward": 0, "backward": 0}  # pairs scored (a scorer has no backward)
        self._prompts: dict[str, Prompt] = {}

    def know(self, prompts: list[Prompt]) -> None:
        """The job's prompts: a row's prompt text is looked up among them (IFEval needs their metadata)."""
        self._prompts.update({p.text: p for p in prompts})

    def score_texts(self, prompts: list[str], responses: list[str], batch_size: int = 16,
                    width: int = 0) -> list[float]:
        """Scores of (prompt, response) pairs, as ``RewardModel.score_texts`` (no batching or width needed)."""
        rows = [self._prompts.get(text) or Prompt(id="", text=text) for text in prompts]
        scores = [float(s) for s in self._score(rows, responses)]
        bad = next((s for s in scores if not math.isfinite(s)), None)
        if bad is not None:
            raise ConfigError(f"reward={self.name} gave {bad} for a response; a scorer must return finite numbers")
        self.evaluations["forward"] += len(responses)
        return scores

    def context_widths(self, prompts: list[str]) -> tuple[int, int]:
        return 0, 0  # no chat template: nothing is padded

    def text_width(self, prompts: list[str], gen_length: int) -> int:
        return 0


def is_scorer(reward_cfg) -> bool:
    """Whether a ``reward`` config names a scorer rather than a reward model."""
    return reward_cfg.get("type", REWARD_MODEL) != REWARD_MODEL


def make_scorer(cfg) -> Scorer:
    """The scorer a ``reward`` config (``type`` one of ``SCORERS``) describes; ConfigError naming the fix."""
    kind, name = cfg.get("type"), cfg.get("name") or cfg.get("type")
    if kind == "keywords":
        from entrgi.evaluation.judges.keywords import KeywordJudge

        judge = KeywordJudge(name, cfg.get("pattern", KeywordJudge().pattern.pattern))
        return Scorer(name, judge.score, {"type": kind, "pattern": judge.pattern.pattern})
    if kind == "ifeval":
        from entrgi.evaluation.judges.ifeval import IFEvalJudge

        judge = IFEvalJudge(name, cfg.get("score", "instruction_strict"))
        return Scorer(name, lambda prompts, responses: _checked(judge, prompts, responses),
                      {"type": kind, "score": judge.metric})
    if kind == "regex":
        return _regex(name, cfg.get("pattern"))
    if kind == "function":
        function, source = import_function(cfg.get("path"))
        return Scorer(name, lambda prompts, responses: [function(p, r) for p, r in zip(prompts, responses)],
                      {"type": kind, "path": cfg.get("path"), "source_sha256": source})
    raise ConfigError(f"unknown reward.type={kind!r}; use {REWARD_MODEL} (a reward model) or a scorer: "
                      f"{', '.join(SCORERS)}")


def _checked(judge, prompts: list[Prompt], responses: list[str]) -> list[float]:
    """IFEval's scores; a prompt it cannot check stops the job (a guide needs a number for every row)."""
    verdicts = judge.verdicts(prompts, responses)
    for prompt, verdict in zip(prompts, verdicts):
        if verdict.score is None:
            raise ConfigError(f"reward=ifeval cannot score prompt {prompt.id or prompt.text[:40]!r}: {verdict.error}")
    return [v.score for v in verdicts]


def _regex(name: str, pattern) -> Scorer:
    """1 when the pattern occurs in the response (``re.search``), else 0."""
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"reward=regex needs reward.pattern=<a regular expression> (got {pattern!r})")
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"reward.pattern={pattern!r} is not a regular expression ({error}); fix it") from None
    return Scorer(name, lambda prompts, responses: [float(compiled.search(r) is not None) for r in responses],
                  {"type": "regex", "pattern": pattern})


def import_function(path) -> tuple[Callable, str]:
    """The function ``package.module:name`` and a digest of its module's source (its code is part of what a
    cached best-of-K depends on)."""
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ConfigError(f"reward.path={path!r} must name a function as package.module:function "
                          f"(e.g. reward.path=mypackage.rewards:score)")
    module_name, attribute = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"reward.path={path!r}: cannot import {module_name!r} ({error}); install it or put its "
                          f"directory on PYTHONPATH") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"reward.path={path!r}: module {module_name!r} has no function {attribute!r}")
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):  # no source file (a compiled or built-in module): its name stands for it
        source = module_name
    return function, hashlib.sha256(source.encode()).hexdigest()
