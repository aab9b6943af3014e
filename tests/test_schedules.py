import math

import pytest
import torch

from entrgi.sampling.schedules import make_schedule, normalized_entropy

V = 50


def one_hot_logits():
    logits = torch.full((V,), -1e4)
    logits[3] = 0.0
    return logits


def test_entropy_weight_is_zero_for_one_hot_and_one_for_uniform():
    entropy = make_schedule("entropy")
    assert entropy(one_hot_logits()).item() == pytest.approx(0.0, abs=1e-6)
    assert entropy(torch.zeros(V)).item() == pytest.approx(1.0, abs=1e-6)


def test_entropy_weight_matches_its_definition_per_position():
    logits = torch.randn(2, 7, V)
    p = logits.softmax(-1)
    expected = -(p * p.log()).sum(-1) / math.log(V)
    torch.testing.assert_close(make_schedule("entropy")(logits), expected)
    assert make_schedule("entropy")(logits).shape == (2, 7)


def test_entropy_ignores_impossible_tokens():
    logits = torch.zeros(V)
    logits[0] = float("-inf")
    assert torch.isfinite(normalized_entropy(logits))


def test_constant_schedule_gives_its_value_everywhere():
    w = make_schedule("constant", value=0.3)(torch.randn(4, 5, V))
    assert w.shape == (4, 5) and torch.all(w == 0.3)
    with pytest.raises(ValueError, match="schedule.value"):
        make_schedule("constant", value=1.5)


def test_power_schedule_raises_normalized_entropy_to_gamma():
    logits = torch.randn(3, V)
    h = normalized_entropy(logits)
    torch.testing.assert_close(make_schedule("power", gamma=2.0)(logits), h**2)
    # gamma < 1 goes hard sooner: the weight is at least the entropy's
    assert torch.all(make_schedule("power", gamma=0.5)(logits) >= h)


def test_sigmoid_schedule_is_a_smooth_threshold_around_center():
    sigmoid = make_schedule("sigmoid", center=0.5, width=0.05)
    assert sigmoid(one_hot_logits()).item() < 0.01
    assert sigmoid(torch.zeros(V)).item() > 0.99
    # exactly at the center the weight is one half
    logits = torch.randn(V) * 3
    h = normalized_entropy(logits).item()
    assert make_schedule("sigmoid", center=h, width=0.1)(logits).item() == pytest.approx(0.5, abs=1e-5)


def test_top_p_entropy_is_normalized_over_the_nucleus():
    schedule = make_schedule("top_p_entropy", top_p=0.9)
    # four equally likely tokens hold all the mass: uniform over the nucleus gives 1
    logits = torch.full((V,), -1e4)
    logits[:4] = 0.0
    assert schedule(logits).item() == pytest.approx(1.0, abs=1e-5)
    # while entropy over the whole vocabulary stays small
    assert normalized_entropy(logits).item() == pytest.approx(math.log(4) / math.log(V), abs=1e-5)
    # a one-token nucleus gives 0
    assert schedule(one_hot_logits()).item() == 0.0


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="entropy"):
        make_schedule("entropyy")
