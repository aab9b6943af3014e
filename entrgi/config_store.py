"""What ``conf/`` takes from the code: the config store's nodes of defaults and the resolvers.

Hydra finds these on its own: the search-path plugin ``hydra_plugins/entrgi_hydra/config_registration.py``
calls :func:`register` whenever a config is composed from entrgi's ``conf/`` (``python -m entrgi.run``, a
notebook's ``compose(config_name="config")``). The entrypoints call it too, at import, for processes
that unpickle a job without composing (a launcher's workers). Idempotent.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from entrgi.bookkeeping.settings import adapter_name, digest, job_name, job_settings, join_name, safe_name


def train_name(cfg: DictConfig) -> str:
    """A training job's directory name: recipe, training prompts, seed and a digest of its settings."""
    return f"{cfg.train.recipe}_{cfg.train_prompts.name}_s{cfg.seed}_{digest(job_settings(cfg))[:8]}"


def register_resolvers() -> None:
    """The config's resolvers: ``${asset:name}`` (a packaged model), ``${entrgi_job_name:}`` (a job's
    sweep subdirectory), ``${entrgi_train_name:}`` (a training run's directory), ``${entrgi_safe_name:text}``
    (:func:`safe_name`), ``${entrgi_join:a,b}`` (:func:`join_name`), ``${entrgi_adapter_name:path}``
    (:func:`adapter_name`) and ``${entrgi_or:a,b}`` (a unless it is null)."""
    from entrgi.evaluation.benchmarks import ASSETS

    OmegaConf.register_new_resolver("asset", lambda name: str(ASSETS / name), replace=True)

    def job_name_of_root(*, _root_):
        return job_name(_root_)

    OmegaConf.register_new_resolver("entrgi_job_name", job_name_of_root, replace=True)
    OmegaConf.register_new_resolver("entrgi_train_name", lambda *, _root_: train_name(_root_), replace=True)
    OmegaConf.register_new_resolver("entrgi_safe_name", safe_name, replace=True)
    OmegaConf.register_new_resolver("entrgi_join", join_name, replace=True)
    OmegaConf.register_new_resolver("entrgi_adapter_name", adapter_name, replace=True)
    OmegaConf.register_new_resolver("entrgi_or", lambda value, default: default if value is None else value,
                                    replace=True)


def config_defaults(cls) -> dict:
    """The settings a dataclass takes from the config, with their defaults (fields marked
    ``metadata={"config": False}`` are passed in by the code, not set in ``conf/``)."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("config", True):
            continue
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = None
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def benchmark_defaults() -> dict:
    """Every benchmark setting a ``conf/benchmark`` file may leave out, with the loader's defaults."""
    import inspect

    from entrgi.evaluation.benchmarks import load_benchmark, truncate_prompts

    set_by_each = ("name", "source", "path", "seed", "prompts", "tokenizer")
    return {name: param.default for fn in (load_benchmark, truncate_prompts)
            for name, param in inspect.signature(fn).parameters.items()
            if name not in set_by_each and param.default is not inspect.Parameter.empty}


def register_defaults() -> None:
    """Each default is written once, in the code that takes it: the config's ``sampler`` node and each
    method family (``method/family/<family>``, what ``conf/method/*.yaml`` build on) come from their
    dataclasses, the ``benchmark`` node's defaults from the loader's signature."""
    from hydra.core.config_store import ConfigStore

    from entrgi.methods import families
    from entrgi.sampling.sampler import SamplerConfig

    store = ConfigStore.instance()
    store.store(name="sampler_defaults", node={"sampler": config_defaults(SamplerConfig)})
    store.store(name="benchmark_defaults", node=benchmark_defaults())  # placed with @benchmark
    for family, cls in families().items():
        store.store(group="method/family", name=family, node={"family": family, **config_defaults(cls)})


def register() -> None:
    """Everything ``conf/`` needs before it composes and resolves."""
    register_resolvers()
    register_defaults()
