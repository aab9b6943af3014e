"""Text scoring: the classifier's own last-token pooling done explicitly, a score that does not depend on
the batch, and the API each transformers version wants (no deprecated keyword, no pooling warning)."""

import random
import warnings

import pytest
import torch

from entrgi.models.reward import pooled_scores


def pairs(n=16, seed=0):
    rng = random.Random(seed)
    words = "the a of function return value list string python error file path process".split()
    prompts = [" ".join(rng.choices(words, k=rng.randint(3, 30))) for _ in range(n)]
    responses = [" ".join(rng.choices(words, k=rng.randint(0, 40))) for _ in range(n)]
    return prompts, responses


def test_a_rows_score_does_not_depend_on_the_rows_batched_with_it(tiny_stack):
    _, reward = tiny_stack
    prompts, responses = pairs()
    width = reward.text_width(prompts, 48)
    together = reward.score_texts(prompts, responses, batch_size=16, width=width)
    by_prompt = reward.score_texts(prompts, responses, batch_size=4, width=width)  # one prompt's K = 4 samples
    one_by_one = reward.score_texts(prompts, responses, batch_size=1, width=width)
    assert by_prompt == together and one_by_one == together  # exactly: every batch size, the same final rewards


def test_scores_are_the_classifiers_own_last_token_scores(tiny_stack):
    _, reward = tiny_stack
    prompts, responses = pairs(6)
    own = [reward.model(input_ids=torch.tensor([reward.chat_ids(p, r)])).logits[0, 0].item()
           for p, r in zip(prompts, responses)]  # unpadded, one at a time: nothing to pool wrongly
    assert reward.score_texts(prompts, responses) == pytest.approx(own, abs=1e-5)
    assert reward.score_texts(prompts, responses, width=reward.text_width(prompts, 48)) == pytest.approx(own, abs=1e-5)


def test_scoring_never_asks_the_classifier_to_pool_embeddings_and_uses_no_deprecated_keyword(tiny_stack, monkeypatch):
    _, reward = tiny_stack
    prompts, responses = pairs(4)

    def no_pooling_of_embeddings(*args, **kwargs):  # its pooling of inputs_embeds is what warns
        raise AssertionError("the classifier's own forward was called")

    monkeypatch.setattr(type(reward.model), "forward", no_pooling_of_embeddings)
    embeds = reward.model.get_input_embeddings()(torch.tensor([reward.chat_ids(prompts[0], responses[0])]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # transformers' FutureWarning for past_key_values included
        reward.score_texts(prompts, responses)
        for cache_prefix in (False, True):
            context = reward.context(prompts[:1], cache_prefix=cache_prefix)
            reward.score_embeddings(context, embeds, torch.ones(embeds.shape[:2], dtype=torch.long))


def test_pooled_scores_are_bit_equal_to_the_classifiers_pooling_of_ids(tiny_stack):
    _, reward = tiny_stack
    pad = reward.tokenizer.pad_token_id
    ids = torch.tensor([[5, 6, 7, 8], [pad, pad, 9, 10]])  # from ids it finds the last non-padding token
    mask = (ids != pad).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        own = reward.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, 0].float()
        assert torch.equal(pooled_scores(reward.model, mask, positions, input_ids=ids), own)
