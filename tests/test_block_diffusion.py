"""Block diffusion: block-causal attention with its exact KV cache, and the sampler's block modes."""

import dataclasses

import pytest
import torch

from entrgi.models.attention import AttentionStructure
from entrgi.models.diffusion import load_diffusion_lm


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
