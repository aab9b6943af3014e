"""The fast paths of a guided step give the samples of the reference paths, and the step options work."""

import pytest
import torch

from entrgi.errors import ConfigError
from entrgi.sampling.guidance import RewardGuidance, guided_steps
from entrgi.sampling.rng import row_key
from entrgi.sampling.sampler import SamplerConfig, generate
from entrgi.sampling.schedules import make_schedule

PROMPTS = ["What does `os.path.join` do?", "What does `math.sqrt` do?"]
CFG = SamplerConfig(gen_length=12, steps=4)


def guided_generate(tiny_stack, cache_prefix=True, steps=None, lr=0.5):
    dllm, reward = tiny_stack
    bridge = reward.bridge(dllm.tokenizer, dllm.vocab_size)
    texts = [p for p in PROMPTS for _ in range(2)]
    prompt_ids = [ids for ids in dllm.encode_prompts(PROMPTS) for _ in range(2)]
    keys = [row_key(0, p, k) for p in PROMPTS for k in range(2)]
    guide = RewardGuidance(reward, bridge.table, reward.context(texts, cache_prefix=cache_prefix),
                           make_schedule("entropy"), CFG, torch.tensor(dllm.eos_ids), inner_steps=2, lr=lr,
                           steps=steps)
    return generate(dllm, prompt_ids, keys, CFG, guide)


def test_prefix_cache_and_fused_adam_give_the_reference_samples(tiny_stack, monkeypatch):
    fast = guided_generate(tiny_stack, cache_prefix=True)

    reference_adam = torch.optim.Adam

    def unfused_adam(params, **kwargs):
        kwargs.pop("fused", None)
        return reference_adam(params, foreach=False, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", unfused_adam)
    reference = guided_generate(tiny_stack, cache_prefix=False)
    assert torch.equal(fast.tokens, reference.tokens)
    for a, b in zip(fast.trace, reference.trace):
        torch.testing.assert_close(a["guided_reward"], b["guided_reward"], atol=1e-5, rtol=1e-5)


def test_guidance_changes_the_samples(tiny_stack):
    # the test above would pass vacuously if guidance did nothing
    guided = guided_generate(tiny_stack, lr=5.0)
    unguided = guided_generate(tiny_stack, steps=set())
    assert not torch.equal(guided.tokens, unguided.tokens)


def test_guided_steps_every_and_window():
    assert guided_steps(8) is None
    assert guided_steps(8, every=2) == {0, 2, 4, 6}
    assert guided_steps(8, window=(0, 0.5)) == {0, 1, 2, 3}
    assert guided_steps(8, every=3, window=(0.25, 1)) == {3, 6}
    with pytest.raises(ConfigError, match="method.every"):
        guided_steps(8, every=0)
    with pytest.raises(ConfigError, match="method.window"):
        guided_steps(8, window=(0.5, 0.2))


def test_only_the_chosen_steps_are_guided(tiny_stack):
    out = guided_generate(tiny_stack, steps=guided_steps(CFG.steps, every=2))
    guided = [t["step"] for t in out.trace if "guided_reward" in t]
    assert guided and all(step % 2 == 0 for step in guided)
    assert len(guided) < len(out.trace)
