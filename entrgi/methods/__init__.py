"""Methods as objects: a batch of prompts in, one ``PromptResult`` per prompt out.

A method family is one class registered here by name (``@register("gradient")``); a method is one
YAML file in ``conf/method/`` naming its family and settings. ``make_method`` builds one from those
settings, with or without Hydra:

    make_method({"name": "entrgi", "family": "gradient", "inner_steps": 3, "lr": 0.5}, {"name": "entropy"})

Every module in this package is imported once, so a new family needs no other edit.
"""

from __future__ import annotations

from entrgi.errors import ConfigError
from entrgi.registry import Registry

FAMILIES = Registry(__name__)
register = FAMILIES.register  # @register("gradient"): a method class, available to make_method by its family


def families() -> dict[str, type]:
    """Every registered method family, by name."""
    return dict(FAMILIES.discover())


def make_method(settings: dict, schedule: dict | None = None, **context):
    """The method that ``settings`` (a ``conf/method`` entry) describes.

    ``schedule`` (a ``conf/schedule`` entry) is built and passed to families that take one;
    ``context`` holds job facts a family may read (e.g. the reward model's ``min_coverage``).
    """
    import dataclasses

    from entrgi.sampling.schedules import make_schedule

    FAMILIES.discover()
    settings = dict(settings)
    family = settings.pop("family", None)
    if family not in FAMILIES:
        raise ConfigError(f"method.family={family!r} is not a method family; use one of {sorted(FAMILIES)}")
    cls = FAMILIES[family]
    accepted = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - accepted)
    if unknown:
        raise ConfigError(f"method {settings.get('name')!r} ({family}) has no setting {unknown[0]!r}; "
                          f"its settings: {sorted(accepted - {'schedule'} - set(context))}")
    if "schedule" in accepted and schedule is not None and schedule.get("name") != "none":
        schedule = dict(schedule)
        settings["schedule"] = make_schedule(schedule.pop("name"), **schedule)
    settings.update({k: v for k, v in context.items() if k in accepted})
    return cls(**settings)


def derivative_free_methods() -> list[str]:
    """The methods (by their default names) of every family that only scores text: they can take a scorer."""
    import dataclasses

    names = []
    for cls in families().values():
        if not cls.needs_reward_gradient:
            names += [f.default for f in dataclasses.fields(cls) if f.name == "name"]
    return sorted(names)


def scorer_refusal(method: str, reward: str) -> str:
    """The one line that refuses a scorer as the guide of a gradient method, naming the methods that can."""
    can = derivative_free_methods()
    return (f"method={method} follows the reward's gradient, and reward={reward} is a scorer (no gradient); use a "
            f"derivative-free method (method={', '.join(can[:-1])} or {can[-1]}) or a reward model (e.g. reward=tiny)")

