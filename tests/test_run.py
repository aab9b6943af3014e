import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_config

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.comparison import summary_lines
from entrgi.evaluation.judges.keywords import KeywordJudge
from entrgi.evaluation.metrics import mean_stderr
from entrgi.run import CONF_DIR, run

FAST = ["sampler.gen_length=16", "sampler.steps=8", "benchmark.num_prompts=4"]


def cli(*args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "entrgi.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800)  # minutes on an idle machine; far more on a shared one


def group_options():
    # train: entrgi.train's group (tests/test_train.py); accelerate: accelerate launch's configs, not Hydra's
    others = ("experiment", "train", "accelerate")
    for group in sorted(p for p in Path(CONF_DIR).iterdir() if p.is_dir() and p.name not in others):
        for option in sorted(group.glob("*.yaml")):
            yield group.name, option.stem


@pytest.mark.parametrize("group,option", list(group_options()))
def test_every_config_group_option_composes(group, option):
    cfg = compose_config(f"{group}={option}")
    assert cfg[group] is not None


@pytest.mark.parametrize("method,schedule", [("base", "none"), ("bon", "none"), ("expectation", "constant"),
                                             ("aps", "constant"), ("entrgi", "entropy")])
def test_each_method_picks_its_schedule_and_a_user_may_override_it(method, schedule):
    cfg = compose_config(f"method={method}")
    assert cfg.method.name == method and cfg.schedule.name == schedule
    if method == "expectation":
        assert cfg.schedule.value == 0.0
    if method == "aps":
        assert cfg.schedule.value == 1.0
    assert compose_config(f"method={method}", "schedule=power").schedule.name == "power"


def test_cli_prints_the_composed_config_and_lists_choices_for_an_unknown_one(tmp_path):
    printed = cli("method=aps", "--cfg", "job", cwd=tmp_path)
    assert printed.returncode == 0 and "name: aps" in printed.stdout
    unknown = cli("method=nope", cwd=tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr.splitlines() == ["entrgi: error: method=nope: conf/method/ has no nope.yaml; choose one of "
                                           "aps, base, bon, entrgi, expectation, fk, rws, svdd"]


def test_default_run_completes_offline_and_writes_results(tmp_path):
    done = cli(cwd=tmp_path)  # no arguments: EntRGi on the embedded default
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = next((tmp_path / "outputs").glob("runs/*/*"))
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(records) == summary["num_prompts"] == 16
    record = records[0]
    assert len(record["responses"]) == len(record["rewards"]) == 4
    assert record["top1_reward"] == max(record["rewards"]) == record["rewards"][record["best_index"]]
    assert record["mean_reward"] == pytest.approx(sum(record["rewards"]) / 4)
    assert len(record["trace"]["entropy_weight"]) == len(record["trace"]["guided_reward"]) > 0
    assert summary["top1_reward"]["mean"] == pytest.approx(sum(r["top1_reward"] for r in records) / 16)
    assert summary["cost_total"]["dllm_forwards"] > 0 and summary["cost_per_prompt"]["reward_backwards"] > 0
    assert summary["environment"]["torch"]
    assert (run_dir / "config.yaml").exists()
    # the answer's reward, labelled as such, against best-of-K's on the same prompts
    printed = summary_block(done.stdout)
    assert f"answer reward         {summary['answer_reward']['mean']:+.4f}" in printed
    assert f"bon answer reward     {summary['baseline']['top1_reward']['mean']:+.4f}" in printed
    # the tiny benchmark brings its held-out judge: win-rate and mean scores by a judge guidance never saw
    assert "win-rate vs bon, judge keywords:" in printed and "judge keywords, answer" in printed
    assert summary["judge"]["judge"] == "keywords" and 0 <= summary["judge"]["top1"]["mean"] <= 1
    assert "denoising" in done.stderr and "bon (shared baseline)" in done.stderr  # progress within a batch
    assert_quiet_console(done.stderr)
    assert printed in (run_dir / "run.log").read_text()  # the log holds the summary the console showed


def summary_block(stdout: str) -> str:
    """The summary lines at the end of a run's console, checked to give one figure a line (a mean and its
    standard error, a win-rate and its interval, or a cost), no figure twice."""
    lines = stdout.strip().split("\n\n")[-1].splitlines()
    firsts = []
    for line in lines[1:-1]:  # not the header, not the results path
        found = re.findall(r"[-+]?\d+\.\d+|\d+ MiB", line)
        assert 1 <= len(found) <= (3 if "[" in line else 2), line
        firsts.append(found[0])
    assert len(firsts) == len(set(firsts)), lines
    return "\n".join(lines)


def assert_quiet_console(stderr: str) -> None:
    """No library warning, no weight-loading bar, no W&B banner: the runner's own lines and progress only."""
    for noise in ("Warning", "warn(", "Loading weights", "wandb:"):
        assert noise not in stderr, stderr[-3000:]


def test_a_single_run_judges_itself_against_bon_with_the_lexical_judge(tmp_path):
    summary = run(compose_config(*FAST, "method=aps", "eval_reward=lexical"), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert all(r["judge"]["name"] == "lexical" and 0 <= r["judge"]["top1"] <= 1 for r in records)
    assert summary["win_rate"]["judge"]["judge"] == "lexical"


def test_a_single_run_judges_the_asked_words_with_the_keyword_judge(tmp_path):
    summary = run(compose_config(*FAST, "method=entrgi", "eval_reward=keywords"), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    judge = KeywordJudge()
    for r in records:
        top1 = r["responses"][r["best_index"]]
        assert r["judge"] == {**r["judge"], "name": "keywords",
                              "top1": judge.score([Prompt(r["id"], r["prompt"])], [top1])[0]}
    assert summary["win_rate"]["judge"]["judge"] == "keywords"


def records_of(out_dir):
    return {r["id"]: r for r in map(json.loads, (out_dir / "results.jsonl").read_text().splitlines())}


# the block modes: rows commit different numbers of positions and finish their blocks apart
BLOCK_MODES = ["sampler.block_length=8", "sampler.cache=dual", "sampler.threshold=0.3"]


# a block-causal dLLM: a job batches its prompts by where their blocks start (SamplingSetup.batch_key)
BLOCK_CAUSAL = ["+model.attention=block_causal", "+model.block_size=4"]


@pytest.mark.parametrize("mode", [[], BLOCK_MODES, BLOCK_CAUSAL], ids=["default", "block-modes", "block-causal"])
def test_results_do_not_depend_on_the_batch_size(tmp_path, mode):
    one = records_of_run(tmp_path / "b1", "batch_size=1", *mode)
    four = records_of_run(tmp_path / "b4", "batch_size=4", *mode)
    assert one.keys() == four.keys()
    for prompt_id in one:
        assert one[prompt_id]["responses"] == four[prompt_id]["responses"]
        assert one[prompt_id]["rewards"] == pytest.approx(four[prompt_id]["rewards"], abs=1e-4)


def records_of_run(out_dir, *overrides):
    run(compose_config(*FAST, *overrides), out_dir)
    return records_of(out_dir)


@pytest.mark.parametrize("mode", [[], BLOCK_MODES], ids=["default", "block-modes"])
def test_a_killed_run_resumes_without_repeating_or_losing_prompts(tmp_path, mode):
    full = records_of_run(tmp_path / "full", "batch_size=2", *mode)
    # a job killed mid-write: one complete record and half of the next line
    lines = (tmp_path / "full" / "results.jsonl").read_text().splitlines()
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "results.jsonl").write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    summary = run(compose_config(*FAST, "batch_size=2", *mode), partial)
    resumed = records_of(partial)
    assert len((partial / "results.jsonl").read_text().splitlines()) == 4  # no duplicate, no half line
    assert resumed.keys() == full.keys()
    for prompt_id in full:
        assert resumed[prompt_id]["responses"] == full[prompt_id]["responses"]
    assert summary["num_prompts"] == 4


@pytest.mark.parametrize("overrides,message", [
    (["model.path=/nonexistent/model"], "model.path"),
    (["reward.min_coverage=1.01"], "min_coverage"),
    (["model.max_length=20"], "gen_length"),
    (["schedule.name=wobbly"], "schedule"),
    (["sampler.alg=greedy"], "sampler.alg"),
    (["sampler.block_length=5"], "block_length"),
    (["schedule=sigmoid", "schedule.width=0"], "schedule.width"),
])
def test_bad_input_fails_with_a_message_that_names_the_fix(tmp_path, overrides, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        run(compose_config(*FAST, *overrides), tmp_path)


def test_an_empty_benchmark_fails_with_a_message(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no prompts"):
        run(compose_config(*FAST, "benchmark=jsonl", f"benchmark.path={empty}"), tmp_path / "out")


def test_cli_reports_bad_input_in_one_line(tmp_path):
    failed = cli("model.path=/nonexistent/model", cwd=tmp_path)
    assert failed.returncode != 0
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("entrgi: error:") and "model.path" in last


@pytest.mark.parametrize("method", ["expectation", "aps", "entrgi"])
def test_guidance_raises_the_guiding_reward_over_unguided_sampling(tmp_path, method):
    common = ["sampler.gen_length=32", "sampler.steps=16", "benchmark.num_prompts=16", "batch_size=8"]
    base = records_of_run(tmp_path / "base", *common, "method=base")
    guided = records_of_run(tmp_path / method, *common, f"method={method}")
    gain = mean_stderr([guided[i]["mean_reward"] - base[i]["mean_reward"] for i in base])
    assert gain["n"] == 16
    assert gain["mean"] > 2 * gain["stderr"] > 0, gain


def test_base_answers_with_one_unselected_sample_and_so_never_beats_best_of_k(tmp_path):
    cache = f"baseline.cache_dir={tmp_path / 'cache'}"  # this test's own: base draws the samples
    summary = run(compose_config(*FAST, "method=base", cache), tmp_path / "base")
    records = records_of(tmp_path / "base")
    for record in records.values():
        assert record["outcome"]["guide"] == (0.5 if record["rewards"][0] == record["top1_reward"] else 0.0)
    assert summary["win_rate"]["guide"]["rate"] <= 0.5
    # its summary is about the answer it gives, its first sample, not about the best of its K
    assert summary["answer_reward"] == mean_stderr([r["rewards"][0] for r in records.values()])
    lines = summary_lines(summary, tmp_path / "base")
    assert "its answer: its first unguided sample, unselected" in lines[0]
    assert [line for line in lines if line.split()[:2] == ["answer", "reward"]] == [
        f"  answer reward         {summary['answer_reward']['mean']:+.4f} +- {summary['answer_reward']['stderr']:.4f}"
        f"  (guiding reward of base's answer)"]
    # its top-1 is best-of-K's answer (the same samples): shown once, as bon's
    top1 = f"{summary['top1_reward']['mean']:+.4f}"
    assert [line.split()[:3] for line in lines if top1 in line] == [["bon", "answer", "reward"]]
    assert "(base's samples)" in "\n".join(lines)  # it drew them: the shared cache was empty
    bon = run(compose_config(*FAST, "method=bon", cache), tmp_path / "bon")  # the same samples, from the cache
    assert "4 of 4 prompts read from the cache" in "\n".join(summary_lines(bon, tmp_path / "bon"))


def test_a_guided_summary_says_its_answer_is_its_top1_and_which_samples_this_job_drew(tmp_path):
    summary = run(compose_config(*FAST, "method=aps", "logger=none", f"baseline.cache_dir={tmp_path / 'cache'}"),
                  tmp_path / "aps")
    assert summary["answer_reward"] == summary["top1_reward"] and summary["answer_is_top1"]
    assert summary["baseline"]["prompts_sampled_here"] == 4  # this job drew best-of-K's samples too
    lines = "\n".join(summary_lines(summary, tmp_path / "aps"))
    assert "top-1 of its K" not in lines and "drawing best-of-K's samples of 4 prompts" in lines
    assert "(aps's samples)" in lines


def test_a_run_directory_and_summary_name_the_choices_made(tmp_path):
    done = cli(*FAST, "schedule=power", "schedule.gamma=0.5", "logger=none", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = next((tmp_path / "outputs").glob("runs/*/*"))
    assert run_dir.name.endswith("_entrgi_tiny_benchmark.num_prompts=4,sampler.gen_length=16,sampler.steps=8,"
                                 "schedule.gamma=0.5,schedule=power")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "schedule=power" in summary["overrides"] and "schedule.gamma=0.5" in summary["overrides"]
    assert "entrgi (" in done.stdout and "schedule=power" in done.stdout


def test_ctrl_c_ends_a_run_with_one_line_saying_how_to_resume(tmp_path):
    import signal
    import time

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    err = tmp_path / "stderr"
    with err.open("w") as handle:
        process = subprocess.Popen([sys.executable, "-m", "entrgi.run", "logger=none", "hydra.run.dir=job"],
                                   cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=handle)
        deadline = time.time() + 600
        while "denoising" not in err.read_text() and time.time() < deadline and process.poll() is None:
            time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    lines = [line for line in err.read_text().replace("\r", "\n").splitlines() if line.strip()]
    assert process.returncode == 1
    assert lines[-1].startswith("entrgi: interrupted; finished batches are saved in ")
    assert "Traceback" not in err.read_text()
