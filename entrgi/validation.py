"""Every entrypoint's settings checked before Hydra makes a directory or anything loads: one table each.

A table row names a key, what its value must be, and the fix the one-line error names; a relation
checks keys against each other. ``preflight`` runs at the top of ``python -m entrgi.run`` and
``python -m entrgi.train``: it refuses an unknown group option or key (naming the closest valid
ones, in place of Hydra's multi-line output), composes each job of the command line and checks it
against the table, then the files the job will read. The entrypoints' own functions (``run``,
``train``) check the table again, for callers that compose without the command line.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from entrgi.errors import ConfigError
from entrgi.models.reward import UNMATCHED

_ABSENT = object()  # a key the composed config does not have

SEED_LIMIT = 2 ** 63  # torch and numpy seeds: a non-negative 63-bit integer keeps every consumer's range


@dataclass(frozen=True)
class Rule:
    """``key``'s value must be an integer or a finite number (``kind``) within ``low``/``high`` (``open``:
    excluding that bound), or one of ``choices``; ``optional``: null is allowed. ``fix`` ends the line."""

    key: str
    kind: str  # "int" | "number" | "choice" | "bool"
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    optional: bool = False
    choices: tuple = ()
    fix: str = ""

    def requirement(self) -> str:
        if self.kind == "choice":
            need = f"one of {list(self.choices)}"
        elif self.kind == "bool":
            need = "true or false"
        else:
            need = "an integer" if self.kind == "int" else "a finite number"
            low, high = (bound if isinstance(bound, int) and bound < 1e6 else f"{bound:g}" if isinstance(bound, float)
                         else "2**63" for bound in (self.low, self.high))
            if self.low is not None and self.high is not None:
                need += f" in {'(' if self.open_low else '['}{low}, {high}{')' if self.open_high else ']'}"
            elif self.low is not None:
                need += f" {'>' if self.open_low else '>='} {low}"
            elif self.high is not None:
                need += f" {'<' if self.open_high else '<='} {high}"
        return need + (", or null" if self.optional else "")

    def accepts(self, value) -> bool:
        if value is None:
            return self.optional
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "bool":
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, int if self.kind == "int" else (int, float)):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.open_high else value > self.high))

    def check(self, cfg: DictConfig) -> None:
        value = OmegaConf.select(cfg, self.key, default=_ABSENT)
        if value is _ABSENT:  # a key of another family or recipe (method.lr for bon)
            return
        if not self.accepts(value):
            shown = f"{value:g}" if isinstance(value, float) else repr(value)
            fix = f"; {self.fix}" if self.fix else ""
            raise ConfigError(f"{self.key}={shown} must be {self.requirement()}{fix}")


def integer(key, low=None, high=None, optional=False, fix="", open_high=False) -> Rule:
    return Rule(key, "int", low, high, optional=optional, fix=fix, open_high=open_high)


def number(key, low=None, high=None, open_low=False, open_high=False, optional=False, fix="") -> Rule:
    return Rule(key, "number", low, high, open_low, open_high, optional, fix=fix)


def choice(key, choices, fix="") -> Rule:
    return Rule(key, "choice", choices=tuple(choices), fix=fix)


def flag(key, fix="") -> Rule:
    return Rule(key, "bool", fix=fix)


# -- relations between keys ------------------------------------------------------------------------------

def steps_commit_something(cfg: DictConfig) -> None:
    """Each denoising step commits at least one position: no more steps than positions (per block)."""
    s = cfg.sampler
    block = s.block_length or s.gen_length
    if s.gen_length % block:
        raise ConfigError(f"sampler.gen_length={s.gen_length} is not a multiple of sampler.block_length={block}; "
                          f"set sampler.block_length to a divisor of it, or null for one block")
    blocks = s.gen_length // block
    if s.steps % blocks:
        raise ConfigError(f"sampler.steps={s.steps} must be a multiple of the number of blocks ({blocks}); "
                          f"e.g. sampler.steps={blocks * max(1, s.steps // blocks)}")
    if s.steps > s.gen_length:
        raise ConfigError(f"sampler.steps={s.steps} is more than sampler.gen_length={s.gen_length}: steps would "
                          f"commit no position; set sampler.steps <= {s.gen_length}")


def response_fits_the_model(cfg: DictConfig) -> None:
    max_length = cfg.model.get("max_length")
    if max_length is not None and cfg.sampler.gen_length >= max_length:
        raise ConfigError(f"sampler.gen_length={cfg.sampler.gen_length} leaves no room for a prompt in "
                          f"model.max_length={max_length}; lower sampler.gen_length or raise model.max_length")


def guidance_is_on(cfg: DictConfig) -> None:
    """Settings that would switch a guided method's guidance off without a word."""
    window = cfg.method.get("window")
    if window is not None:
        values = list(window)
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) \
                or not 0 <= values[0] < values[1] <= 1:
            raise ConfigError(f"method.window={values} must be [start, stop] with 0 <= start < stop <= 1, "
                              f"or null to guide the whole denoising")
    for key, value in (cfg.get("schedule") or {}).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"schedule.{key}={value:g} must be a finite number; set schedule.{key} to a finite value")


def device_and_dtype(cfg: DictConfig) -> None:
    from entrgi.models.loading import resolve_device, resolve_dtype

    try:
        device = resolve_device(cfg.device)
    except RuntimeError:  # torch's refusal of the string
        raise ConfigError(f"device={cfg.device!r} is not a device; use auto, cpu, cuda or cuda:<index>") from None
    resolve_dtype(cfg.dtype, device)


def shards_have_prompts(cfg: DictConfig) -> None:
    index, count = cfg.shard.index, cfg.shard.count
    if not (isinstance(index, int) and isinstance(count, int)) or count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard.index={index} shard.count={count}: need integers with 0 <= shard.index < shard.count")
    num_prompts = cfg.benchmark.num_prompts
    if num_prompts is not None and count > num_prompts:
        raise ConfigError(f"shard.count={count} is more than benchmark.num_prompts={num_prompts}: a shard would "
                          f"hold no prompts; set shard.count <= {num_prompts}")


def samples_fill_batches(cfg: DictConfig) -> None:
    t = cfg.train
    if t.batch_size % t.num_samples:
        raise ConfigError(f"train.batch_size={t.batch_size} (sequences per device) is not a multiple of "
                          f"train.num_samples={t.num_samples} (K); set train.batch_size to a multiple of K, "
                          f"e.g. {2 * t.num_samples}")


# -- the tables ------------------------------------------------------------------------------------------

SHARED = [  # entrgi.run's and entrgi.train's: the sampler, the guidance, the models, the prompts
    integer("seed", 0, SEED_LIMIT, open_high=True, fix="pick a smaller seed"),
    integer("sampler.gen_length", 1, fix="the number of response positions"),
    integer("sampler.steps", 1, fix="the number of denoising steps"),
    number("sampler.temperature", 0, open_low=True, fix="use a small value for near-greedy sampling"),
    number("sampler.top_p", 0, 1, open_low=True, fix="1 keeps the whole vocabulary"),
    integer("sampler.top_k", 1, optional=True, fix="null for no top-k cut"),
    number("sampler.alg_temp", 0, optional=True, fix="null for deterministic remasking"),
    integer("sampler.block_length", 1, optional=True, fix="null for one block"),
    number("sampler.eps", 0, 1, open_low=True, open_high=True, fix="the time grid runs from 1 down to it"),
    flag("sampler.eos_last"),
    integer("method.inner_steps", 1, fix="the paper: 3"),
    number("method.lr", 0, open_low=True, fix="the paper: 0.5"),
    integer("method.every", 1, fix="1 guides every step"),
    number("method.lam", 0, fix="0: no steering; the paper's text runs: 10"),
    integer("method.resample_every", 1, fix="1 resamples after every step"),
    integer("model.max_length", 2, optional=True, fix="null for the model's own context length"),
    integer("benchmark.num_prompts", 1, optional=True, fix="null for all prompts"),
    integer("benchmark.max_prompt_tokens", 1, optional=True, fix="null for no limit"),
    choice("logger.type", ("wandb", "none"), fix="set logger=wandb or logger=none"),
    choice("reward.unmatched", UNMATCHED),
    number("reward.min_coverage", 0, 1, fix="0 accepts any overlap of the two vocabularies"),
]
RELATIONS = [steps_commit_something, response_fits_the_model, guidance_is_on, device_and_dtype]

RUN = [
    *SHARED,
    integer("num_samples", 1, fix="K samples per prompt"),
    integer("batch_size", 1, fix="prompts per batch; results do not depend on it"),
]
RUN_RELATIONS = [*RELATIONS, shards_have_prompts]


def _train_rules() -> list[Rule]:
    from entrgi.training.likelihood import ESTIMATORS, PROTOCOLS

    return [
        *SHARED,
        integer("train.num_samples", 2, fix="K must be at least 2 to compare samples"),
        integer("train.batch_size", 2, fix="sequences per device and micro-step: prompts x K"),
        integer("train.steps", 1, fix="the number of optimizer steps (the default: 500)"),
        number("train.lr", 0, open_low=True, fix="the published setting: 5e-6"),
        integer("train.warmup_steps", 0),
        number("train.weight_decay", 0),
        number("train.max_grad_norm", 0, fix="0 switches gradient clipping off"),
        integer("train.gradient_accumulation", 1),
        flag("train.gradient_checkpointing"),
        flag("train.load_in_4bit"),
        number("train.prompt_mask_rate", 0, 1, open_high=True, fix="d1's: 0.3"),
        choice("train.estimator", ESTIMATORS),
        number("train.beta", 0, fix="0: no KL penalty (diffu_grpo's: 0.04)"),
        number("train.epsilon", 0, open_low=True, fix="the clipped ratio (diffu_grpo's: 0.2)"),
        integer("train.num_iterations", 1, fix="1 is on-policy"),
        *[choice(f"train.{key}", options, fix="the first is the EntRGi authors' (docs/rgrl-protocol.md)")
          for key, options in PROTOCOLS.items()],
        integer("train.lora.r", 1, fix="the LoRA rank (the paper: 32)"),
        number("train.lora.alpha", 0, open_low=True, fix="LoRA's scale numerator (the paper: 32)"),
        number("train.lora.dropout", 0, 1, open_high=True),
        integer("train.save_every", 1, fix="checkpoint every this many steps (and after the last)"),
        integer("train.keep_checkpoints", 1, optional=True, fix="null keeps every checkpoint"),
        integer("train.eval.every", 0, fix="0: only at step 0 and after the last step"),
        integer("train.eval.num_prompts", 1),
        integer("train.eval.num_samples", 1),
        integer("train.eval.batch_size", 1, fix="prompts per sampling call"),
        flag("train.save_merged"),
    ]


TRAIN_RELATIONS = [*RELATIONS, samples_fill_batches]


def validate(cfg: DictConfig, entrypoint: str) -> None:
    """Check a composed config against ``entrypoint``'s table ("run" or "train")."""
    rules, relations = (RUN, RUN_RELATIONS) if entrypoint == "run" else (_train_rules(), TRAIN_RELATIONS)
    for rule in rules:
        rule.check(cfg)
    for relation in relations:
        relation(cfg)


# -- the command line ------------------------------------------------------------------------------------

VALUE_OPTIONS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                 "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}


def _overrides(argv: list[str]):
    """Hydra's parsed overrides of the command line (its flags left out); None where Hydra cannot parse
    one (Hydra then says what is wrong)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in VALUE_OPTIONS
        else:
            args.append(arg)
    try:
        return OverridesParser.create().parse_overrides(args)
    except Exception:  # noqa: BLE001 -- Hydra's own message for a malformed override
        return None


def group_options(conf_dir: Path) -> dict[str, list[str]]:
    """Each config group of ``conf_dir`` (Hydra's own groups aside) and its options."""
    groups = {}
    for folder in sorted(p for p in conf_dir.rglob("*") if p.is_dir()):
        group = folder.relative_to(conf_dir).as_posix()
        if group.split("/")[0] != "hydra":
            groups[group] = sorted(p.stem for p in folder.glob("*.yaml"))
    return groups


def closest(word: str, options) -> str:
    near = difflib.get_close_matches(word, list(options), n=3, cutoff=0.5)
    return f"did you mean {' or '.join(near)}? " if near else ""


def _values(override) -> list[str]:
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [override.get_value_element_as_str()]


def check_names(overrides, groups: dict[str, list[str]], cfg: DictConfig) -> None:
    """An override naming a group option or a key the config does not have: one line with the closest names."""
    for override in overrides:
        name = override.key_or_group
        if name.split(".")[0].split("/")[0] == "hydra" or override.is_add() or override.is_delete() \
                or override.is_force_add():
            continue
        if name in groups:
            for value in _values(override):
                if value not in groups[name] and value != "null":
                    hint = closest(value, groups[name])
                    raise ConfigError(f"{name}={value}: conf/{name}/ has no {value}.yaml; {hint}"
                                      f"choose one of {', '.join(groups[name])}")
            continue
        node, path = cfg, []
        for part in name.split("."):
            if not isinstance(node, DictConfig):
                break  # inside a list or a value: Hydra says what is wrong
            if part not in node.keys():  # `in` is False for a mandatory (???) value
                parent = ".".join(path)
                keys = sorted(str(k) for k in node.keys())
                near = difflib.get_close_matches(part, keys, n=3, cutoff=0.5)
                hint = f"did you mean {' or '.join(f'{parent}.{k}' if parent else k for k in near)}? " if near else ""
                where = f"{parent} has" if parent else "the config has"
                raise ConfigError(f"{name} is not a setting: {where} no key {part!r}; {hint}"
                                  f"its keys: {', '.join(keys)}")
            node = node._get_node(part)  # the node itself: reading a mandatory (???) value would raise
            path.append(part)


def jobs_of(overrides) -> list[list[str]]:
    """The command line's jobs, enough to check each value once: the first value of every sweep, and
    each other value of a sweep with the others' first."""
    options = [[override.get_key_element()] if override.is_delete() and override.value() is None
               else [f"{override.get_key_element()}={v}" for v in _values(override)] for override in overrides]
    base = [values[0] for values in options]
    return [base] + [base[:i] + [other] + base[i + 1:] for i, values in enumerate(options) for other in values[1:]]


def preflight(argv: list[str], config_name: str, entrypoint: str, conf_dir: str) -> None:
    """Check the command line of ``entrgi.run``/``entrgi.train`` before Hydra starts; exit with one line."""
    import sys

    try:
        check_command_line(argv, config_name, entrypoint, conf_dir)
    except ConfigError as error:
        sys.exit(f"entrgi: error: {error}")


def check_command_line(argv: list[str], config_name: str, entrypoint: str, conf_dir: str) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = _overrides(argv)
    if overrides is None:
        return
    groups = group_options(Path(conf_dir))
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(conf_dir, version_base="1.3"):
            mine = [o for o in overrides if o.key_or_group.split(".")[0].split("/")[0] != "hydra"]
            choices = [o for o in mine if o.key_or_group in groups]
            # the group options first: a misspelled option fails here in one line, not in Hydra's compose
            check_names(choices, groups, None)
            try:
                bases = [compose(config_name, overrides=job) for job in jobs_of(choices)]
            except Exception:  # noqa: BLE001 -- what Hydra itself refuses, Hydra says
                return
            rest = [o for o in mine if o not in choices]
            # a method's or schedule's setting needs only one swept choice that has it (the sweeper gives it
            # to those jobs alone); any other key every job's config must have
            some = [o for o in rest if o.key_or_group.startswith(GROUP_SETTINGS)
                    and any(has_setting(cfg, o.key_or_group) for cfg in bases)]
            # a method's or schedule's setting no swept choice has: the closest among all of theirs
            union = OmegaConf.merge(*(OmegaConf.to_container(cfg) for cfg in bases))
            check_names([o for o in rest if o not in some and o.key_or_group.startswith(GROUP_SETTINGS)], groups,
                        union)
            check_names([o for o in rest if not o.key_or_group.startswith(GROUP_SETTINGS)], groups, bases[0])
            for job in jobs_of(mine):
                try:
                    cfg = compose(config_name, overrides=applicable(job, {str(o.key_or_group) for o in some},
                                                                    config_name, compose))
                except Exception:  # noqa: BLE001
                    return
                check_job_config(cfg, entrypoint)
    finally:
        GlobalHydra.instance().clear()


GROUP_SETTINGS = ("method.", "schedule.")  # settings of a group's choice, as the resuming sweeper treats them


def applicable(job: list[str], group_settings: set[str], config_name: str, compose) -> list[str]:
    """``job`` without the group settings its own config lacks (the resuming sweeper leaves them out)."""
    if not group_settings:
        return job
    rest = [o for o in job if o.split("=", 1)[0] not in group_settings]
    cfg = compose(config_name, overrides=rest)
    return [o for o in job if o in rest or has_setting(cfg, o.split("=", 1)[0])]


def has_setting(cfg: DictConfig, key: str) -> bool:
    """Whether the dotted ``key`` is in ``cfg``, a mandatory (???) value included."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node.keys():
            return False
        node = node._get_node(part)
    return True


def check_job_config(cfg: DictConfig, entrypoint: str) -> None:
    """One composed job: the table, the objects that validate themselves, the files it will read."""
    from entrgi.from_config import build_method, load_prompts, model_attention, shard_of
    from entrgi.sampling.sampler import SamplerConfig, check_structure

    validate(cfg, entrypoint)
    check_structure(SamplerConfig(**cfg.sampler), model_attention(cfg))  # the block modes against the model's
    build_method(cfg)
    check_model_files(cfg)
    if entrypoint == "train":
        check_lora(cfg)
    for group in ("benchmark", "train_prompts") if entrypoint == "train" else ("benchmark",):
        if cfg[group].source in ("package", "jsonl"):  # local files, cheap to read: their rows and ids
            prompts = load_prompts(cfg, group)
            if entrypoint == "run":
                shard_of(prompts, cfg.shard.index, cfg.shard.count)


def check_lora(cfg: DictConfig) -> None:
    """LoRA targets set by hand, against the model's module names, from its config alone (a local
    checkpoint; the family's own targets need no check)."""
    lora, path = cfg.train.lora, Path(str(cfg.model.path)).expanduser()
    if not (lora.target_modules or lora.get("target_parameters")) or not path.is_dir():
        return
    from entrgi.models.loaders import family, network_skeleton
    from entrgi.training.lora import check_lora_targets

    skeleton = network_skeleton(str(path), cfg.model.loader, cfg.model.trust_remote_code)
    check_lora_targets(lora, skeleton, family(cfg.model.loader))


def check_model_files(cfg: DictConfig) -> None:
    """Local model directories: a checkpoint's files, each safetensors file whole."""
    from entrgi.models.loading import check_checkpoint_dir

    for what in ("model", "reward"):
        path = Path(str(cfg[what].path)).expanduser()
        if path.is_dir():
            check_checkpoint_dir(path, what)


# -- the training extra ----------------------------------------------------------------------------------

TRAIN_EXTRA = ("accelerate", "trl", "peft", "datasets")


def check_train_extra() -> None:
    """``python -m entrgi.train`` without its packages: one line with the install command."""
    missing = [name for name in TRAIN_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        import sys

        sys.exit(f"entrgi: error: post-training needs {', '.join(missing)} (the [train] extra); "
                 f"install it with pip install -e '.[train]' (or pip install 'entrgi[train]')")

