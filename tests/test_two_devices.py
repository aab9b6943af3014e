"""``reward.device``: the reward model on a device of its own (a second GPU), the relaxed embeddings sent to
it. Two GPUs were not available to test this; on the CPU the reward side goes to the ``meta`` device, which
records where tensors are without computing anything."""

import torch
from conftest import compose_config

from entrgi.bookkeeping.settings import job_settings
from entrgi.from_config import load_models
from entrgi.sampling.guidance import relax


def test_the_reward_model_loads_on_reward_device_and_the_dllm_on_device():
    dllm, reward = load_models(compose_config("device=cpu", "reward.device=meta"))
    assert dllm.device == torch.device("cpu") and reward.device == torch.device("meta")
    assert compose_config().reward.device is None  # by default the dLLM's


def test_relaxed_embeddings_are_made_on_the_reward_models_device():
    table = torch.randn(10, 4, device="meta")  # the reward model's embeddings, by dLLM token id
    probs = torch.softmax(torch.randn(3, 10), -1)  # from the dLLM's logits, on its device
    for hard in (None, torch.tensor([1, 2, 3])):
        relaxed = relax(probs, table, torch.full((3,), 0.5), hard)
        assert relaxed.device == table.device and relaxed.shape == (3, 4)


def test_a_reward_model_on_the_dllms_device_keeps_a_jobs_identity():
    assert "device" not in job_settings(compose_config())["reward"]  # as before reward.device existed
    assert job_settings(compose_config("reward.device=cuda:1"))["reward"]["device"] == "cuda:1"
