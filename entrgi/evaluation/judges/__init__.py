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

import importlib
import pkgutil

from entrgi.errors import ConfigError

JUDGES: dict[str, type] = {}
_discovered = False


def register(kind: str):
    """Make a judge class available to ``make_judge`` as ``eval_reward.type=<kind>``."""
    def add(cls):
        JUDGES[kind] = cls
        return cls
    return add


def judge_kinds() -> dict[str, type]:
    """Every registered judge class, by ``type``."""
    global _discovered
    if not _discovered:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _discovered = True
    return dict(JUDGES)


def make_judge(cfg, device: str = "auto", dtype: str = "auto"):
    """The judge an ``eval_reward`` config describes, loaded once; None for ``type: none``."""
    kind = cfg.get("type", "none")
    if kind == "none":
        return None
    kinds = judge_kinds()
    if kind not in kinds:
        raise ConfigError(f"unknown eval_reward.type={kind!r}; use none or one of {', '.join(sorted(kinds))}")
    return kinds[kind].from_config(cfg, device, dtype)
