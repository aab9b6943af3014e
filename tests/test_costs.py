"""The cost model (FLOPs from the models' shapes and a job's counts) and best-of-N at matched compute."""

import json
from dataclasses import asdict
from types import SimpleNamespace

import pytest
from conftest import compose_config

from entrgi.evaluation.flop_model import (
    SequenceFlops,
    dllm_forward_flops,
    guidance_memory,
    linear_macs_per_token,
    parameters,
    reward_backward_flops,
    reward_forward_flops,
)
from entrgi.costs import bon_command, main, match_compute, matched_samples, read_summary
from entrgi.errors import ConfigError
from entrgi.run import run

# hidden 4, two heads of width 2 (one kv head), MLP 8, one layer
SHAPE = SimpleNamespace(hidden_size=4, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
                        num_key_value_heads=1, head_dim=2)
HAND = SequenceFlops(dllm_forward=10, reward_text_forward=3, reward_embedding_forward=2, reward_backward=4,
                     relaxation=1, reward_prefix=5)


def test_flops_of_one_sequence_by_hand():
    # q, k, v (4 x (4 + 2 + 2)) + output (4 x 4) + gated MLP (3 x 4 x 8)
    assert linear_macs_per_token(SHAPE) == 32 + 16 + 96
    attention_per_pair = 2 * 2 * 2  # QK^T and PV, per head of width 2
    # 3 bidirectional columns (9 pairs), output layer 4 x 10 on each
    assert dllm_forward_flops(SHAPE, 10, 3) == 2 * (3 * (144 + 40) + attention_per_pair * 9)
    # the sampler's: the output layer at the one masked column only
    assert dllm_forward_flops(SHAPE, 10, 3, head_columns=1) == 2 * (3 * 144 + 40 + attention_per_pair * 9)
    # 2 causal queries after 3 cached tokens see 4 + 5 keys; the backward's attention costs twice
    assert reward_forward_flops(SHAPE, 2, past=3) == 2 * (2 * 144 + attention_per_pair * 9)
    assert reward_backward_flops(SHAPE, 2, past=3) == 2 * (2 * 144 + 2 * attention_per_pair * 9)


@pytest.mark.parametrize("architecture", ["qwen3_moe", "olmoe", "llada2"])
def test_a_mixture_of_experts_counts_the_parameters_one_token_runs(architecture):
    """Every layer parameter a token multiplies by once, the experts' scaled by top-k / experts: counted off
    transformers' own modules (norms aside), with a dense first layer in Qwen3-MoE and LLaDA2 (as the llada2
    record translates its config to GLM-4-MoE's, whose shared expert every token runs)."""
    from transformers import Glm4MoeModel, OlmoeConfig, OlmoeModel, Qwen3MoeConfig, Qwen3MoeModel

    from entrgi.models.loaders.llada2 import llada2_as_glm4_moe

    shape = dict(vocab_size=50, hidden_size=16, num_experts=6, num_experts_per_tok=2, num_hidden_layers=3,
                 num_attention_heads=4, num_key_value_heads=2)
    config, model_class = {
        "qwen3_moe": (Qwen3MoeConfig(**shape, intermediate_size=48, moe_intermediate_size=8, head_dim=4,
                                     mlp_only_layers=[0]), Qwen3MoeModel),
        "olmoe": (OlmoeConfig(**shape, intermediate_size=8), OlmoeModel),
        "llada2": (llada2_as_glm4_moe({**shape, "intermediate_size": 48, "moe_intermediate_size": 8, "head_dim": 4,
                                       "num_shared_experts": 1, "first_k_dense_replace": 1, "n_group": 2,
                                       "topk_group": 1}), Glm4MoeModel),
    }[architecture]
    model = model_class(config)
    active = sum(p.numel() * (2 / 6 if ".experts." in name else 1) for name, p in model.layers.named_parameters()
                 if p.dim() > 1)  # matrices only: a norm's vector adds no multiply-adds
    assert linear_macs_per_token(config) == active
    assert linear_macs_per_token(config) < sum(p.numel() for p in model.layers.parameters() if p.dim() > 1)


@pytest.mark.parametrize("tied", [False, True])
def test_parameters_and_the_memory_of_a_guided_run(tied):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=50, hidden_size=16, intermediate_size=40, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=4, tie_word_embeddings=tied)
    model = Qwen3ForCausalLM(config)  # its matrices (norms aside), the embeddings once when tied
    assert parameters(config, 50) == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()
                                         if p.dim() > 1)
    # SHAPE's: 144 per layer and 10 x 4 twice; 2 rows of 3 positions over 10 tokens; 5 reward columns that save
    # 3 x 4 inputs, 2 x (4 + 2) of q/k/v and output, 3 x 8 of the MLP per layer
    memory = guidance_memory(SHAPE, 10, SHAPE, 10, rows=2, gen_length=3, reward_width=5, weight_bytes=2)
    assert memory == {"dllm_weights": 2 * 224, "reward_weights": 2 * 224, "logits_and_adam": 3 * 2 * 3 * 10 * 4,
                      "reward_activations": 2 * 5 * (12 + 12 + 24) * 2, "total": 448 + 448 + 720 + 960}


def test_a_prompts_flops_from_its_counts():
    # K = 4 guided samples, 16 dLLM forwards, 12 guided reward passes and 4 text scorings
    flops = HAND.per_prompt({"dllm_forwards": 16, "reward_forwards": 16, "reward_backwards": 12}, num_samples=4)
    assert flops == {"dllm": 160, "reward_forward": 3 * 4 + (2 + 1) * 12 + 5 * 4, "reward_backward": (4 + 1) * 12,
                     "total": 160 + 68 + 60}
    unguided = HAND.per_prompt({"dllm_forwards": 16, "reward_forwards": 4, "reward_backwards": 0}, num_samples=4)
    assert unguided == {"dllm": 160, "reward_forward": 12, "reward_backward": 0, "total": 172}
    assert HAND.unguided_sample(4) == 172 / 4


def write_job(job, cost, num_samples, cache=None, overrides=(), method="entrgi"):
    per_prompt = HAND.per_prompt({k: v / 2 for k, v in cost.items() if k != "seconds"}, num_samples)
    summary = {"method": method, "num_prompts": 2, "num_samples": num_samples, "prompt_ids": ["a", "b"],
               "cost_total": {("sampling_seconds" if k == "seconds" else k): v for k, v in cost.items()},
               "flops": {"per_prompt": per_prompt, "per_sequence": asdict(HAND)},
               "baseline": {"cache": str(cache)} if cache else {}}
    job.mkdir(parents=True)
    (job / "summary.json").write_text(json.dumps(summary))
    (job / ".hydra").mkdir()
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


def test_the_matched_number_of_samples_on_a_hand_made_cost(tmp_path, capsys):
    # bon's cache: 4 samples took 2 s on prompt a and 4 s on b (and 100 s on a prompt the job did not run)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "results.jsonl").write_text("".join(json.dumps({"id": i, "cost": {"seconds": s}}) + "\n"
                                                 for i, s in [("a", 2.0), ("b", 4.0), ("c", 100.0)]))
    # per prompt: K = 4 samples of 4 steps, 12 guided passes, 4 text scorings; 9 s
    cost = {"dllm_forwards": 32, "reward_forwards": 32, "reward_backwards": 24, "seconds": 18.0}
    write_job(tmp_path / "job", cost, 4, cache, overrides=["method=entrgi", "num_samples=4", "seed=2"])
    match = match_compute(read_summary(tmp_path / "job"))
    assert match.sample_flops == 10 * 4 + 3  # one unguided sample: 4 dLLM forwards and its scoring
    assert match.by_flops == pytest.approx(288 / 43)
    assert match.by_seconds == pytest.approx(9.0 / (3.0 / 4))  # bon: 3 s per prompt over 4 samples
    assert matched_samples(match.by_flops) == 7 and matched_samples(0.2) == 1
    main([str(tmp_path / "job")])
    out = capsys.readouterr().out
    assert "num_samples=7" in out and "num_samples=12" in out
    assert "run: python -m entrgi.run method=bon num_samples=7 seed=2" in out


@pytest.mark.parametrize("named", [True, False])
def test_a_sweep_jobs_matched_bon_is_a_command_for_the_same_sweep(tmp_path, named):
    sweep = tmp_path / "outputs" / "sweeps" / ("try1" if named else "2026-01-02_03-04-05")
    cost = {"dllm_forwards": 32, "reward_forwards": 32, "reward_backwards": 24, "seconds": 18.0}
    write_job(sweep / "entrgi_tiny_s2_1a2b3c4d", cost, 4,
              overrides=["method=entrgi", "seed=2", *(["sweep=try1"] if named else [])])
    (sweep / "entrgi_tiny_s2_1a2b3c4d" / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    command = bon_command(sweep / "entrgi_tiny_s2_1a2b3c4d", 7)
    assert command.startswith("python -m entrgi.run -m method=bon num_samples=7 seed=2")
    assert command.split()[-1] == f"sweep={sweep.name}"  # launched from the sweeps' root, it lands beside the job


def test_seconds_from_a_bon_job_and_a_summary_without_flops(tmp_path):
    cost = {"dllm_forwards": 32, "reward_forwards": 32, "reward_backwards": 24, "seconds": 18.0}
    write_job(tmp_path / "job", cost, 4)
    write_job(tmp_path / "bon", {"dllm_forwards": 64, "reward_forwards": 16, "reward_backwards": 0,
                                 "seconds": 4.0}, 8, method="bon")
    assert match_compute(read_summary(tmp_path / "job"), tmp_path / "bon").by_seconds == pytest.approx(9.0 / 0.25)
    assert match_compute(read_summary(tmp_path / "job")).by_seconds is None  # no cache, no bon job
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text(json.dumps({"method": "bon"}))
    with pytest.raises(ConfigError, match="summary.json"):
        read_summary(old)


def test_every_summary_records_its_flops_per_prompt(tmp_path):
    common = ["sampler.gen_length=8", "sampler.steps=4", "benchmark.num_prompts=2", "logger=none"]
    bon = run(compose_config(*common, "method=bon"), tmp_path / "bon")["flops"]["per_prompt"]
    fk = run(compose_config(*common, "method=fk", "method.resample_every=2"), tmp_path / "fk")["flops"]
    guided = run(compose_config(*common, "method=aps", "method.inner_steps=1"), tmp_path / "aps")["flops"]["per_prompt"]
    assert bon["reward_backward"] == 0 and bon["dllm"] == fk["per_prompt"]["dllm"] == guided["dllm"] > 0
    # fk scores its 4 particles' estimates twice more than bon; aps adds a backward per forward
    assert fk["per_prompt"]["reward_forward"] == pytest.approx(3 * bon["reward_forward"])
    assert guided["reward_backward"] > 0 and guided["total"] > bon["total"]
    assert fk["per_sequence"]["dllm_forward"] == bon["dllm"] / (4 * 4)  # K = 4 samples x 4 steps
