"""Post-training (python -m entrgi.train): the estimator, the LoRA update, distributed runs, resume, the adapter in
entrgi.run, and the one-line errors for bad settings."""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import compose_config, entrgi_cli
from hydra import compose, initialize_config_dir

from entrgi.bookkeeping.settings import claim_directory, job_settings
from entrgi.bookkeeping.storage import read_jsonl
from entrgi.errors import ConfigError
from entrgi.models.diffusion import DiffusionLM
from entrgi.run import CONF_DIR
from entrgi.models.loaders import family
from entrgi.train import last_checkpoint, lora_config, train
from entrgi.training.likelihood import completion_log_probs, completion_mask, mask_prompt, one_step_log_likelihood
from entrgi.training.trainer import CHECKPOINT_COMPLETE

MASK, EOS, PAD = 9, 8, 0
# a few steps of a tiny setting: 2 samples per prompt, one prompt per process and step
TINY = ["logger=wandb", "logger.mode=offline", "eval_reward=keywords", "train.steps=3", "train.num_samples=2",
        "train.batch_size=2", "train.eval.num_prompts=2", "train.eval.num_samples=2", "train.eval.every=1",
        "train.save_every=1", "sampler.steps=2", "sampler.gen_length=8", "train.lr=1e-2"]


def compose_train(*overrides):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize("recipe", ["rgrl", "diffu_grpo", "rft"])
def test_each_recipe_preset_composes_over_the_runs_groups(recipe):
    cfg = compose_train(f"train={recipe}", "benchmark@train_prompts=wildchat_if", "reward=skywork_0.6b")
    assert cfg.train.recipe == recipe and cfg.train.beta == (0.04 if recipe == "diffu_grpo" else 0.0)
    assert cfg.train_prompts.name == "wildchat_if" and cfg.model.name == "dream" and cfg.benchmark.name == "tiny"
    assert cfg.train.lora.r == 32 and cfg.train.lr == 5e-6 and cfg.train.steps == 500 and cfg.train.batch_size == 8


@pytest.mark.parametrize("name", ["cpu", "ddp", "zero2", "fsdp"])
def test_the_shipped_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(Path(CONF_DIR) / "accelerate" / f"{name}.yaml"))
    assert config.num_processes >= 2


def test_training_prompt_sets_take_the_last_user_turn_and_filter_rows(tmp_path):
    from entrgi.evaluation.benchmarks import load_benchmark

    rows = [{"chosen": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "a"},
                        {"role": "user", "content": f"last {i}"}, {"role": "assistant", "content": "b"}],
             "quality": quality} for i, quality in enumerate(["good", "poor", "excellent", "good"])]
    rows.append(rows[0])  # a duplicate
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = load_benchmark("x", "jsonl", str(path), field="chosen.last_user.content",
                             where={"quality": ["good", "excellent"]})
    assert sorted(p.text for p in prompts) == ["last 0", "last 2", "last 3"]


def test_the_testbed_training_prompts_never_include_a_held_out_one():
    from entrgi.evaluation.benchmarks import load_benchmark

    cfg = compose_train()
    train_set = load_benchmark(**{k: cfg.train_prompts[k] for k in ("name", "source", "path", "field", "id_field",
                                                                    "reference_field")})
    held_out = load_benchmark(**{k: cfg.benchmark[k] for k in ("name", "source", "path", "field", "id_field",
                                                               "reference_field")})
    assert len(train_set) > 1000 and len(held_out) == 69
    assert not {p.reference for p in train_set} & {p.reference for p in held_out}
    held_names = {p.id for p in held_out}
    assert not {p.id.rsplit("/", 1)[0] for p in train_set} & held_names


# -- the estimator on a hand-made model -----------------------------------------------------------------

class TokenEcho(torch.nn.Module):
    """A network whose output at position i depends only on the token at i: its hidden state is the
    token's one-hot vector; the output layer's row t (the logits at a position holding t) is ``table[t]``.
    It records the inputs it was run on."""

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.seen = []
        head = torch.nn.Linear(len(table), len(table), bias=False)
        head.weight.data = table.T.clone()
        self.head = head

    @property
    def base_model(self):
        def backbone(input_ids, **_):
            self.seen.append(input_ids.clone())
            return SimpleNamespace(last_hidden_state=torch.nn.functional.one_hot(input_ids, len(self.table)).float())
        return backbone

    def get_output_embeddings(self):
        return self.head


def hand_made(shift: bool) -> DiffusionLM:
    V = 10
    table = torch.zeros(V, V)
    table[MASK] = torch.arange(V).float()  # at a masked position: a fixed distribution, favouring high ids
    table[7, 3] = 20.0  # after (Dream) or at (LLaDA) a 7: almost surely a 3
    return DiffusionLM(TokenEcho(table), tokenizer=None, mask_id=MASK, eos_ids=[EOS], shift_logits=shift,
                       max_length=64)


def test_prompt_masking_rate_leaves_padding_and_is_reproducible():
    ids = torch.randint(1, 8, (400, 60))
    real = torch.ones_like(ids)
    real[:, :10] = 0  # left padding
    masked = mask_prompt(ids, real, MASK, 0.3, torch.Generator().manual_seed(1))
    rate = (masked[:, 10:] == MASK).float().mean().item()
    assert abs(rate - 0.3) < 0.01
    assert (masked[:, :10] == ids[:, :10]).all()
    assert torch.equal(masked, mask_prompt(ids, real, MASK, 0.3, torch.Generator().manual_seed(1)))
    assert not torch.equal(masked, mask_prompt(ids, real, MASK, 0.3, torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("shift", [True, False])
def test_every_completion_token_is_masked_and_dream_reads_the_previous_position(shift):
    dllm = hand_made(shift)
    prompt = torch.tensor([[1, 2, 7]])
    completion = torch.tensor([[3, 5, EOS]])
    log_probs, _ = completion_log_probs(dllm, torch.cat([prompt, completion], 1), torch.ones(1, 6, dtype=torch.long),
                                        3)
    seen = dllm.model.seen[-1]
    assert seen[0, :3].tolist() == [1, 2, 7] and seen[0, 3:].tolist() == [MASK] * 3
    masked_dist = torch.arange(10).float().log_softmax(-1)
    # Dream: the first completion token is predicted from the last prompt position (a 7 -> a 3)
    first = torch.zeros(10).index_fill(0, torch.tensor([3]), 20.0).log_softmax(-1)[3] if shift else masked_dist[3]
    assert log_probs[0, 0].item() == pytest.approx(first.item(), abs=1e-5)
    assert log_probs[0, 1].item() == pytest.approx(masked_dist[5].item(), abs=1e-5)


def test_the_likelihood_averages_each_completions_real_tokens_then_the_completions():
    dllm = hand_made(shift=False)
    prompt, prompt_mask = torch.tensor([[PAD, 1, 2], [1, 2, 4]]), torch.tensor([[0, 1, 1], [1, 1, 1]])
    completion = torch.tensor([[3, 5, EOS, EOS, EOS], [6, 2, 4, 1, EOS]])
    assert completion_mask(completion, [EOS]).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    masked_dist = torch.arange(10).float().log_softmax(-1)
    expected = (masked_dist[[3, 5, EOS]].mean() + masked_dist[[6, 2, 4, 1, EOS]].mean()) / 2
    value = one_step_log_likelihood(dllm, prompt, prompt_mask, completion, torch.Generator().manual_seed(0))
    assert value.item() == pytest.approx(expected.item(), abs=1e-5)
    after_eos = completion.clone()
    after_eos[0, 3:] = torch.tensor([7, 1])  # what follows the first EOS is padding: it does not count
    assert one_step_log_likelihood(dllm, prompt, prompt_mask, after_eos,
                                   torch.Generator().manual_seed(0)).item() == pytest.approx(value.item())


def test_the_elbo_alternative_is_unbiased_for_the_completion_log_likelihood():
    from entrgi.training.likelihood import elbo_terms

    dllm = hand_made(shift=False)
    rows = torch.cat([torch.tensor([[1, 2, 7]]).expand(20000, 3), torch.full((20000, 6), 5)], 1)
    terms = elbo_terms(dllm, rows, torch.ones_like(rows), 6, torch.Generator().manual_seed(0))
    seen = dllm.model.seen[-1][:, 3:]
    assert ((terms == 0) == (seen != MASK)).all()  # a term for each masked token only
    assert 0.4 < (seen == MASK).float().mean().item() < 0.6  # a masking rate t ~ U(0, 1) per row
    # masked with probability t and weighted 1 / t: the expected sum is the six tokens' log-likelihood
    expected = 6 * torch.arange(10).float().log_softmax(-1)[5].item()
    assert terms.sum(-1).mean().item() == pytest.approx(expected, rel=0.08)


@pytest.mark.parametrize("family", ["dream", "llada", "block_causal"])
@pytest.mark.parametrize("start", [0, 5])
def test_the_wrapped_network_forward_gives_the_plain_logits(tiny_stack, llada_dir, family, start):
    # block_causal: training reads the sampler's block-causal forward (blocks from each row's first real token)
    import dataclasses

    from entrgi.models.attention import AttentionStructure
    from entrgi.models.loaders import load_diffusion_lm

    dllm = load_diffusion_lm(str(llada_dir), loader="llada", shift_logits=False, mask_token="<|mdm_mask|>",
                             device="cpu") if family == "llada" else tiny_stack[0]
    if family == "block_causal":
        dllm = dataclasses.replace(dllm, attention=AttentionStructure("block_causal", 4))
    ids = torch.randint(5, 50, (2, 12))
    attention = torch.ones_like(ids)
    attention[0, :3] = 0  # left padding
    with torch.no_grad():
        plain = dllm.forward(ids, attention, start=start)
        wrapped = dllm.forward(ids, attention, start=start, network=dllm.model)
    assert wrapped.shape == plain.shape == (2, 12 - start, dllm.vocab_size)
    assert torch.allclose(wrapped, plain, atol=1e-5)


# -- LoRA on the tiny dLLM ------------------------------------------------------------------------------

def fixed_batch(dllm):
    prompts = dllm.encode_prompts(["Using the words file and path, say what `os.stat` does.",
                                   "Using the words list and items, say what `sorted` does."])
    prompt, prompt_mask = dllm.pad_prompts(prompts)
    completion = torch.tensor(dllm.tokenizer(["Return the status of a file path.", "Return a new sorted list."],
                                             padding="max_length", max_length=12)["input_ids"])
    return prompt, prompt_mask, completion


def test_one_step_changes_only_the_lora_weights_and_lowers_the_loss(tiny_stack):
    from peft import get_peft_model

    dllm = tiny_stack[0]
    batch = fixed_batch(dllm)
    peft_model = get_peft_model(dllm.model, lora_config(compose_train().train.lora, dllm.model, family("auto")))
    try:
        peft_model.eval()  # no dropout: the same loss twice on the same batch
        before = {name: p.detach().clone() for name, p in peft_model.named_parameters()}
        trainable = [p for p in peft_model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-3)

        def loss():
            return -one_step_log_likelihood(dllm, *batch, torch.Generator().manual_seed(0), network=peft_model)

        first = loss()
        with torch.no_grad():  # the wrapped forward is the plain one (the adapter starts at zero)
            plain = -one_step_log_likelihood(dllm, *batch, torch.Generator().manual_seed(0))
        assert first.item() == pytest.approx(plain.item(), abs=1e-5)
        first.backward()
        optimizer.step()
        changed = {name for name, p in peft_model.named_parameters() if not torch.equal(p, before[name])}
        assert changed and all("lora_" in name for name in changed)
        assert {n for n, p in peft_model.named_parameters() if p.requires_grad} >= changed
        assert loss().item() < first.item()
    finally:
        peft_model.unload()  # the session's tiny model, as it was


# -- distributed runs, resume, the adapter in entrgi.run ------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(job: subprocess.Popen) -> None:
    """SIGKILL a launcher and every process under it (torchrun's workers run in sessions of their own)."""
    import psutil

    processes = [psutil.Process(job.pid), *psutil.Process(job.pid).children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(processes, timeout=30)
    job.wait()


def launch(*args, cwd, wait=True):
    """``accelerate launch`` of entrgi.train with 2 processes on the CPU (gloo)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(Path(CONF_DIR) / "accelerate" / "cpu.yaml"), "--main_process_port", str(free_port()),
               "-m", "entrgi.train", *args]
    path = os.pathsep.join(p for p in (str(Path(CONF_DIR).parent), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=path)
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    return subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def recipes(tmp_path_factory):
    """The three recipes, 3 steps each, as one sweep under ``accelerate launch`` with 2 processes."""
    root = tmp_path_factory.mktemp("recipes")
    done = launch("-m", "train=rgrl,diffu_grpo,rft", "sweep=recipes", *TINY, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {path.name.split("_tiny_train")[0]: path for path in (root / "outputs/train_sweeps/recipes").iterdir()
            if path.is_dir() and not path.name.startswith(".")}
    return {**runs, "root": root, "console": done}


def test_each_recipe_draws_and_trains_as_it_did_before_its_sampling_moved_onto_the_methods(recipes):
    """The recipes' training samples, rewards and weights as recorded at commit 60fd2ad (fixtures/train_golden.json).
    rgrl and diffu_grpo now default to the EntRGi authors' protocol: at these settings (K = 2 sequences per
    micro-batch, 8 positions that hold no EOS) it computes what ours did, bit for bit."""
    pinned = json.loads((Path(__file__).parent / "fixtures" / "train_golden.json").read_text())["recipes"]
    for recipe, lines in pinned.items():
        mine = {(r["step"], r["process"]): r for r in read_jsonl(recipes[recipe] / "samples.jsonl")}
        assert sorted(mine) == sorted((line["step"], line["process"]) for line in lines)
        for line in lines:
            record = mine[line["step"], line["process"]]
            assert (record["prompt_ids"], record["texts"]) == (line["prompt_ids"], line["texts"]), recipe
            assert sum(record["rewards"], []) == pytest.approx(sum(line["rewards"], []), rel=1e-6, abs=1e-6), recipe
            assert record["weights_checksum"] == pytest.approx(line["weights_checksum"], rel=1e-7), recipe


def first_step_loss(tmp_path, name: str, *overrides) -> tuple[float, list]:
    """One rgrl step of 2 prompts x K = 2 on 32 positions (completions that end early): its loss and samples."""
    out = tmp_path / name
    train(compose_train("train=rgrl", "logger=none", "train.steps=1", "train.num_samples=2", "train.batch_size=4",
                        "sampler.gen_length=32", "sampler.steps=8", "train.eval.num_prompts=1",
                        "train.eval.num_samples=1", "train.eval.every=0", "train.save_every=1", "train.lr=1e-2",
                        *overrides), out)
    history = json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())["log_history"]
    return next(h["loss"] for h in history if "loss" in h), read_jsonl(out / "samples.jsonl")


def test_rgrl_takes_the_authors_protocol_and_ours_is_one_setting_away(tmp_path):
    """docs/rgrl-protocol.md: the authors' loss sums the sequence means over K (x batch / K = 2 here, exactly);
    their attention and EOS move the log-likelihood of completions that end early; ours is still reachable.
    The three losses are pinned in fixtures/train_golden.json (``protocol_losses``)."""
    pinned = json.loads((Path(__file__).parent / "fixtures" / "train_golden.json").read_text())["protocol_losses"]
    authors, samples = first_step_loss(tmp_path, "authors")
    per_sequence, same_samples = first_step_loss(tmp_path, "per_sequence", "train.loss_scale=per_sequence")
    ours, _ = first_step_loss(tmp_path, "ours", "train.likelihood_attention=all", "train.completion_eos=model",
                              "train.loss_scale=per_sequence")
    assert samples == same_samples  # the protocol changes the loss, not what is sampled
    assert authors == 2 * per_sequence
    assert ours != per_sequence
    assert {"authors": authors, "per_sequence": per_sequence, "ours": ours} == pytest.approx(pinned, rel=1e-6)


def test_the_console_shows_steps_evaluations_and_a_summary_against_the_untrained_policy(recipes):
    console = recipes["console"]
    for noise in ("{'loss'", "Warning", "warn(", "Loading weights", "wandb:"):  # raw dicts, libraries' warnings
        assert noise not in console.stdout + console.stderr, (noise, console.stderr[-3000:])
    assert "training: 100%" in console.stderr  # the progress bar over steps
    for recipe in ("rgrl", "diffu_grpo", "rft"):
        run = recipes[recipe]
        summary = json.loads((run / "summary.json").read_text())
        block = console.stdout.split(f"\n{recipe}: 3 steps on ")[1].split("adapter in")[0]
        for mode in ("unguided", "guided"):
            final, untrained = summary["final_eval"][mode], summary["untrained_eval"][mode]
            assert f"{mode:9} top-1 reward          {final['top1_reward']['mean']:+.4f}" in block
            assert f"{mode:9} untrained top-1 reward {untrained['top1_reward']['mean']:+.4f}" in block
            assert f"{mode:9} win-rate, judge keywords  {final['win_rate_judge']['rate']:.3f}" in block
        assert block in (run / "train.log").read_text()  # the log holds the summary the console showed
        card = (run / "README.md").read_text()  # entrgi's model card, not TRL's template
        assert card.startswith(f"# {recipe}: a LoRA adapter for `tiny`") and "[None]" not in card
        assert card == (run / "adapter" / "README.md").read_text()
    # one line per held-out evaluation and mode: the untrained policy, then steps 1 to 3 of each recipe
    evaluations = [line for line in console.stdout.splitlines() if line.startswith("eval step ")]
    assert len(evaluations) == 3 * 4 * 2
    assert sum(line.startswith("eval step 3 guided: top-1 reward") for line in evaluations) == 3


def test_the_training_report_labels_its_axes_and_tells_runs_and_modes_apart(recipes, tmp_path, monkeypatch,
                                                                             capsys):
    from matplotlib.figure import Figure

    from entrgi.report import main as report

    drawn = []
    save = Figure.savefig

    def record(figure, path, **options):  # what a reader sees: axis labels and legend entries with their styles
        legends = [[(text.get_text(), line.get_linestyle(), line.get_marker())
                    for text, line in zip(legend.get_texts(), legend.get_lines())] for legend in figure.legends]
        drawn.append(([(ax.get_xlabel(), ax.get_ylabel()) for ax in figure.axes], legends))
        return save(figure, path, **options)

    monkeypatch.setattr(Figure, "savefig", record)
    assert report([str(recipes["root"] / "outputs/train_sweeps/recipes"), "--out", str(tmp_path)]) == 0
    assert "report written to" in capsys.readouterr().out and (tmp_path / "learning_curves.png").exists()
    ((labels, (runs, modes)),) = drawn
    assert [x for x, _ in labels] == ["training step"] * 2
    assert "guiding reward" in labels[0][1] and "keywords score" in labels[1][1]
    assert sorted(text for text, _, _ in runs) == sorted(recipes[r].name for r in ("rgrl", "diffu_grpo", "rft"))
    assert len({(line, marker) for _, line, marker in modes}) == 2 and [text for text, _, _ in modes] == [
        "sampled unguided", "sampled guided"]


def test_relaunching_a_finished_sweep_launches_nothing(recipes):
    again = entrgi_cli("-m", "train=rgrl,diffu_grpo,rft", "sweep=recipes", *TINY, cwd=recipes["root"],
                       module="entrgi.train")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipping 3 finished job(s) of 3; launching 0" in again.stdout + again.stderr


@pytest.mark.parametrize("recipe", ["rgrl", "diffu_grpo", "rft"])
def test_two_processes_train_each_recipe_on_different_prompts_with_the_same_weights(recipes, recipe):
    run = recipes[recipe]
    assert (run / "checkpoint-3" / "adapter_model.safetensors").exists() and (run / "adapter").is_dir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["processes"] == 2 and set(summary["final_eval"]) == {"unguided", "guided"}
    lines = read_jsonl(run / "samples.jsonl")
    assert sorted((r["step"], r["process"]) for r in lines) == [(s, p) for s in range(3) for p in range(2)]
    checksums = {}
    for step in range(3):
        pair = [r for r in lines if r["step"] == step]
        assert not set(pair[0]["prompt_ids"]) & set(pair[1]["prompt_ids"])  # each process its own prompts
        assert pair[0]["weights_checksum"] == pair[1]["weights_checksum"]  # one model after every update
        checksums[step] = pair[0]["weights_checksum"]
    assert len(set(checksums.values())) == 3  # and it moved
    evaluations = read_jsonl(run / "eval.jsonl")
    assert [(r["step"], r["mode"]) for r in evaluations] == [(s, m) for s in range(4) for m in ("unguided", "guided")]


def test_wandb_gets_the_loss_the_sample_rewards_the_guidance_cost_and_the_evaluations(recipes):
    from wandb_offline import read_run

    run = read_run(next((recipes["rgrl"] / "wandb").glob("offline-run-*")))
    logged = {key for row in run["history"] for key in row}
    assert {"train/loss", "train/samples/reward_mean", "train/samples/reward_top1", "train/samples/seconds",
            "train/samples/reward_backwards", "train/eval/unguided/top1_reward/mean",
            "train/eval/guided/win_rate_reward/rate", "train/eval/unguided/judge/mean"} - logged == set()
    assert run["group"] == "recipes" and "rgrl" in run["tags"]


def test_a_killed_run_resumes_at_its_checkpoint_with_the_same_data_order(recipes, tmp_path):
    reference = read_jsonl(recipes["rgrl"] / "samples.jsonl")
    run_dir = tmp_path / "run"
    args = ["train=rgrl", *TINY, f"hydra.run.dir={run_dir}"]
    job = launch(*args, cwd=tmp_path, wait=False)
    deadline = time.time() + 300
    while not (run_dir / "checkpoint-1" / CHECKPOINT_COMPLETE).exists() and job.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    kill_tree(job)
    assert not (run_dir / "summary.json").exists()
    done = launch(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout
    resumed = read_jsonl(run_dir / "samples.jsonl")
    key = lambda r: (r["step"], r["process"])
    assert sorted(map(key, resumed)) == sorted(map(key, reference))  # each step once
    by_step = {key(r): r for r in reference}
    for record in resumed:
        assert record["prompt_ids"] == by_step[key(record)]["prompt_ids"]
        assert record["weights_checksum"] == pytest.approx(by_step[key(record)]["weights_checksum"], rel=1e-6)


def test_the_untrained_policys_held_out_samples_are_entrgi_runs(recipes, tmp_path):
    """The evaluation samples with entrgi.run's method, widths and random streams: at step 0 (LoRA's B = 0)
    its unguided records are those of entrgi.run on as many of the benchmark's prompts, with the same seed."""
    from entrgi.run import run

    step0 = next(r for r in read_jsonl(recipes["rgrl"] / "eval.jsonl") if r["step"] == 0 and r["mode"] == "unguided")
    cfg = compose_config("method=base", "benchmark.num_prompts=2", "num_samples=2", "sampler.steps=2",
                         "sampler.gen_length=8", "sampler.temperature=0.9", "sampler.top_k=50", "logger=none")
    run(cfg, tmp_path / "run")
    by_id = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "results.jsonl")}
    assert len(step0["records"]) == 2 and sorted(r["id"] for r in step0["records"]) == sorted(by_id)
    for record in step0["records"]:
        assert record["responses"] == by_id[record["id"]]["responses"]
        # each process scores its one prompt's 2 rows, the run 8 rows at a time: a product over another
        # number of rows may round otherwise (measured: 1 float32 ulp)
        assert record["rewards"] == pytest.approx(by_id[record["id"]]["rewards"], rel=1e-6)


def test_a_relaunch_beside_the_workers_of_a_killed_launcher_refuses_until_they_are_stopped(tmp_path):
    """The launcher SIGKILLed alone leaves its workers training (each in a session of its own); they hold the
    run's locks, so a re-launch refuses in one line; stopped as docs/post-training-safety.md says, they let it go."""
    import psutil

    run_dir = tmp_path / "run"
    args = ["train=rgrl", *TINY, "train.steps=1000", f"hydra.run.dir={run_dir}"]
    job = launch(*args, cwd=tmp_path, wait=False)
    deadline = time.time() + 300
    while not (run_dir / "samples.jsonl").exists():
        assert time.time() < deadline and job.poll() is None
        time.sleep(0.05)
    workers = psutil.Process(job.pid).children(recursive=True)
    job.send_signal(signal.SIGKILL)
    job.wait()
    try:
        assert any(w.is_running() for w in workers)
        again = launch(*args, cwd=tmp_path)
        assert again.returncode != 0
        refusals = [line for line in again.stderr.splitlines() if line.startswith("entrgi: error: ")]
        assert refusals and all("is being trained by another launch" in line for line in refusals), again.stderr[-3000:]
        assert not (run_dir / "summary.json").exists()
    finally:
        subprocess.run(["fuser", "-k", "-TERM", *map(str, run_dir.glob(".train-*.lock"))], capture_output=True)
        gone, alive = psutil.wait_procs(workers, timeout=60)
        for process in alive:
            process.kill()
    assert not alive


def test_a_held_run_directory_is_refused_in_one_line_and_left_as_it_was(tmp_path):
    from filelock import FileLock

    for held in (".train-0.lock", ".train-3.lock"):  # this process's rank, or a wider launch's
        run_dir = tmp_path / held
        run_dir.mkdir()
        with FileLock(str(run_dir / held)):
            one_line_error(compose_train("logger=none"), run_dir, "is being trained by another launch", held)
        assert sorted(p.name for p in run_dir.iterdir()) == sorted({held, ".train-0.lock"})


def test_a_checkpoint_without_the_complete_marker_is_not_resumed_from(tmp_path):
    for step, files in [(1, ["trainer_state.json", "rng_state_0.pth", "rng_state_1.pth", CHECKPOINT_COMPLETE]),
                        (2, ["trainer_state.json", "rng_state_0.pth"])]:  # killed before process 1 saved its RNG
        (tmp_path / f"checkpoint-{step}").mkdir()
        for name in files:
            (tmp_path / f"checkpoint-{step}" / name).write_text("")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1")


@pytest.mark.filterwarnings("error::FutureWarning")  # PEFT's merge calls names transformers deprecated: not shown
def test_the_adapter_loads_in_the_runner_and_changes_its_samples(recipes, tmp_path):
    from entrgi.run import run

    fast = ["method=base", "benchmark.num_prompts=2", "sampler.gen_length=8", "sampler.steps=4", "logger=none"]
    plain = run(compose_config(*fast), tmp_path / "plain")
    adapted = run(compose_config(*fast, f"model.adapter={recipes['rgrl'] / 'adapter'}"), tmp_path / "adapted")
    assert plain["prompt_ids"] == adapted["prompt_ids"]
    responses = [[r["responses"] for r in read_jsonl(tmp_path / name / "results.jsonl")]
                 for name in ("plain", "adapted")]
    assert responses[0] != responses[1]


# -- bad settings: one line naming the fix ---------------------------------------------------------------

def one_line_error(cfg, out_dir, *needles):
    with pytest.raises(ConfigError) as error:
        train(cfg, out_dir)
    message = str(error.value)
    assert "\n" not in message and all(n in message for n in needles), message


def test_bad_settings_fail_with_one_line_naming_the_fix(tmp_path):
    one_line_error(compose_train("train.load_in_4bit=true", "device=cpu"), tmp_path / "a", "train.load_in_4bit=false")
    one_line_error(compose_train("train.batch_size=6"), tmp_path / "b", "train.batch_size", "multiple of")
    one_line_error(compose_train("train.steps=0"), tmp_path / "h", "train.steps=0 must be an integer >= 1")
    one_line_error(compose_train("train.lora.target_modules=[q_proj,c_attn]", "logger=none"), tmp_path / "c",
                   "c_attn", "train.lora.target_modules", "q_proj")
    one_line_error(compose_train("benchmark@train_prompts=magpie_ultra"), tmp_path / "d", "train_prompts.path")
    one_line_error(compose_train("reward.path=nobody/no-such-reward", "logger=none"), tmp_path / "e", "reward.path")
    one_line_error(compose_train("eval_reward=pairwise"), tmp_path / "g", "compares two answers", "eval_reward=none")
    claim_directory(tmp_path / "f", job_settings(compose_train("train.lr=1e-3")))
    (tmp_path / "f" / "checkpoint-1").mkdir()  # a run of other settings that saved a checkpoint
    one_line_error(compose_train(), tmp_path / "f", "other settings", "train.lr")


def test_the_held_out_evaluation_reads_verdicts_and_leaves_a_declined_answer_out():
    from entrgi.evaluation.judges.base import Verdict
    from entrgi.training.evaluation import HeldOut, sample_held_out, summarize_held_out

    class Declines:  # pointwise without `score`, as ifeval and lmunit: it declines answers containing "?"
        name, forwards = "picky", 0

        def verdicts(self, prompts, responses):
            return [Verdict(None, error="unreadable") if "?" in r else Verdict(float(len(r))) for r in responses]

    class Answers:  # a method that answers each prompt with its text
        def sample(self, setup, batch):
            return [SimpleNamespace(id=p.id, responses=[p.text], rewards=[1.0], top1_reward=1.0, mean_reward=1.0,
                                    best_index=0) for p in batch]

    from entrgi.evaluation.benchmarks import Prompt

    prompts = [Prompt("a", "aaa"), Prompt("b", "b?"), Prompt("c", "c")]
    records = sample_held_out(HeldOut(prompts, None, Declines(), batch_size=2), prompts, Answers())
    assert [r["judge"] for r in records] == [3.0, None, 1.0]
    baseline = [dict(r, judge=2.0) for r in records]
    summary = summarize_held_out(records, baseline, seed=0)
    assert summary["judge"]["n"] == 2 and summary["judge"]["mean"] == 2.0  # the declined answer left out
    assert summary["win_rate_judge"]["n"] == 2 and summary["win_rate_judge"]["rate"] == 0.5  # one win, one loss


def test_a_scoring_model_with_more_than_one_label_is_refused(tmp_path):
    from transformers import AutoConfig

    from entrgi.evaluation.benchmarks import ASSETS

    two = tmp_path / "two-labels"
    shutil.copytree(ASSETS / "tiny-reward", two)  # a complete checkpoint whose config says 2 labels
    config = AutoConfig.from_pretrained(two)
    config.num_labels = 2
    config.save_pretrained(two)
    one_line_error(compose_train(f"reward.path={two}", "logger=none"), tmp_path / "g", "2 labels", "reward.path")


def test_trls_arguments_come_from_the_train_settings_by_one_mapping(tmp_path):
    from entrgi.train import TRL_ARGS, training_args
    from entrgi.training.trainer import OBJECTIVES, RECIPES

    cfg = compose_train("train=diffu_grpo", "train.steps=7", "train.lr=0.25", "train.num_samples=2",
                        "train.batch_size=6", "train.keep_checkpoints=5")
    args = training_args(cfg, tmp_path, torch.device("cpu"), [])
    assert all(getattr(args, arg) == cfg.train[key] for arg, key in TRL_ARGS.items())
    assert (args.max_steps, args.learning_rate, args.num_generations, args.save_total_limit) == (7, 0.25, 2, 5)
    assert {recipe.objective for recipe in RECIPES.values()} <= set(OBJECTIVES)  # each recipe's loss is mapped


def test_training_samples_through_the_block_modes(tmp_path):
    """RGRL's samples come from the one sampler, so its block modes (here the dual cache with the threshold
    rule) serve training too: the run trains on what they sample, not on what the default sampler would."""
    pinned = json.loads((Path(__file__).parent / "fixtures" / "train_golden.json").read_text())["protocol_losses"]
    loss, samples = first_step_loss(tmp_path, "dual", "sampler.block_length=8", "sampler.cache=dual",
                                    "sampler.threshold=0.5")
    assert math.isfinite(loss) and loss != pytest.approx(pinned["authors"], rel=1e-6)
    _, default_samples = first_step_loss(tmp_path, "default")
    assert [r["prompt_ids"] for r in samples] == [r["prompt_ids"] for r in default_samples]
    assert [r["texts"] for r in samples] != [r["texts"] for r in default_samples]
