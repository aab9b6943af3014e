import itertools
import re

import pytest
import torch

from entrgi.errors import ConfigError
from entrgi.sampling.rng import RowRandom, row_key
from entrgi.sampling.sampler import (
    SamplerConfig,
    StepUpdate,
    commit_plan,
    generate,
    sample_nucleus,
    sampling_probs,
    top_p_top_k_filter,
)


@pytest.mark.parametrize("L,T,block", [(128, 128, None), (64, 32, None), (64, 64, 16), (32, 7, None), (30, 9, 10)])
def test_commit_plan_commits_every_position_once_and_all_at_the_last_step(L, T, block):
    plan = commit_plan(L, T, block)
    assert len(plan) == T
    assert sum(s.count for s in plan) == L
    block = block or L
    for start in range(0, L, block):
        steps = [s for s in plan if s.block_start == start]
        assert sum(s.count for s in steps) == block  # blocks are filled one after another
        assert steps[-1].count == block - sum(s.count for s in steps[:-1])
    # masked counts are consistent with what was committed before
    remaining = L
    for s in plan:
        assert s.num_masked == remaining
        remaining -= s.count


@pytest.mark.parametrize("L,T,block,first", [(16, 8, 4, 1), (16, 8, 4, 3), (128, 128, 4, 2), (128, 32, 32, 5)])
def test_a_plan_whose_blocks_start_inside_the_first_commits_its_short_blocks_at_a_whole_block_s_pace(L, T, block,
                                                                                                     first):
    # a block-causal model whose prompt ends inside a block: blocks [0, first), then whole blocks, the last cut at L
    plan = commit_plan(L, T, block, first_block=first)
    whole = commit_plan(block, T * block // L, block)  # the steps of one whole block
    edges = [0, *range(first, L, block), L]
    assert [(s.block_start, s.block_end) for s in plan if s.last] == list(itertools.pairwise(edges))
    for start, end in itertools.pairwise(edges):
        steps = [s for s in plan if s.block_start == start]
        assert sum(s.count for s in steps) == end - start and steps[-1].last
        # a short block commits what a whole block's steps would, until its columns are committed
        assert [s.count for s in steps[:-1]] == [s.count for s in whole[:len(steps) - 1]]
        assert [s.t for s in steps] == [s.t for s in whole[:len(steps)]]
    remaining = L
    for s in plan:
        assert s.num_masked == remaining
        remaining -= s.count


def test_commit_plan_follows_the_time_grid():
    # from t to s, floor(n * (1 - s / t)) positions: the first step of L=T=128 commits none
    plan = commit_plan(128, 128)
    assert plan[0].count == 0 and plan[1].count == 1


def test_commit_plan_rejects_blocks_that_do_not_divide():
    with pytest.raises(ValueError, match="block_length"):
        commit_plan(64, 32, 24)
    with pytest.raises(ValueError, match="steps"):
        commit_plan(64, 30, 16)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    kept = torch.isfinite(top_p_top_k_filter(probs.log(), top_p=0.7))
    assert kept.tolist() == [True, True, False, False]
    kept = torch.isfinite(top_p_top_k_filter(probs.log(), top_p=0.9))
    assert kept.tolist() == [True, True, True, False]
    kept = torch.isfinite(top_p_top_k_filter(probs.log(), top_p=0.1))
    assert kept.tolist() == [True, False, False, False]
    kept = torch.isfinite(top_p_top_k_filter(probs.log(), top_k=2))
    assert kept.tolist() == [True, True, False, False]


@pytest.mark.parametrize("top_p,top_k", [(0.8, None), (0.95, 5), (1.0, None)])
def test_nucleus_sampler_draws_from_the_filtered_distribution(top_p, top_k):
    torch.manual_seed(0)
    V, rows = 9, 40000
    logits = torch.randn(V) * 2
    cfg = SamplerConfig(temperature=0.7, top_p=top_p, top_k=top_k)
    rng = RowRandom([row_key(0, "p", i) for i in range(rows)])
    tokens = sample_nucleus(logits.expand(rows, 1, V), cfg, lambda r: rng.uniform((1,), 0, 1, r)).flatten()
    frequency = torch.bincount(tokens, minlength=V).float() / rows
    expected = sampling_probs(logits, cfg)
    assert torch.all(frequency[expected == 0] == 0)  # never outside the nucleus
    torch.testing.assert_close(frequency, expected, atol=0.01, rtol=0)


def test_row_randomness_does_not_depend_on_the_batch():
    keys = [row_key(1, "a", 0), row_key(1, "b", 3)]
    together = RowRandom(keys).uniform((5, 3), 7, 1)
    alone = RowRandom(keys[1:]).uniform((5, 3), 7, 1)
    torch.testing.assert_close(together[1], alone[0])
    assert not torch.equal(RowRandom(keys).uniform((5,), 8, 1), RowRandom(keys).uniform((5,), 7, 1))


class RecordingDLLM:
    """Wraps a DiffusionLM and records the response it sees at every forward."""

    def __init__(self, dllm):
        self.dllm, self.seen = dllm, []

    def __getattr__(self, name):
        return getattr(self.dllm, name)

    def logits(self, input_ids, attention_mask, start=0, columns=None):
        self.seen.append(input_ids.clone())
        return self.dllm.logits(input_ids, attention_mask, start, columns)


def test_blocks_are_filled_left_to_right(tiny_stack):
    dllm = RecordingDLLM(tiny_stack[0])
    cfg = SamplerConfig(gen_length=16, steps=8, block_length=4)
    prompt = dllm.encode_prompts(["What does `os.path.join` do?"])
    out = generate(dllm, prompt * 2, [1, 2], cfg)
    assert (out.tokens != dllm.mask_id).all()
    for x in dllm.seen:
        masked = (x[:, -16:] == dllm.mask_id).view(2, 4, 4)
        started = ~masked.all(-1)  # blocks with a committed token
        finished = ~masked.any(-1)
        # a block starts only after every block before it is finished
        for b in range(1, 4):
            assert torch.all(~started[:, b] | finished[:, :b].all(-1))


def test_every_remasking_strategy_fills_the_response(tiny_stack):
    dllm = tiny_stack[0]
    prompt = dllm.encode_prompts(["What does `math.sqrt` do?"])
    for alg in ("origin", "maskgit_plus", "topk_margin", "entropy"):
        for alg_temp in (None, 0.5):
            out = generate(dllm, prompt * 2, [3, 4], SamplerConfig(gen_length=12, steps=6, alg=alg, alg_temp=alg_temp))
            assert (out.tokens != dllm.mask_id).all(), alg
            assert sum(t["committed"] for t in out.trace) == 12


class ScriptedDLLM:
    """A stand-in dLLM whose logits are fixed per response position: [L, V]."""

    mask_id, eos_ids, pad_id = 5, [4], 0
    device = torch.device("cpu")
    vocab_size = 6

    def __init__(self, response_logits):
        self.response_logits, self.seen = response_logits, []

    def pad_prompts(self, prompt_ids, width=None):
        return torch.tensor(prompt_ids), torch.ones(len(prompt_ids), len(prompt_ids[0]), dtype=torch.long)

    def check_length(self, length):
        pass

    def logits(self, input_ids, attention_mask, start=0, columns=None):
        self.seen.append(input_ids.clone())
        L = self.response_logits.shape[0]
        prompt = torch.zeros(input_ids.shape[0], input_ids.shape[1] - L, self.vocab_size)
        logits = torch.cat([prompt, self.response_logits.expand(input_ids.shape[0], -1, -1)], 1)[:, start:]
        return logits if columns is None else logits.gather(1, columns[..., None].expand(-1, -1, self.vocab_size))


@pytest.mark.parametrize("eos_last", [True, False])
def test_a_sampled_eos_is_committed_last(eos_last):
    # even positions: EOS, very confidently; odd positions: token 1, less confidently
    L = 8
    logits = torch.full((L, 6), -20.0)
    logits[0::2, 4] = 20.0
    logits[1::2, 1] = 3.0
    logits[1::2, 2] = 2.0
    dllm = ScriptedDLLM(logits)
    cfg = SamplerConfig(gen_length=L, steps=4, eos_last=eos_last, top_p=1.0)
    out = generate(dllm, [[0, 0]] * 2, [1, 2], cfg)
    assert (out.tokens[:, 0::2] == 4).all()
    first_commit = dllm.seen[1][:, -L:]  # the response after the first step
    per_row = commit_plan(L, 4)[0].count
    assert per_row >= 1
    assert (first_commit != dllm.mask_id).sum().item() == 2 * per_row
    assert (first_commit == 4).sum().item() == (0 if eos_last else 2 * per_row)


@pytest.mark.parametrize("setting,message", [
    ({"top_k": 0}, "sampler.top_k=0 must be >= 1, or null"),
    ({"top_k": -3}, "sampler.top_k=-3 must be >= 1"),
    ({"top_k": 2.5}, "sampler.top_k=2.5 must be an integer"),
    ({"alg_temp": -0.1}, "sampler.alg_temp=-0.1 must be >= 0, or null"),
    ({"alg_temp": float("nan")}, "sampler.alg_temp=nan must be >= 0"),
    ({"eps": 0.0}, "sampler.eps=0.0 must be in (0, 1)"),
    ({"eps": 1.0}, "sampler.eps=1.0 must be in (0, 1)"),
    ({"eps": "abc"}, "sampler.eps='abc' must be a number"),
    ({"temperature": float("nan")}, "sampler.temperature=nan must be > 0"),
    ({"block_length": 0}, "sampler.block_length=0 must be >= 1, or null"),
    ({"steps": 2.0}, "sampler.steps=2.0 must be an integer"),
])
def test_sampler_settings_outside_their_range_are_refused_naming_the_key(setting, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        SamplerConfig(**setting)
    SamplerConfig(top_k=1, alg_temp=0.0, eps=0.5, block_length=4, gen_length=8)  # the edges that are valid


class Proposing:
    """A hook that commits one of the step's proposals (``draw``), recording every step's proposals."""

    def __init__(self, draw, logits_scale=None):
        self.draw, self.logits_scale, self.proposals = draw, logits_scale, []

    def __call__(self, state):
        logits = None if self.logits_scale is None else state.logits * self.logits_scale
        self.proposals.append([state.propose(logits, draw=d) for d in (0, 1, 2)])
        return StepUpdate(next_tokens=self.proposals[-1][self.draw])


def test_proposing_the_sampler_s_own_draw_reproduces_the_unguided_step_bit_for_bit(tiny_stack):
    dllm = tiny_stack[0]
    cfg = SamplerConfig(gen_length=12, steps=6, block_length=6, alg_temp=0.5)
    prompt = dllm.encode_prompts(["What does `math.sqrt` do?", "Name a prime."])
    plain = generate(dllm, prompt, [3, 4], cfg)
    hook = Proposing(draw=0)
    assert torch.equal(generate(dllm, prompt, [3, 4], cfg, hook).tokens, plain.tokens)
    first = hook.proposals[0]
    assert not torch.equal(first[1], first[2])  # the draws are independent streams
    for proposal in first:  # each commits the planned number of positions of the first block
        assert ((proposal != dllm.mask_id).sum(-1) == commit_plan(12, 6, 6)[0].count).all()
        assert (proposal[:, 6:] == dllm.mask_id).all()


def test_a_hook_that_commits_other_proposals_keeps_each_row_keyed_to_itself(tiny_stack):
    dllm = tiny_stack[0]
    cfg = SamplerConfig(gen_length=8, steps=4)
    prompts = dllm.encode_prompts(["What does `math.sqrt` do?", "Name a prime.", "Say hi."])
    keys = [5, 6, 7]
    together = generate(dllm, prompts, keys, cfg, Proposing(draw=2, logits_scale=0.5), prompt_width=40)
    alone = generate(dllm, prompts[1:2], keys[1:2], cfg, Proposing(draw=2, logits_scale=0.5), prompt_width=40)
    assert torch.equal(together.tokens[1], alone.tokens[0])
    assert not torch.equal(together.tokens, generate(dllm, prompts, keys, cfg, prompt_width=40).tokens)
