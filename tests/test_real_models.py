"""The paper's setting on stand-ins of the same shape: Dream + a Qwen3 reward model share a vocabulary,
LLaDA does not; the whole CLI path runs on tiny checkpoints in the published formats."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import compose_config

from entrgi.models.loaders import load_diffusion_lm
from entrgi.models.reward import RewardModel

RUN = ["benchmark=jsonl", "benchmark.num_prompts=2", "num_samples=2", "batch_size=2", "sampler.gen_length=8",
       "sampler.steps=4", "device=cpu", "dtype=float32"]


def cli(*args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "entrgi.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in
                            ["How do I reverse a list in Python?", "What does a mutex protect against?"]))
    return path


@pytest.fixture(scope="module")
def qwen3_reward(qwen3_reward_dir):
    return RewardModel.load(str(qwen3_reward_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def llada(llada_dir):
    return load_diffusion_lm(str(llada_dir), loader="llada", shift_logits=False, mask_token="<|mdm_mask|>",
                             device="cpu", dtype="float32")


def test_choosing_a_reward_model_brings_a_compatible_dllm_unless_one_is_named():
    assert compose_config().model.name == "tiny"
    assert compose_config("reward=skywork").model.name == "dream"
    assert compose_config("method=entrgi", "reward=skywork_8b").model.path == "Dream-org/Dream-v0-Instruct-7B"
    assert compose_config("reward=skywork", "model=llada").model.name == "llada"
    assert compose_config("model=llada_1.5", "reward=skywork").model.path == "GSAI-ML/LLaDA-1.5"
    paper = compose_config("model=dream", "reward=skywork", "benchmark=rm_bench", "method=entrgi")
    assert (paper.sampler.gen_length, paper.sampler.steps, paper.benchmark.num_prompts) == (128, 128, 64)
    assert paper.model.loader == "dream" and paper.model.trust_remote_code is False
    assert compose_config("model=llada").sampler.block_length == 32


@pytest.mark.slow
def test_dream_guided_by_a_qwen3_reward_runs_through_the_cli_with_full_coverage(
        tmp_path, dream_dir, qwen3_reward_dir, prompts_file):
    done = cli("reward=skywork", f"model.path={dream_dir}", f"reward.path={qwen3_reward_dir}",
               f"benchmark.path={prompts_file}", *RUN, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = next((tmp_path / "outputs").glob("runs/*/*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    coverage = summary["vocab_coverage"]
    # every Dream token string is a Qwen3 token, except Dream's own BOS; the mask token is never scored
    assert coverage["unmatched_examples"] == ["<|beginoftext|>"] and coverage["represented"] == 1.0
    assert coverage["matched"] == pytest.approx(1 - 1 / 151666)
    assert summary["num_prompts"] == 2 and summary["cost_total"]["reward_backwards"] > 0
    resolved = (run_dir / "config.yaml").read_text()
    assert "loader: dream" in resolved and "trust_remote_code: false" in resolved


@pytest.mark.slow
def test_llada_with_a_qwen3_reward_stops_and_names_a_compatible_model_then_bridges_when_asked(
        tmp_path, llada_dir, qwen3_reward_dir, prompts_file):
    common = ["reward=skywork", "model=llada", f"model.path={llada_dir}", f"reward.path={qwen3_reward_dir}",
              f"benchmark.path={prompts_file}", *RUN, "model.block_length=4"]  # two blocks
    stopped = cli(*common, cwd=tmp_path / "stop")
    assert stopped.returncode != 0
    assert "model=dream" in stopped.stderr.strip().splitlines()[-1]
    bridged = cli(*common, "reward.min_coverage=0.5", "reward.unmatched=retokenize", cwd=tmp_path / "bridge")
    assert bridged.returncode == 0, bridged.stderr[-3000:]
    summary = json.loads(next((tmp_path / "bridge" / "outputs").glob("runs/*/*/summary.json")).read_text())
    assert 0.5 < summary["vocab_coverage"]["matched"] < 0.95 and summary["vocab_coverage"]["represented"] == 1.0


def test_llada_vocabulary_is_partly_covered_and_each_unmatched_policy_behaves_as_documented(llada, qwen3_reward):
    E = qwen3_reward.embeddings
    bridges = {policy: qwen3_reward.bridge(llada.tokenizer, llada.vocab_size, policy, ignore=(llada.mask_id,))
               for policy in ("zero", "retokenize")}
    zero, retokenize = bridges["zero"], bridges["retokenize"]
    assert 0.5 < zero.coverage == retokenize.coverage < 0.95
    assert zero.represented == zero.coverage and retokenize.represented == 1.0
    vocab = qwen3_reward.tokenizer.get_vocab()
    matched = torch.tensor([t in vocab for t in llada.tokenizer.convert_ids_to_tokens(range(len(llada.tokenizer)))])
    named = len(llada.tokenizer)
    # matched tokens carry their own reward embedding under every policy
    token = llada.tokenizer.convert_ids_to_tokens(int(matched.nonzero()[5]))
    assert torch.equal(zero.table[int(matched.nonzero()[5])], E[vocab[token]])
    # zero: unmatched and padding rows are zero; retokenize: the mean of the text's reward tokens
    assert (zero.table[:named][~matched] == 0).all() and (zero.table[named:] == 0).all()
    row = int((~matched).nonzero()[3])
    text = llada.tokenizer.convert_tokens_to_string([llada.tokenizer.convert_ids_to_tokens(row)])
    pieces = qwen3_reward.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1 and torch.allclose(retokenize.table[row], E[pieces].mean(0), atol=1e-6)
    assert "<|mdm_mask|>" not in retokenize.unmatched_tokens  # the mask token is never scored


def test_unk_policy_uses_the_unknown_token_and_refuses_a_tokenizer_without_one(llada, qwen3_reward_dir):
    reward = RewardModel.load(str(qwen3_reward_dir), device="cpu", dtype="float32")
    with pytest.raises(Exception, match="reward.unmatched=zero or retokenize"):  # Qwen3 has no unknown token
        reward.bridge(llada.tokenizer, llada.vocab_size, "unk")
    reward.tokenizer.unk_token = "<|endoftext|>"
    bridge = reward.bridge(llada.tokenizer, llada.vocab_size, "unk", ignore=(llada.mask_id,))
    unk_row = reward.embeddings[reward.tokenizer.unk_token_id]
    vocab = reward.tokenizer.get_vocab()
    unmatched = [i for i, t in enumerate(llada.tokenizer.convert_ids_to_tokens(range(len(llada.tokenizer))))
                 if t not in vocab]
    assert bridge.represented == 1.0 and all(torch.equal(bridge.table[i], unk_row) for i in unmatched[:50])
