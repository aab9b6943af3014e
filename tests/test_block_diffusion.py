"""Block diffusion: block-causal attention with its exact KV cache, and the sampler's block modes."""

import dataclasses

import pytest
import torch
from conftest import sampled_together_and_apart

from entrgi.evaluation.benchmarks import Prompt
from entrgi.methods import make_method
from entrgi.methods.base import SamplingSetup
from entrgi.models.attention import AttentionStructure
from entrgi.models.loaders import load_diffusion_lm
from entrgi.sampling.sampler import SamplerConfig, generate

GRADIENT = {"name": "entrgi", "family": "gradient", "inner_steps": 2, "lr": 0.5, "every": 1, "window": None}


@pytest.fixture(scope="module")
def block_causal_dream(dream_dir):
    """The Dream-format stand-in (shifted logits) run as a block-causal model with blocks of 4."""
    dllm = load_diffusion_lm(str(dream_dir), shift_logits=True, loader="dream", device="cpu", dtype="float32")
    return dataclasses.replace(dllm, attention=AttentionStructure("block_causal", 4))


def canvas(dllm, length, seed=0):
    prompt_ids = dllm.encode_prompts(["Hi", "What does `math.sqrt` return for a negative number?"])
    ids, mask = dllm.pad_prompts(prompt_ids)
    response = torch.randint(0, 1000, (len(prompt_ids), length), generator=torch.Generator().manual_seed(seed))
    return torch.cat([ids, response], 1), torch.cat([mask, torch.ones_like(response)], 1), ids.shape[1]


def test_a_block_causal_position_does_not_see_later_blocks(block_causal_dream):
    dllm = block_causal_dream
    x, attention, P = canvas(dllm, 12)
    changed = x.clone()
    changed[:, P + 8:] = 7  # the third block only
    before, after = dllm.logits(x, attention, start=P), dllm.logits(changed, attention, start=P)
    assert torch.equal(before[:, :8], after[:, :8])
    assert not torch.allclose(before[:, 8:], after[:, 8:])  # ... which sees its own block


def test_the_exact_cache_gives_the_full_recompute_of_the_canvas(block_causal_dream):
    dllm = block_causal_dream
    x, attention, P = canvas(dllm, 12)
    full = dllm.logits(x, attention, start=P)
    _, cache = dllm.cached_logits(x, attention, P, slice(0, P), keep=torch.ones(P, dtype=torch.bool))
    for block in range(3):  # each block from the prompt's and the earlier blocks' cached keys and values
        query = slice(P + 4 * block, P + 4 * block + 4)
        columns = torch.tensor([[0, 3], [1, 2]])
        logits, cache = dllm.cached_logits(x, attention, P, query, cache, columns=columns,
                                           keep=torch.ones(cache.columns.numel() + 4, dtype=torch.bool))
        expected = full[:, 4 * block:4 * block + 4].gather(1, columns[..., None].expand(-1, -1, full.shape[-1]))
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


MODES = {  # the sampler's block modes on the tiny model (L = 8, blocks of 4)
    "prefix": dict(cache="prefix"),
    "dual": dict(cache="dual"),
    "threshold": dict(threshold=0.3),
    "dual+threshold": dict(cache="dual", threshold=0.3),
    "block_causal+threshold": dict(threshold=0.3),
}
METHODS = {
    "bon": {"name": "bon", "family": "unguided"},
    "expectation": {**GRADIENT, "name": "expectation"},
    "aps": {**GRADIENT, "name": "aps"},
    "entrgi": GRADIENT,
    "fk": {"name": "fk", "family": "fk", "lam": 10.0, "resample_every": 1},
    "svdd": {"name": "svdd", "family": "svdd", "num_candidates": 2},
    "rws": {"name": "rws", "family": "rws", "gamma": 2.0},
}
SCHEDULES = {"expectation": {"name": "constant", "value": 0.0}, "aps": {"name": "constant", "value": 1.0}}


def in_mode(dllm, mode):
    return dataclasses.replace(dllm, attention=AttentionStructure("block_causal", 4)) if "block_causal" in mode \
        else dllm


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_method_runs_under_every_mode_and_a_row_s_samples_do_not_depend_on_its_batch(tiny_stack, method, mode):
    dllm, reward = tiny_stack
    prompts = [Prompt(str(i), f"What does `math.{f}` do?") for i, f in enumerate(["sqrt", "gcd", "exp"])]
    sampler = SamplerConfig(gen_length=8, steps=4, block_length=4, **MODES[mode])
    setup = SamplingSetup.for_prompts(in_mode(dllm, mode), reward, prompts, sampler, num_samples=2)
    made = make_method(METHODS[method], SCHEDULES.get(method, {"name": "entropy"}))
    together, _ = sampled_together_and_apart(made, setup, prompts)
    assert all(len(r.responses) == 2 for r in together)
    cost = together[0].cost
    assert 0 < cost["dllm_columns"] and 1 <= cost["denoising_steps_per_sample"] <= 4
    if method in ("expectation", "aps", "entrgi"):
        assert cost["guided_steps_per_sample"] == cost["denoising_steps_per_sample"]
        assert any(v is not None for v in together[0].trace["guided_reward"])
    if method == "svdd":  # its look-ahead's dLLM work is counted beside the sampler's
        assert cost["lookahead_columns"] > 0 and cost["lookahead_head_columns"] > 0


class ConfidentDLLM:
    """A stand-in dLLM whose logits are fixed per row and response position: ``[N, L, V]``."""

    mask_id, eos_ids, pad_id, vocab_size = 5, [4], 0, 6
    device = torch.device("cpu")
    attention = AttentionStructure()

    def __init__(self, response_logits):
        self.response_logits, self.rows_seen = response_logits, []

    def pad_prompts(self, prompt_ids, width=None):
        return torch.tensor(prompt_ids), torch.ones(len(prompt_ids), len(prompt_ids[0]), dtype=torch.long)

    def check_length(self, length):
        pass

    def logits(self, input_ids, attention_mask, start=0, columns=None):
        rows = [int(r) for r in input_ids[:, 0]]  # each row's prompt names it
        self.rows_seen.append(rows)
        logits = self.response_logits[rows]
        return logits.gather(1, columns[..., None].expand(-1, -1, self.vocab_size))


def test_the_threshold_commits_every_confident_position_and_a_finished_row_does_no_work():
    # row 0: every position sure of token 1; row 1: only position 2 is, the others are spread out
    logits = torch.zeros(2, 4, 6)
    logits[0, :, 1] = 30.0
    logits[1, 2, 3] = 30.0
    dllm = ConfidentDLLM(logits)
    cfg = SamplerConfig(gen_length=4, steps=4, threshold=0.9, top_p=1.0, eos_last=False, temperature=1.0)
    out = generate(dllm, [[0, 0], [1, 1]], [7, 8], cfg)
    assert out.trace[0]["committed"].tolist() == [4, 1]  # all of row 0's; row 1's one sure position
    assert out.tokens[0].tolist() == [1, 1, 1, 1] and out.tokens[1, 2] == 3
    assert dllm.rows_seen == [[0, 1], [1], [1], [1]]  # row 0 sat out the later steps
    assert out.row_costs["denoising_steps"].tolist() == [1, 4]
    assert [t["committed"].tolist() for t in out.trace[1:]] == [[0, 1], [0, 1], [0, 1]]


def test_a_row_s_threshold_samples_do_not_depend_on_the_rows_that_finish_before_it(tiny_stack):
    dllm = tiny_stack[0]
    cfg = SamplerConfig(gen_length=16, steps=16, block_length=8, threshold=0.3)
    prompts = dllm.encode_prompts(["What does `math.sqrt` do?", "Name a prime.", "Say hi.", "Count to 3."])
    width = max(map(len, prompts))
    together = generate(dllm, prompts, [1, 2, 3, 4], cfg, prompt_width=width)
    steps = together.row_costs["denoising_steps"]
    assert len(set(steps.tolist())) > 1  # rows finished their blocks at different steps
    for i in range(4):
        alone = generate(dllm, prompts[i:i + 1], [i + 1], cfg, prompt_width=width)
        assert torch.equal(alone.tokens[0], together.tokens[i])
        assert alone.row_costs["denoising_steps"].item() == steps[i]


def test_a_block_causal_model_steps_only_the_current_block_over_its_cache(tiny_stack):
    dllm = dataclasses.replace(tiny_stack[0], attention=AttentionStructure("block_causal", 4))
    prompts = dllm.encode_prompts(["What does `math.sqrt` do?"])
    out = generate(dllm, prompts * 2, [1, 2], SamplerConfig(gen_length=16, steps=8))
    assert (out.tokens != dllm.mask_id).all()
    P = len(prompts[0])
    # the prompt once, each of the 4 blocks' 2 steps over its 4 columns, and the 3 first blocks once committed
    assert out.row_costs["dllm_columns"].tolist() == [P + 4 * 2 * 4 + 3 * 4] * 2


@pytest.mark.parametrize("keep", ["prefix", "dual"])
def test_an_approximate_cache_of_an_unchanged_canvas_gives_the_full_forward(tiny_stack, keep):
    # the caches approximate only through what changes after their refresh: on the same canvas they are exact
    dllm = tiny_stack[0]
    x, attention, P = canvas(dllm, 12)
    full = dllm.logits(x, attention, start=P)
    start, end = P + 4, P + (8 if keep == "dual" else 12)
    every = torch.arange(P + 12)
    kept = (every < start) | ((every >= end) if keep == "dual" else torch.zeros_like(every, dtype=torch.bool))
    _, cache = dllm.cached_logits(x, attention, P, slice(0, P + 12), keep=kept, hidden_at=start - 1)
    logits, _ = dllm.cached_logits(x, attention, P, slice(start, end), cache)
    torch.testing.assert_close(logits, full[:, 4:end - P], atol=1e-4, rtol=1e-4)
