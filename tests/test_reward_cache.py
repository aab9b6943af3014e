"""The reward model's prefix key/value cache gives the scores and gradients of a full pass."""

import torch

from entrgi.models.reward import RewardModel


def tiny_reward(seed=0):
    from types import SimpleNamespace

    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    torch.manual_seed(seed)
    config = Qwen3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, vocab_size=97, num_labels=1, pad_token_id=0,
                         initializer_range=0.2)
    return RewardModel(Qwen3ForSequenceClassification(config), SimpleNamespace(pad_token_id=0))


def rows():
    # prefixes of different lengths (left padding), hidden response columns, a padded suffix
    prefix_ids = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14]]
    suffix_ids = [[20, 21], [22], [23, 24]]
    torch.manual_seed(1)
    response = torch.randn(3, 7, 64)
    keep = torch.ones(3, 7, dtype=torch.long)
    keep[1, 4:] = 0  # after a guessed EOS
    keep[2, :] = 0
    return prefix_ids, suffix_ids, response, keep


def scores_and_grad(reward, context, response, keep):
    response = response.clone().requires_grad_(True)
    scores = reward.score_embeddings(context, response, keep)
    scores.sum().backward()
    return scores.detach(), response.grad


def test_prefix_cache_gives_the_scores_and_gradients_of_the_full_pass():
    reward = tiny_reward()
    prefix_ids, suffix_ids, response, keep = rows()
    full = reward.context_from_ids(prefix_ids, suffix_ids, cache_prefix=False)
    cached = reward.context_from_ids(prefix_ids, suffix_ids, cache_prefix=True)
    assert full.prefix_cache is None and cached.prefix_cache is not None
    want_scores, want_grad = scores_and_grad(reward, full, response, keep)
    assert want_scores.std() > 1e-3  # the rows really differ
    for _ in range(3):  # reused: the stored states must not change between scores
        got_scores, got_grad = scores_and_grad(reward, cached, response, keep)
        torch.testing.assert_close(got_scores, want_scores, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_grad, want_grad, atol=1e-5, rtol=1e-4)
    assert all(not k.requires_grad and k.grad is None for k, _ in cached.prefix_cache)


def test_prefix_cache_of_a_wider_padding_gives_the_same_scores():
    reward = tiny_reward()
    prefix_ids, suffix_ids, response, keep = rows()
    narrow = reward.context_from_ids(prefix_ids, suffix_ids)
    wide = reward.context_from_ids(prefix_ids, suffix_ids, widths=(10, 4))
    with torch.no_grad():
        torch.testing.assert_close(reward.score_embeddings(wide, response, keep),
                                   reward.score_embeddings(narrow, response, keep), atol=1e-5, rtol=1e-5)


def test_committed_columns_moved_into_the_context_give_the_scores_and_gradients_of_the_whole_response():
    """The block modes run a step's committed columns once (``extend_context``) and score the rest."""
    reward = tiny_reward()
    prefix_ids, suffix_ids, response, keep = rows()
    keep[0, 1] = 0  # a hidden committed column: the cut must carry into the context
    for cache_prefix in (True, False):
        context = reward.context_from_ids(prefix_ids, suffix_ids, cache_prefix=cache_prefix)
        want_scores, want_grad = scores_and_grad(reward, context, response, keep)
        before = dict(reward.evaluations)
        extended = reward.extend_context(context, response[:, :3], keep[:, :3])
        got_scores, got_grad = scores_and_grad(reward, extended, response[:, 3:], keep[:, 3:])
        torch.testing.assert_close(got_scores, want_scores, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_grad, want_grad[:, 3:], atol=1e-5, rtol=1e-4)
        if cache_prefix:  # counted: 3 rows x 3 committed columns once, then 4 response + 2 suffix columns
            spent = {name: reward.evaluations[name] - before[name] for name in before}
            assert spent["context_columns"] == 9 and spent["guided_columns"] == 3 * 6
            assert spent["guided_keys"] == 3 * (6 * 9 + 6 * 7 // 2)  # after 6 prefix + 3 committed columns
