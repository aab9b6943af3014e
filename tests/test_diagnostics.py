"""diagnostics.relaxation: the relaxed score that drove the gradient against the hard sample's, per step."""

import dataclasses

import pytest
import torch
from conftest import compose_config
from omegaconf import OmegaConf

from entrgi.bookkeeping.settings import digest, job_settings
from entrgi.evaluation.benchmarks import Prompt
from entrgi.from_config import build_method
from entrgi.methods import make_method
from entrgi.methods.base import SamplingSetup
from entrgi.models.attention import AttentionStructure
from entrgi.sampling.guidance import relaxation_fidelity
from entrgi.sampling.sampler import SamplerConfig, first_block

PROMPTS = [Prompt("a", "Using the words file and value, say what `math.sqrt` does."),
           Prompt("b", "Using the words return and number, say what `os.getcwd` does.")]
SMALL = SamplerConfig(gen_length=8, steps=4)


def gradient(w, diagnose):
    """Gradient guidance with the constant weight ``w`` (1: APS; 0: expectation)."""
    settings = {"name": "w", "family": "gradient", "inner_steps": 2, "lr": 0.5}
    return make_method(settings, {"name": "constant", "value": w}, diagnose_relaxation=diagnose)


def test_fidelity_statistics_on_hand_made_scores():
    # 2 inner steps x 4 rows, two prompts of two rows; hard = relaxed - 1 for prompt 0, reversed for prompt 1
    relaxed = torch.tensor([[1.0, 2.0, 1.0, 2.0], [3.0, 5.0, 3.0, 5.0]])
    hard = torch.tensor([[0.0, 1.0, 4.0, 2.0], [2.0, 4.0, 1.0, 0.0]])
    stats = relaxation_fidelity(relaxed, hard, rows_per_prompt=2)
    assert stats["hard_reward"].tolist() == [2.0, 4.0, 1.0, 0.0]
    assert stats["relaxation_gap"].tolist() == [1.0, 1.0, -0.5, 2.5]
    correlation = stats["relaxation_correlation"]
    assert correlation[:2].tolist() == pytest.approx([1.0, 1.0])  # pooled over the prompt's rows and steps
    assert correlation[2] == correlation[3] < 0


@pytest.mark.parametrize("w", [1.0, 0.0])
def test_the_diagnostic_leaves_the_samples_and_measures_the_gap(tiny_stack, w):
    dllm, reward = tiny_stack
    setup = SamplingSetup.for_prompts(dllm, reward, PROMPTS, SMALL, num_samples=2)
    plain = gradient(w, False).sample(setup, PROMPTS)
    checked = gradient(w, True).sample(setup, PROMPTS)
    assert [r.responses for r in checked] == [r.responses for r in plain]
    assert [r.trace["guided_reward"] for r in checked] == [r.trace["guided_reward"] for r in plain]
    assert "relaxation_gap" not in plain[0].trace
    # one more reward forward per inner step: 4 steps x 2 inner steps x 2 rows
    assert checked[0].cost["reward_forwards"] == plain[0].cost["reward_forwards"] + 16
    gaps = [g for r in checked for g in r.trace["relaxation_gap"]]
    if w == 1.0:  # APS: the forward value is the hard sample's, so the gap is zero
        assert max(abs(g) for g in gaps) < 1e-5
        for r in checked:
            assert r.trace["hard_reward"] == pytest.approx(r.trace["guided_reward"], abs=1e-5)
    else:  # w = 0: the reward model sees expected embeddings, never the text
        assert sum(abs(g) for g in gaps) / len(gaps) > 1e-2


def test_the_switch_is_part_of_a_jobs_settings_only_when_on():
    off, on = compose_config(), compose_config("diagnostics.relaxation=true")
    assert "diagnostics" not in job_settings(off) and job_settings(on)["diagnostics"] == {"relaxation": True}
    # a job from before the switch existed keeps its identity
    before = OmegaConf.create(OmegaConf.to_container(off))
    del before["diagnostics"]
    assert digest(job_settings(off)) == digest(job_settings(before))
    assert build_method(on).diagnose_relaxation and not build_method(off).diagnose_relaxation


def test_a_prompt_s_fidelity_pools_its_rows_also_when_its_batch_is_stepped_in_groups(tiny_stack):
    # a block-causal batch whose prompts end at three columns of a block is stepped in three groups of rows;
    # the correlation still pools each prompt's rows and inner steps, as when the prompt runs alone
    dllm, reward = tiny_stack
    dllm = dataclasses.replace(dllm, attention=AttentionStructure("block_causal", 4))
    prompts = [Prompt(str(i), f"What does `math.{f}` do?") for i, f in enumerate(["sqrt", "gcd", "exp"])]
    assert len({first_block(len(ids), dllm.attention) for ids in dllm.encode_prompts([p.text for p in prompts])}) == 3
    setup = SamplingSetup.for_prompts(dllm, reward, prompts, SamplerConfig(gen_length=8, steps=4), num_samples=2)
    method = gradient(0.0, True)
    together = method.sample(setup, prompts)
    for prompt, record in zip(prompts, together):
        alone = method.sample(setup, [prompt])[0]
        assert record.responses == alone.responses
        assert record.trace["relaxation_correlation"] == pytest.approx(alone.trace["relaxation_correlation"],
                                                                       nan_ok=True)
