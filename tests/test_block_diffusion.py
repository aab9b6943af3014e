"""Block diffusion: block-causal attention with its exact KV cache, and the sampler's block modes."""

import dataclasses
import itertools

import pytest
import torch
from conftest import sampled_together_and_apart

from entrgi.bookkeeping.storage import ResultsLog
from entrgi.evaluation.benchmarks import Prompt
from entrgi.methods import make_method
from entrgi.methods.base import SamplingSetup, step_trace
from entrgi.models.attention import AttentionStructure
from entrgi.models.loaders import load_diffusion_lm
from entrgi.sampling.sampler import SamplerConfig, commit_plan, first_block, generate

GRADIENT = {"name": "entrgi", "family": "gradient", "inner_steps": 2, "lr": 0.5, "every": 1, "window": None}


@pytest.fixture(scope="module")
def block_causal_dream(dream_dir):
    """The Dream-format stand-in (shifted logits) run as a block-causal model with blocks of 4."""
    dllm = load_diffusion_lm(str(dream_dir), shift_logits=True, loader="dream", device="cpu", dtype="float32")
    return dataclasses.replace(dllm, attention=AttentionStructure("block_causal", 4))


def canvas(dllm, length, seed=0):
    """Two rows, left-padded prompts of different lengths and random response tokens."""
    prompt_ids = dllm.encode_prompts(["Hi", "What does `math.sqrt` return for a negative number?"])
    ids, mask = dllm.pad_prompts(prompt_ids)
    response = torch.randint(0, 1000, (len(prompt_ids), length), generator=torch.Generator().manual_seed(seed))
    return prompt_ids, torch.cat([ids, response], 1), torch.cat([mask, torch.ones_like(response)], 1), ids.shape[1]


def test_a_block_causal_position_does_not_see_later_blocks(block_causal_dream):
    # blocks count from each prompt's first token: a row's response blocks start at its first_block
    dllm = block_causal_dream
    prompt_ids, x, attention, P = canvas(dllm, 12)
    offsets = [first_block(len(ids), dllm.attention) for ids in prompt_ids]
    assert len(set(offsets)) == 2  # the two rows' blocks start at different response columns
    full = dllm.logits(x, attention, start=P)
    for row, offset in enumerate(offsets):
        later = offset + 4  # the first column of the row's block after next
        changed = x.clone()
        changed[row, P + later:] = 7
        after = dllm.logits(changed, attention, start=P)
        assert torch.equal(full[:, :later], after[:, :later]) and torch.equal(full[1 - row], after[1 - row])
        assert not torch.allclose(full[row, later:], after[row, later:])  # ... which sees its own block


def test_the_exact_cache_gives_the_full_recompute_of_the_canvas(block_causal_dream):
    # as the sampler runs it: the prompt's whole blocks cached, then each block (the first one completing the
    # prompt's last block) from the cached keys and values of the blocks before it
    dllm = block_causal_dream
    prompt_ids, x, attention, P = canvas(dllm, 12)
    full = dllm.logits(x, attention, start=P)
    for row, ids in enumerate(prompt_ids):
        offset = first_block(len(ids), dllm.attention)
        lead = -offset % 4  # the prompt's columns in the response's first block
        one, mask = x[row:row + 1], attention[row:row + 1]
        _, cache = dllm.cached_logits(one, mask, P, slice(0, P - lead), keep=torch.ones(P - lead, dtype=torch.bool))
        edges = sorted({0, 12, *range(offset, 12, 4)})
        for start, end in itertools.pairwise(edges):
            query = slice(P + start - (lead if start == 0 else 0), P + end)
            columns = torch.tensor([[0, end - start - 1]])  # the block's first and last response columns
            logits, cache = dllm.cached_logits(one, mask, P, query, cache, columns=columns,
                                               keep=torch.ones(cache.columns.numel() + query.stop - query.start,
                                                               dtype=torch.bool))
            expected = full[row, start + columns[0]]
            torch.testing.assert_close(logits[0], expected, atol=1e-4, rtol=1e-4)


MODES = {  # the sampler's block modes on the tiny model (L = 8, blocks of 4)
    "prefix": dict(cache="prefix"),
    "dual": dict(cache="dual"),
    "threshold": dict(threshold=0.3),
    "dual+threshold": dict(cache="dual", threshold=0.3),
    "block_causal": {},
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
    if "block_causal" in mode:  # the prompts end at three different columns of a block: three groups of rows
        assert len({first_block(len(ids), setup.dllm.attention) for ids in setup.dllm.encode_prompts(
            [p.text for p in prompts])}) == 3
    together, _ = sampled_together_and_apart(made, setup, prompts)
    assert all(len(r.responses) == 2 for r in together)
    cost = together[0].cost
    # the plan caps the steps; a prompt that ends inside a block has two short blocks (see commit_plan)
    cap = len(commit_plan(8, 4, 4, first_block=first_block(len(setup.dllm.encode_prompts([prompts[0].text])[0]),
                                                            setup.dllm.attention)))
    assert 0 < cost["dllm_columns"] and 1 <= cost["denoising_steps_per_sample"] <= cap
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
    prompts = dllm.encode_prompts(["What does `math.sqrt` do?", "Name a prime."])
    assert [len(ids) % 4 for ids in prompts] == [2, 1]
    out = generate(dllm, prompts, [1, 2], SamplerConfig(gen_length=16, steps=8), prompt_width=26)
    assert (out.tokens != dllm.mask_id).all()
    # per row: the prompt's whole blocks once (left padding included: 24 and 25 columns); the response's first
    # block (2 and 3 columns) completes the prompt's last, so its 2 steps and its commit compute the whole block
    # (4 columns); 3 whole blocks of 2 steps, each committed; the last block (2 and 1 columns) in 2 and 1 steps
    block = 2 * 4 + 4
    assert out.row_costs["dllm_columns"].tolist() == [24 + block + 3 * block + 2 * 2, 25 + block + 3 * block + 1]
    assert out.row_costs["denoising_steps"].tolist() == [2 + 3 * 2 + 2, 2 + 3 * 2 + 1]


@pytest.mark.parametrize("keep", ["prefix", "dual"])
def test_an_approximate_cache_of_an_unchanged_canvas_gives_the_full_forward(tiny_stack, keep):
    # the caches approximate only through what changes after their refresh: on the same canvas they are exact
    dllm = tiny_stack[0]
    _, x, attention, P = canvas(dllm, 12)
    full = dllm.logits(x, attention, start=P)
    start, end = P + 4, P + (8 if keep == "dual" else 12)
    every = torch.arange(P + 12)
    kept = (every < start) | ((every >= end) if keep == "dual" else torch.zeros_like(every, dtype=torch.bool))
    _, cache = dllm.cached_logits(x, attention, P, slice(0, P + 12), keep=kept, hidden_at=start - 1)
    logits, _ = dllm.cached_logits(x, attention, P, slice(start, end), cache)
    torch.testing.assert_close(logits, full[:, 4:end - P], atol=1e-4, rtol=1e-4)


def test_a_block_causal_batch_is_stepped_in_groups_of_rows_whose_blocks_start_at_the_same_column(tiny_stack):
    # blocks count from each prompt's first token: prompts of 26, 17, 19 and 18 tokens open their responses with
    # blocks of 2, 3, 1 and 2 columns; each group of rows is stepped on its own, the hook sees its rows only
    dllm = dataclasses.replace(tiny_stack[0], attention=AttentionStructure("block_causal", 4))
    prompts = dllm.encode_prompts(["What does `math.sqrt` do?", "Name a prime.", "What is a list?", "Say hi."])
    cfg = SamplerConfig(gen_length=16, steps=8)
    seen = []
    together = generate(dllm, prompts, [1, 2, 3, 4], cfg, lambda state: seen.append(
        (tuple(state.rows.tolist()), state.step.block_start, state.step.block_end)), prompt_width=26)
    assert {(rows, end) for rows, start, end in seen if start == 0} == {((0, 3), 2), ((1,), 3), ((2,), 1)}
    for i in range(4):  # a row's samples, work and trace do not depend on its batch
        alone = generate(dllm, prompts[i:i + 1], [i + 1], cfg, prompt_width=26)
        assert torch.equal(alone.tokens[0], together.tokens[i])
        assert {name: value[i] for name, value in together.row_costs.items()} == \
            {name: value[0] for name, value in alone.row_costs.items()}
        assert step_trace(together.trace, slice(i, i + 1)) == step_trace(alone.trace, slice(0, 1))


def test_a_block_causal_job_batches_prompts_whose_blocks_start_alike(tiny_stack, tmp_path):
    # prompts whose responses open with blocks of 2, 3, 2 and 3 columns: in their order, two batches of two
    # would each be stepped as two groups of rows; batched by the first block, each batch is one group
    dllm = dataclasses.replace(tiny_stack[0], attention=AttentionStructure("block_causal", 4))
    texts = ["What does `math.sqrt` do?", "Name a prime.", "Say hi.", "Name a fruit please."]
    prompts = [Prompt(str(i), text) for i, text in enumerate(texts)]
    setup = SamplingSetup.for_prompts(dllm, tiny_stack[1], prompts, SamplerConfig(gen_length=8, steps=4))
    key = setup.batch_key()
    assert [key(p) for p in prompts] == [2, 3, 2, 3]
    batches = []
    log = ResultsLog(tmp_path / "results.jsonl")
    log.append([{"id": "1"}])  # a resumed job: prompt 1 is done, the rest are batched by their first block
    records = log.fill(prompts, lambda batch: batches.append(batch) or [{"id": p.id} for p in batch], 2, batch_key=key)
    assert [[p.id for p in batch] for batch in batches] == [["0", "2"], ["3"]]
    assert [r["id"] for r in records] == ["0", "1", "2", "3"]  # in the prompts' order
    # a bidirectional model steps any batch as one group: no reordering
    assert SamplingSetup.for_prompts(tiny_stack[0], tiny_stack[1], prompts, setup.sampler).batch_key() is None
