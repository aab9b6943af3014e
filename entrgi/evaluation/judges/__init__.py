"""Judges: score (prompt, response) pairs for evaluation, never for guidance.

A judge kind is one class registered here by name (``@register("keywords")``) with a
``from_config(cfg, device, dtype)`` that reads its settings; a judge is one YAML file in
``conf/eval_reward/`` naming its ``type``. ``make_judge`` builds one from those settings, with or
without Hydra. Every module in this package is imported once, so a new judge needs no other edit.

base              Verdict and the judge types (pointwise, pairwise, scoring, chat-model)
against_baseline  a method's answers judged against best-of-K's, and the summary of that
reward_model, lexical, keywords, ifeval, lmunit, pairwise: one judge each
"""

from __future__ import annotations

from entrgi.errors import ConfigError
from entrgi.registry import Registry

JUDGES = Registry(__name__)
register = JUDGES.register  # @register("keywords"): a judge class, available to make_judge by eval_reward.type


def judge_kinds() -> dict[str, type]:
    """Every registered judge class, by ``type``."""
    return dict(JUDGES.discover())


def make_judge(cfg, device: str = "auto", dtype: str = "auto"):
    """The judge an ``eval_reward`` config describes, loaded once; None for ``type: none``."""
    kind = cfg.get("type", "none")
    if kind == "none":
        return None
    kinds = judge_kinds()
    if kind not in kinds:
        raise ConfigError(f"unknown eval_reward.type={kind!r}; use none or one of {', '.join(sorted(kinds))}")
    return kinds[kind].from_config(cfg, device, dtype)
