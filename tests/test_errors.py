"""Bad input through the CLI: one row per case (the arguments, the exit code, what the one line says).

Each row runs ``python -m entrgi.run`` in a subprocess and checks that stderr holds exactly one
``entrgi: error: ...`` line, naming the fix, and no traceback. Add a row with each new check.
"""

import re
import shutil

import pytest
import torch
from conftest import entrgi_cli
from safetensors.torch import load_file

from entrgi.evaluation.benchmarks import ASSETS

FAST = ["benchmark.num_prompts=1", "sampler.gen_length=4", "sampler.steps=2", "logger=none"]
# the table: (arguments, exit code, text the error line must contain); {dir} is a scratch directory
# holding a model directory with pickle weights only (pickle/) and one without a checkpoint (empty/)
ROWS = [
    (["benchmark.num_prompts=0"], 1, "benchmark.num_prompts=0 must be an integer >= 1, or null"),
    (["benchmark.num_prompts=-2"], 1, "benchmark.num_prompts=-2 must be an integer >= 1, or null"),
    (["benchmark=jsonl"], 1, "set benchmark.path="),
    (["benchmark=jsonl", "benchmark.path={dir}/missing.jsonl"], 1, "set benchmark.path to a JSON lines file"),
    (["model.path={dir}/empty"], 1, "is not a model directory: no config.json, no weights (*.safetensors), no tokenizer files"),
    (["model.path={dir}/pickle"], 1, "holds only pickle weights (pytorch_model.bin)"),
    (["reward.path={dir}/pickle"], 1, "reward path '{dir}/pickle' holds only pickle weights"),
    (["sampler.top_k=0"], 1, "sampler.top_k=0 must be >= 1, or null"),
    (["sampler.alg_temp=-1"], 1, "sampler.alg_temp=-1 must be >= 0, or null"),
    (["sampler.eps=1.5"], 1, "sampler.eps=1.5 must be in (0, 1)"),
    (["model.max_length=30"], 1, "(model.max_length); set benchmark.max_prompt_tokens="),
    # checked before anything loads
    (["seed=abc"], 1, "seed='abc' must be an integer"),
    (["num_samples=0"], 1, "num_samples=0 must be an integer >= 1"),
    (["batch_size=0"], 1, "batch_size=0 must be an integer >= 1"),
    (["method.inner_steps=0"], 1, "method.inner_steps=0 must be an integer >= 1"),
    (["method.lr=nan"], 1, "method.lr=nan must be a number > 0"),
    (["schedule=power", "schedule.gamma=-1"], 1, "power schedule gamma=-1 must be > 0; set schedule.gamma"),
    (["guidance.inner_steps=3"], 1, "guidance.inner_steps moved to method.inner_steps"),
]
# tqdm's progress bars (transformers' "Loading weights") also go to stderr
PROGRESS_BAR = re.compile(r"^[^|]*\d+%\|")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("not a model\n")
    pickle = root / "pickle"
    shutil.copytree(ASSETS / "tiny-dllm", pickle, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(load_file(ASSETS / "tiny-dllm" / "model.safetensors"), pickle / "pytorch_model.bin")
    return root


@pytest.mark.parametrize("args,code,message", ROWS, ids=[" ".join(args) for args, _, _ in ROWS])
def test_bad_input_exits_with_one_line_naming_the_fix(scratch, tmp_path, args, code, message):
    done = entrgi_cli(*FAST, *[a.format(dir=scratch) for a in args], cwd=tmp_path, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not PROGRESS_BAR.match(line)]
    assert done.returncode == code, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("entrgi: error: "), done.stderr[-2000:]
    assert message.format(dir=scratch) in lines[0]
