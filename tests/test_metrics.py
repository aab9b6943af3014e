import pytest

from entrgi.evaluation.metrics import outcomes, peak_memory_bytes, win_rate


def test_outcomes_count_ties_half():
    assert outcomes([2.0, 1.0, 1.0], [1.0, 1.0, 3.0]) == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="pair them"):
        outcomes([1.0], [1.0, 2.0])


def test_win_rate_counts_and_interval():
    outcome = [1.0] * 30 + [0.5] * 10 + [0.0] * 24
    rate = win_rate(outcome, seed=3)
    assert rate["rate"] == pytest.approx(35 / 64)
    assert (rate["wins"], rate["ties"], rate["losses"], rate["n"]) == (30, 10, 24, 64)
    assert rate["low"] < rate["rate"] < rate["high"]
    # the interval of a mean of 64 values in [0, 1] with this spread is about +-0.12 wide
    assert 0.15 < rate["high"] - rate["low"] < 0.35
    assert win_rate(outcome, seed=3) == rate  # seeded: the same interval every time


def test_win_rate_interval_narrows_with_more_prompts_and_is_degenerate_when_all_equal():
    small = win_rate([1.0, 0.0] * 8)
    large = win_rate([1.0, 0.0] * 200)
    assert small["rate"] == large["rate"] == 0.5
    assert large["high"] - large["low"] < (small["high"] - small["low"]) / 3
    ties = win_rate([0.5] * 10)
    assert ties["rate"] == ties["low"] == ties["high"] == 0.5
    empty = win_rate([])
    assert empty["n"] == 0


def test_peak_memory_is_reported_on_cpu():
    import torch

    assert peak_memory_bytes(torch.device("cpu")) > 10 * 2**20
