"""Bad input to each entrypoint, one table per entrypoint: exit 1 (report: 2) with one line naming the fix,
before Hydra makes a directory or any model loads; nothing written.

The rows cover each kind of failure the demanding-user pass found: results silently wrong (exit 0),
tracebacks, checks that came only after the models loaded, Hydra's multi-line output, and settings
accepted without a word. The entrypoints run in this process (their ``cli``/``main``); one row each
also runs as a subprocess, for the real exit status and stderr.
"""

import json
import shutil
from pathlib import Path

import pytest
from conftest import entrgi_cli

import entrgi.from_config
import entrgi.run
import entrgi.train
from entrgi import costs, report
from entrgi.evaluation.benchmarks import ASSETS

FAST = ["logger=none"]
RUN_ROWS = [  # (kind, arguments, text the one line must contain); {dir}: the scratch directory
    ("silently wrong", ["method.lr=inf"], "method.lr=inf must be a finite number > 0"),
    ("silently wrong", ["benchmark=jsonl", "benchmark.path={dir}/repeated.jsonl", "benchmark.id_field=id"],
     "1 id(s) name more than one prompt ('x'; ids are compared as strings)"),
    ("silently wrong", ["benchmark=jsonl", "benchmark.path={dir}/one_and_quoted_one.jsonl", "benchmark.id_field=id"],
     "1 id(s) name more than one prompt ('1'; ids are compared as strings)"),
    ("traceback", ["benchmark=jsonl", "benchmark.path={dir}"], "is a directory, not a file; set benchmark.path"),
    ("traceback", ["model.path={dir}/cut-dllm"], "model weights '{dir}/cut-dllm/model.safetensors' are damaged"),
    ("traceback", ["seed=18446744073709551616"], "seed=18446744073709551616 must be an integer in [0, 2**63)"),
    ("traceback", ["sampler.temperature=inf"], "sampler.temperature=inf must be a finite number > 0"),
    ("traceback", ["benchmark.num_prompts=2", "shard.count=3", "shard.index=2"],
     "shard.count=3 is more than benchmark.num_prompts=2"),
    ("traceback", ["benchmark=jsonl", "benchmark.path={dir}/two.jsonl", "shard.count=3", "shard.index=2"],
     "shard.count=3 is more than the benchmark's 2 prompts"),
    ("late", ["method.window=[0.5,0.2]"], "method.window=[0.5, 0.2] must be [start, stop] with 0 <= start < stop <= 1"),
    ("late", ["sampler.block_length=5"], "sampler.gen_length=32 is not a multiple of sampler.block_length=5"),
    ("late", ["model.max_length=32"], "leaves no room for a prompt in model.max_length=32"),
    ("late", ["logger.type=tensorboard"], "logger.type='tensorboard' must be one of ['wandb', 'none']"),
    ("late", ["device=gpu"], "device='gpu' is not a device; use auto, cpu, cuda or cuda:<index>"),
    ("late", ["reward.min_coverage=2"], "reward.min_coverage=2 must be a finite number in [0, 1]"),
    ("multi-line", ["method=nosuch"], "method=nosuch: conf/method/ has no nosuch.yaml; choose one of aps, base, bon"),
    ("multi-line", ["-m", "method=bon,entrgy"], "method=entrgy: conf/method/ has no entrgy.yaml; did you mean entrgi?"),
    ("multi-line", ["-m", "method=bon,entrgi", "method.inner_stps=3"],
     "method.inner_stps is not a setting: method has no key 'inner_stps'; did you mean method.inner_steps?"),
    ("multi-line", ["sampler.gen_lenght=32"], "sampler.gen_lenght is not a setting: sampler has no key 'gen_lenght'; "
                                              "did you mean sampler.gen_length"),
    ("accepted", ["sampler.steps=64"], "sampler.steps=64 is more than sampler.gen_length=32"),
    ("accepted", ["schedule=power", "schedule.gamma=inf"], "schedule.gamma=inf must be a finite number"),
]
TRAIN_ROWS = [
    ("silently wrong", ["train.steps=0"], "train.steps=0 must be an integer >= 1"),
    ("silently wrong", ["train.steps=-1"], "train.steps=-1 must be an integer >= 1"),
    ("traceback", ["train.lora.r=0"], "train.lora.r=0 must be an integer >= 1"),
    ("traceback", ["train.lr=-1e-5"], "train.lr=-1e-05 must be a finite number > 0"),
    ("traceback", ["train.lora.dropout=1.5"], "train.lora.dropout=1.5 must be a finite number in [0, 1)"),
    ("traceback", ["train.batch_size=0"], "train.batch_size=0 must be an integer >= 2"),
    ("late", ["train.estimator=nosuch"], "train.estimator='nosuch' must be one of ['one_step', 'elbo']"),
    ("late", ["logger.type=tensorboard"], "logger.type='tensorboard' must be one of ['wandb', 'none']"),
    ("late", ["model.max_length=16"], "leaves no room for a prompt in model.max_length=16"),
    ("late", ["train.lora.target_modules=[q_proj,nosuch]"], "train.lora.target_modules names ['nosuch'], which the "
                                                           "model does not have; choose among its linear layers"),
    ("multi-line", ["train=nosuch"], "train=nosuch: conf/train/ has no nosuch.yaml; choose one of diffu_grpo, rft"),
    ("multi-line", ["train.stpes=3"], "train.stpes is not a setting: train has no key 'stpes'; "
                                      "did you mean train.steps"),
    ("accepted", ["train.save_every=0"], "train.save_every=0 must be an integer >= 1"),
    ("accepted", ["train.likelihood_attention=none"], "train.likelihood_attention='none' must be one of"),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-files")
    rows = {"repeated": [{"id": "x", "prompt": "a"}, {"id": "x", "prompt": "b"}],
            "one_and_quoted_one": [{"id": 1, "prompt": "a"}, {"id": "1", "prompt": "b"}],
            "two": [{"prompt": "a"}, {"prompt": "b"}]}
    for name, lines in rows.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    cut = root / "cut-dllm"
    shutil.copytree(ASSETS / "tiny-dllm", cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])  # a copy cut short
    return root


@pytest.fixture
def nothing_starts(monkeypatch, tmp_path):
    """Fail a row that gets as far as Hydra (which makes the output directory) or loading a model; the
    working directory is an empty ``tmp_path``."""
    def reached(what):
        def fail(*_, **__):
            raise AssertionError(f"{what} was reached")
        return fail

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(entrgi.run, "main", reached("entrgi.run's Hydra main"))
    monkeypatch.setattr(entrgi.train, "main", reached("entrgi.train's Hydra main"))
    monkeypatch.setattr(entrgi.from_config, "load_models", reached("model loading"))
    return tmp_path


def exits_with_one_line(capsys, cwd, call, message):
    with pytest.raises(SystemExit) as exit:
        call()
    line = exit.value.code  # what the interpreter prints to stderr before exiting with status 1
    out = capsys.readouterr()
    assert isinstance(line, str) and "\n" not in line and line.startswith("entrgi: error: "), line
    assert message in line, line
    assert out.out == "" and out.err == "", out  # nothing else printed
    assert not any(Path(cwd).iterdir())  # nothing written


@pytest.mark.parametrize("kind,args,message", RUN_ROWS, ids=[f"{k}: {' '.join(a)}" for k, a, _ in RUN_ROWS])
def test_entrgi_run_refuses_bad_input_in_one_line_before_anything_starts(scratch, nothing_starts, capsys, kind,
                                                                         args, message):
    exits_with_one_line(capsys, nothing_starts, lambda: entrgi.run.cli([*FAST, *[a.format(dir=scratch) for a in args]]),
                        message.format(dir=scratch))


@pytest.mark.parametrize("kind,args,message", TRAIN_ROWS, ids=[f"{k}: {' '.join(a)}" for k, a, _ in TRAIN_ROWS])
def test_entrgi_train_refuses_bad_input_in_one_line_before_anything_starts(nothing_starts, capsys, kind, args,
                                                                           message):
    exits_with_one_line(capsys, nothing_starts, lambda: entrgi.train.cli([*FAST, *args]), message)


def test_entrgi_train_without_its_extra_names_the_install_command(nothing_starts, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "accelerate" else find_spec(name, *rest))
    exits_with_one_line(capsys, nothing_starts, lambda: entrgi.train.cli([]),
                        "post-training needs accelerate (the [train] extra); install it with pip install -e '.[train]'")


@pytest.mark.parametrize("module,args,message", [
    ("entrgi.run", ["method=nosuch"], "conf/method/ has no nosuch.yaml"),
    ("entrgi.train", ["train.steps=0"], "train.steps=0 must be an integer >= 1"),
])
def test_the_command_line_exits_1_with_one_line_and_no_output_directory(tmp_path, module, args, message):
    done = entrgi_cli(*args, cwd=tmp_path, module=module, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.splitlines() == [done.stderr.strip()] and message in done.stderr, done.stderr[-2000:]
    assert not any(tmp_path.iterdir())


# -- the readers: entrgi.report and entrgi.costs ----------------------------------------------------------

def finished_job(directory: Path, method: str = "entrgi") -> Path:
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps({
        "method": method, "num_prompts": 1, "num_samples": 2, "prompt_ids": ["a"],
        "cost_total": {"sampling_seconds": 1.0, "dllm_forwards": 4},
        "flops": {"per_prompt": {"total": 1.0, "dllm": 1.0, "reward_forward": 0.0, "reward_backward": 0.0},
                  "per_sequence": {}}}))
    return directory


COSTS_ROWS = [  # (what the job directory holds, extra arguments, the one line)
    ("a cut summary.json", lambda d: (d / "summary.json").write_text('{"method": "entrgi", "num_pr'), [],
     "summary.json is not valid JSON (line 1, column 22: Unterminated string"),
    ("a summary that is a list", lambda d: (d / "summary.json").write_text("[1, 2]"), [],
     "summary.json holds a JSON list, not a job's summary"),
    ("a summary without its keys", lambda d: (d / "summary.json").write_text('{"flops": {}}'), [],
     "summary.json lacks method, num_prompts, num_samples, prompt_ids, cost_total"),
    ("--bon given an entrgi job", lambda d: None, ["--bon", "{job}"], "is a entrgi job, not best-of-K"),
]


@pytest.mark.parametrize("holds,damage,extra,message", COSTS_ROWS, ids=[row[0] for row in COSTS_ROWS])
def test_entrgi_costs_refuses_a_damaged_or_wrong_job_in_one_line(tmp_path, capsys, holds, damage, extra, message):
    job = finished_job(tmp_path / "job")
    damage(job)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit:
        costs.main([str(job), *[a.format(job=job) for a in extra]])
    line = exit.value.code
    assert isinstance(line, str) and "\n" not in line and line.startswith("entrgi.costs: error: "), line
    assert message in line and capsys.readouterr().out == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


REPORT_ROWS = [  # (what the sweep holds, the one line)
    ("a cut summary.json", {"job/results.jsonl": "", "job/summary.json": '{"prompt_'},
     "job/summary.json is not valid JSON"),
    ("a summary without prompt ids", {"job/summary.json": '{"method": "bon"}'},
     "job/summary.json lists no prompt_ids: not a finished job's summary"),
    ("a cut sweep.json", {"sweep.json": '{"jobs": [{"dir": "a", "overr', "job/summary.json": "{}"},
     "sweep.json is not valid JSON"),
    ("a sweep.json without jobs", {"sweep.json": '{"grid": []}', "job/summary.json": "{}"},
     "sweep.json has no list of jobs"),
]


@pytest.mark.parametrize("holds,files,message", REPORT_ROWS, ids=[row[0] for row in REPORT_ROWS])
def test_entrgi_report_refuses_a_damaged_file_in_one_line(tmp_path, capsys, holds, files, message):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert report.main([str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.splitlines()) == 1 and out.err.startswith("entrgi.report: error: "), out
    assert message in out.err
    assert not (tmp_path / "report").exists()
