"""Methods as objects, the sampler's step hook, and schedules that read the diffusion time."""

import math
from dataclasses import dataclass

import pytest
import torch
from conftest import make_guide, sampled_together_and_apart

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.methods import FAMILIES, make_method, register
from entrgi.methods.base import Method, SamplingSetup
from entrgi.sampling.sampler import SamplerConfig, StepUpdate, commit_plan, generate
from entrgi.sampling.schedules import SCHEDULES, make_schedule

CFG = SamplerConfig(gen_length=12, steps=6)
KEYS = [11, 12, 13, 14]


def four_rows(dllm):
    return dllm.encode_prompts(["What does `os.path.join` do?"]) * 4


class Resample:
    """At step ``at``: reorder rows by ``order`` (optionally with new keys); tags each row in the trace."""

    def __init__(self, at, order, row_keys=None):
        self.at, self.order, self.row_keys = at, torch.tensor(order), row_keys

    def __call__(self, state):
        tag = {"row": torch.arange(4, dtype=torch.float32)}
        if state.step.index != self.at:
            return StepUpdate(stats=tag)
        keys = None if self.row_keys is None else torch.tensor(self.row_keys)
        return StepUpdate(order=self.order, row_keys=keys, stats=tag)


def test_a_resampling_hook_moves_whole_particles_with_their_random_streams(tiny_stack):
    dllm = tiny_stack[0]
    plain = generate(dllm, four_rows(dllm), KEYS, CFG)
    reversed_ = generate(dllm, four_rows(dllm), KEYS, CFG, Resample(at=2, order=[3, 2, 1, 0]))
    # each particle keeps its tokens and its random stream: the same samples, in the new order
    assert torch.equal(reversed_.tokens, plain.tokens.flip(0))
    assert reversed_.ancestors.tolist() == [3, 2, 1, 0]
    # the trace follows the lineage: before the resampling, final row 0 was row 3
    assert reversed_.trace[0]["row"].tolist() == [3, 2, 1, 0]
    assert reversed_.trace[-1]["row"].tolist() == [0, 1, 2, 3]
    assert plain.ancestors is None


def test_duplicated_particles_share_their_past_and_diverge_with_fresh_streams(tiny_stack):
    dllm = tiny_stack[0]
    resample = Resample(at=3, order=[0, 0, 1, 1], row_keys=[21, 22, 23, 24])
    seen = {}

    def hook(state):
        if state.step.index == resample.at:
            seen["tokens"] = state.tokens.clone()
        return resample(state)

    out = generate(dllm, four_rows(dllm), KEYS, CFG, hook)
    past = seen["tokens"]
    committed = past != dllm.mask_id
    assert committed.any() and not committed.all()
    # each copy keeps what its ancestor had committed before the resampling
    for row, ancestor in enumerate([0, 0, 1, 1]):
        assert torch.equal(out.tokens[row][committed[ancestor]], past[ancestor][committed[ancestor]])
    assert not torch.equal(out.tokens[0], out.tokens[1])  # fresh streams: the two copies diverge


def test_the_hook_sees_the_diffusion_time_of_each_committing_step_from_one_down(tiny_stack):
    dllm = tiny_stack[0]
    times = []
    generate(dllm, four_rows(dllm), KEYS, CFG, lambda state: times.append(state.step.t))
    assert times[0] == 1.0 and all(a > b > 0 for a, b in zip(times, times[1:]))
    assert times == [s.t for s in commit_plan(CFG.gen_length, CFG.steps, CFG.block_length, CFG.eps) if s.count > 0]


def test_a_time_dependent_schedule_weights_each_guided_step_by_its_time(tiny_stack):
    dllm = tiny_stack[0]
    prompt = "What does `math.sqrt` do?"
    guide = make_guide(tiny_stack, [prompt] * 2, CFG, make_schedule("linear_time", start=0.2, end=0.9),
                       inner_steps=1, lr=0.5)
    out = generate(dllm, dllm.encode_prompts([prompt]) * 2, [1, 2], CFG, guide)
    times = {step.index: step.t for step in commit_plan(CFG.gen_length, CFG.steps)}
    for entry in out.trace:
        expected = 0.9 + (0.2 - 0.9) * times[entry["step"]]
        torch.testing.assert_close(entry["entropy_weight"], torch.full((2,), expected))


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_gives_weights_in_the_unit_interval(name):
    schedule = make_schedule(name)
    logits = torch.randn(3, 5, 64) * torch.tensor([0.1, 1.0, 10.0])[:, None, None]
    for t in (1.0, 0.5, 1e-3):
        w = schedule(logits, t)
        assert w.shape == (3, 5) and bool(((w >= 0) & (w <= 1)).all())


@pytest.mark.parametrize("name,params,key", [("power", {"gamma": -1}, "schedule.gamma"),
                                             ("power", {"gamma": 0}, "schedule.gamma"),
                                             ("constant", {"value": 1.5}, "schedule.value"),
                                             ("linear_time", {"end": 2}, "schedule.end"),
                                             ("power", {"gama": 2}, "gamma")])
def test_schedule_parameters_that_could_leave_the_unit_interval_are_refused(name, params, key):
    with pytest.raises(ConfigError, match=key):
        make_schedule(name, **params)


GRADIENT = {"name": "entrgi", "family": "gradient", "inner_steps": 3, "lr": 0.5, "every": 1, "window": None}


@pytest.mark.parametrize("settings,key", [({**GRADIENT, "inner_steps": 0}, "method.inner_steps"),
                                          ({**GRADIENT, "lr": float("nan")}, "method.lr"),
                                          ({**GRADIENT, "lr": -0.1}, "method.lr"),
                                          ({**GRADIENT, "family": "nope"}, "method.family"),
                                          ({**GRADIENT, "momentum": 0.9}, "momentum"),
                                          ({"name": "bon", "family": "unguided", "answer": "worst"}, "method.answer")])
def test_bad_method_settings_fail_with_the_key_to_fix(settings, key):
    with pytest.raises(ConfigError, match=key):
        make_method(settings, {"name": "entropy"})


def test_a_new_method_family_is_one_registered_class(tiny_stack):
    @register("test_first_of_k")
    @dataclass
    class FirstOfK(Method):
        name: str = "first"

        def answer_index(self, result):
            return 0

    try:
        method = make_method({"name": "first", "family": "test_first_of_k"})
        dllm, reward = tiny_stack
        prompts = [Prompt("a", "What does `math.sqrt` do?"), Prompt("b", "What does `os.getcwd` do?")]
        setup = SamplingSetup.for_prompts(dllm, reward, prompts, SamplerConfig(gen_length=8, steps=4), num_samples=2)
        records = method.sample(setup, prompts)
        assert [r.id for r in records] == ["a", "b"] and all(len(r.responses) == 2 for r in records)
        assert method.answer_index(records[0]) == 0 and records[0].cost["dllm_forwards"] > 0
    finally:
        FAMILIES.pop("test_first_of_k")


def test_a_guided_methods_samples_and_rewards_do_not_depend_on_the_batch(tiny_stack):
    dllm, reward = tiny_stack
    prompts = [Prompt(str(i), f"What does `math.{f}` do?") for i, f in enumerate(["sqrt", "gcd", "exp"])]
    method = make_method(GRADIENT, {"name": "entropy"})
    setup = SamplingSetup.for_prompts(dllm, reward, prompts, SamplerConfig(gen_length=8, steps=4), num_samples=2)
    together, apart = sampled_together_and_apart(method, setup, prompts)
    assert sum((r.rewards for r in together), []) == pytest.approx(sum((r.rewards for r in apart), []), abs=1e-5)
    assert all(r.trace["guided_reward"] for r in together) and not math.isnan(together[0].top1_reward)

