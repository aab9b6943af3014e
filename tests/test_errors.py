"""Bad input through the CLI: one row per case (the arguments, what the one line says).

Each row runs ``python -m entrgi.run`` in a subprocess and checks that it exits 1 with exactly one
``entrgi: error: ...`` line on stderr, naming the fix, and no traceback. Add a row with each new check.
"""

import re
import shutil

import pytest
from conftest import entrgi_cli

from entrgi.evaluation.benchmarks import ASSETS

FAST = ["benchmark.num_prompts=1", "sampler.gen_length=4", "sampler.steps=2", "logger=none"]
# a model directory without a checkpoint: a row with it that names another key was checked before any load
NO_MODEL = "model.path={dir}/empty"
# the table: (arguments, text the error line must contain); {dir} is a scratch directory
# holding a model directory with pickle weights only (pickle/) and one without a checkpoint (empty/)
ROWS = [
    (["benchmark.num_prompts=0"], "benchmark.num_prompts=0 must be an integer >= 1, or null"),
    (["benchmark.num_prompts=-2"], "benchmark.num_prompts=-2 must be an integer >= 1, or null"),
    (["benchmark=jsonl"], "set benchmark.path="),
    (["benchmark=jsonl", "benchmark.path={dir}/missing.jsonl"], "set benchmark.path to a JSON lines file"),
    ([NO_MODEL], "is not a model directory: no config.json, no weights (*.safetensors), no tokenizer files"),
    (["model.path={dir}/pickle"], "holds only pickle weights (pytorch_model.bin)"),
    (["reward.path={dir}/pickle"], "reward path '{dir}/pickle' holds only pickle weights"),
    (["sampler.top_k=0"], "sampler.top_k=0 must be an integer >= 1, or null"),
    (["sampler.alg_temp=-1"], "sampler.alg_temp=-1 must be a finite number >= 0, or null"),
    (["sampler.eps=1.5"], "sampler.eps=1.5 must be a finite number in (0, 1)"),
    (["sampler.cache=dual", NO_MODEL],
     "sampler.cache=dual is refreshed at each block boundary: set sampler.block_length"),
    (["sampler.cache=full", NO_MODEL], "unknown sampler.cache='full'; set it to one of ['none', 'prefix', 'dual']"),
    (["sampler.threshold=1.5", NO_MODEL], "sampler.threshold=1.5 must be in (0, 1], or null"),
    (["sampler.threshold=0", NO_MODEL], "sampler.threshold=0 must be in (0, 1], or null"),
    (["+model.attention=block_causal", "+model.block_size=2", "sampler.block_length=4", NO_MODEL],
     "sampler.block_length=4 but the model attends in blocks of 2: set sampler.block_length=2 or null"),
    (["+model.attention=block_causal", "+model.block_size=3", NO_MODEL],
     "sampler.gen_length=4 is not a multiple of the model's block size 3"),
    (["+model.attention=block_causal", "+model.block_size=2", "sampler.cache=prefix", "sampler.block_length=2",
      NO_MODEL], "this model is block-causal and caches exactly: set sampler.cache=none"),
    (["model.max_length=30"], "(model.max_length); set benchmark.max_prompt_tokens="),
    (["seed=abc", NO_MODEL], "seed='abc' must be an integer"),
    (["num_samples=0", NO_MODEL], "num_samples=0 must be an integer >= 1"),
    (["batch_size=0", NO_MODEL], "batch_size=0 must be an integer >= 1"),
    (["method.inner_steps=0", NO_MODEL], "method.inner_steps=0 must be an integer >= 1"),
    (["method.lr=nan", NO_MODEL], "method.lr=nan must be a finite number > 0"),
    (["schedule=power", "schedule.gamma=-1", NO_MODEL], "power schedule gamma=-1 must be > 0; set schedule.gamma"),
    (["guidance.inner_steps=3", NO_MODEL], ("guidance.inner_steps moved to method.inner_steps (the guided methods' own "
                                            "settings); write method.inner_steps=3")),
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
    (pickle / "pytorch_model.bin").write_bytes(b"")  # refused by its name: its contents are never read
    return root


@pytest.mark.parametrize("args,message", ROWS, ids=[" ".join(args) for args, _ in ROWS])
def test_bad_input_exits_with_one_line_naming_the_fix(scratch, tmp_path, args, message):
    done = entrgi_cli(*FAST, *[a.format(dir=scratch) for a in args], cwd=tmp_path, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not PROGRESS_BAR.match(line)]
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("entrgi: error: "), done.stderr[-2000:]
    assert message.format(dir=scratch) in lines[0]
