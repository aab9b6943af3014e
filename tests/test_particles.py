"""Feynman-Kac particle steering (method=fk): potentials, resampling, and what it does to the samples."""

import pytest
import torch
from conftest import sampled_together_and_apart

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.methods import make_method
from entrgi.methods.unguided import best_of_k
from entrgi.methods.base import SamplingSetup
from entrgi.methods.particles import ParticleResampling, effective_particles, log_potential, particle_keys, resample
from entrgi.sampling.sampler import SamplerConfig, generate

FK = {"name": "fk", "family": "fk", "potential": "diff", "lam": 1.0, "resample_every": 1,
      "resampling": "systematic", "estimate": "argmax"}
CFG = SamplerConfig(gen_length=12, steps=6)
SMALL = SamplerConfig(gen_length=8, steps=4)
PROMPTS = [Prompt(str(i), f"Using the words file and {w}, say what `math.{f}` does.")
           for i, (w, f) in enumerate([("value", "sqrt"), ("return", "gcd"), ("number", "exp")])]


def test_potentials_on_hand_made_reward_traces():
    # two particles' lineages: rewards at resamplings 1, 2, 3
    trace = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 4.0]])
    assert log_potential("diff", trace).tolist() == [2.0 - 3.0, 4.0 - (-1.0)]
    assert log_potential("max", trace).tolist() == [3.0, 4.0]
    assert log_potential("sum", trace).tolist() == [6.0, 3.0]
    first = trace[:, :1]  # at the first resampling r_0 = 0: every potential is exp(lambda r_1)
    for kind in ("diff", "max", "sum"):
        assert log_potential(kind, first).tolist() == [1.0, 0.0]


def test_systematic_and_multinomial_resampling_on_hand_made_weights():
    log_w = torch.tensor([[0.5, 0.25, 0.25, 0.0]]).log()
    uniforms = torch.tensor([[0.1, 0.6, 0.7, 0.95]])
    # multinomial: slot j takes the particle whose cumulative weight [0.5, 0.75, 1, 1] first reaches u_j
    assert resample(log_w, uniforms, "multinomial").tolist() == [[0, 1, 1, 2]]
    # systematic: points (u_0 + j) / 4 = 0.025, 0.275, 0.525, 0.775
    assert resample(log_w, uniforms, "systematic").tolist() == [[0, 0, 1, 2]]
    # systematic keeps each particle floor(N w) or ceil(N w) times, whatever the offset
    weights = torch.tensor([0.45, 0.3, 0.2, 0.05])
    for u in torch.linspace(0.01, 0.99, 25):
        counts = torch.bincount(resample(weights.log()[None], torch.full((1, 4), u.item()), "systematic")[0],
                                minlength=4).double()
        assert bool(((counts >= (4 * weights).floor()) & (counts <= (4 * weights).ceil())).all())
    # multinomial draws each slot independently from the weights
    draws = resample(weights.log().expand(20000, 4), torch.rand(20000, 4), "multinomial")
    torch.testing.assert_close(torch.bincount(draws.flatten(), minlength=4).double() / draws.numel(),
                               weights.double(), atol=0.01, rtol=0)
    # equal weights keep every particle (both schemes); the effective particle count is N
    for scheme in ("systematic", "multinomial"):
        assert resample(torch.zeros(2, 4), uniforms.expand(2, 4), scheme).tolist() == [[0, 1, 2, 3]] * 2
    assert effective_particles(torch.zeros(1, 4)).item() == pytest.approx(4.0)


def test_copies_get_fresh_keys_from_their_ancestor_slot_and_step_whatever_the_batch():
    keys = torch.tensor([10, 11, 12, 13, 20, 21, 22, 23])
    order = torch.tensor([2, 2, 0, 0, 4, 5, 6, 7])  # prompt 0: particles 2 and 0 twice; prompt 1 untouched
    new = particle_keys(keys, order, 4, step=3)
    assert new[0] == 12 and new[2] == 10 and new[4:].tolist() == [20, 21, 22, 23]
    assert len(set(new[:4].tolist())) == 4  # the second copies diverge
    assert torch.equal(particle_keys(keys[:4], order[:4], 4, step=3), new[:4])  # no dependence on the batch
    assert not torch.equal(particle_keys(keys, order, 4, step=4)[:4], new[:4])  # another step, other keys


class OneHighReward:
    """A stand-in reward model: at its first call one row scores ``high``, every other score is 0."""

    def __init__(self, row: int, high: float = 100.0):
        self.row, self.high, self.calls = row, high, 0

    def score_texts(self, prompts, responses):
        self.calls += 1
        return [self.high if self.calls == 1 and i == self.row else 0.0 for i in range(len(responses))]


def test_resampling_keeps_the_particle_count_and_moves_whole_particles(tiny_stack):
    dllm = tiny_stack[0]
    prompt_ids = dllm.encode_prompts([PROMPTS[0].text]) * 4
    keys = [31, 32, 33, 34]
    plain = generate(dllm, prompt_ids, keys, CFG)
    seen = {}
    hook = ParticleResampling(dllm, OneHighReward(row=2), [PROMPTS[0].text] * 4, 4, CFG, "diff", 1.0,
                              resample_every=2)

    def watching(state):
        if state.step.index == 1:
            seen["tokens"] = state.tokens.clone()
        return hook(state)

    out = generate(dllm, prompt_ids, keys, CFG, watching)
    assert out.tokens.shape == plain.tokens.shape and out.ancestors.tolist() == [2, 2, 2, 2]
    # every copy starts from particle 2's committed tokens ...
    before = seen["tokens"][2]
    committed = before != dllm.mask_id
    assert committed.any()
    assert all(torch.equal(row[committed], before[committed]) for row in out.tokens)
    # ... the first copy keeps its random stream, so it ends exactly as particle 2 would unguided,
    assert torch.equal(out.tokens[0], plain.tokens[2])
    # and the other copies, with fresh streams, diverge
    assert len({tuple(row.tolist()) for row in out.tokens}) > 1
    # each row's lineage rewards moved with it: all copies remember particle 2's high first reward
    assert hook.rewards[None][:, 0].tolist() == [100.0] * 4
    ess = [t["effective_particles"] for t in out.trace if "effective_particles" in t]
    assert ess[0].tolist() == pytest.approx([1.0] * 4) and ess[1].tolist() == pytest.approx([4.0] * 4)


@pytest.mark.parametrize("resampling", ["systematic", "multinomial"])
def test_a_constant_potential_leaves_the_samples_of_best_of_k(tiny_stack, resampling):
    dllm, reward = tiny_stack
    setup = SamplingSetup.for_prompts(dllm, reward, PROMPTS[:2], SMALL, num_samples=3, seed=5)
    steered = make_method({**FK, "lam": 0.0, "resampling": resampling}).sample(setup, PROMPTS[:2])
    unguided = best_of_k().sample(setup, PROMPTS[:2])
    assert [r.responses for r in steered] == [r.responses for r in unguided]
    assert [r.best_index for r in steered] == [r.best_index for r in unguided]
    # its cost: N estimates scored at each of the 4 steps, then the N final answers
    assert [r.cost["reward_forwards"] for r in steered] == [3 * (4 + 1)] * 2
    assert steered[0].cost["dllm_forwards"] == unguided[0].cost["dllm_forwards"] and steered[0].cost["seconds"] > 0
    assert steered[0].trace["effective_particles"] == [pytest.approx(3.0)] * 4


def test_steered_samples_do_not_depend_on_the_batch(tiny_stack):
    dllm, reward = tiny_stack
    settings = {**FK, "lam": 2.0, "resampling": "multinomial", "estimate": "sample", "potential": "max"}
    method = make_method(settings)
    setup = SamplingSetup.for_prompts(dllm, reward, PROMPTS[:2], SMALL, num_samples=2)
    together, _ = sampled_together_and_apart(method, setup, PROMPTS[:2])
    # the particles were weighed unequally (resampled) at some step
    assert any(v < 2 - 1e-6 for r in together for v in r.trace["effective_particles"] if v is not None)


@pytest.mark.parametrize("change,key", [({"potential": "min"}, "method.potential"),
                                        ({"lam": -0.5}, "method.lam"),
                                        ({"lam": float("nan")}, "method.lam"),
                                        ({"resample_every": 0}, "method.resample_every"),
                                        ({"resampling": "stratified"}, "method.resampling"),
                                        ({"estimate": "mode"}, "method.estimate")])
def test_bad_fk_settings_fail_with_one_line_naming_the_key(change, key):
    with pytest.raises(ConfigError, match=key) as error:
        make_method({**FK, **change})
    assert "\n" not in str(error.value)


def test_fewer_than_one_particle_names_num_samples():
    setup = SamplingSetup(dllm=None, reward_model=None, sampler=SMALL, num_samples=0)
    with pytest.raises(ConfigError, match="num_samples=0") as error:
        make_method(FK).prepare(setup, PROMPTS)
    assert "\n" not in str(error.value)
