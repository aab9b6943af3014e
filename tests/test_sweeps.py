"""Sweeps end to end through the CLI: deterministic job dirs, the shared baseline, W&B offline,
resume after a kill, sharding, and the local launchers."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import GRID, TINY, compose_config, entrgi_cli
from wandb_offline import read_run

from entrgi.run import run


def jobs_of(sweep_dir: Path) -> dict[str, Path]:
    return {d.name: d for d in sweep_dir.iterdir() if (d / "settings.json").exists()}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_sweep_puts_each_job_in_a_directory_named_by_its_settings(grid):
    jobs = jobs_of(grid / "outputs/sweeps/grid")
    assert len(jobs) == 8
    for name in jobs:
        assert re.fullmatch(r"(bon|entrgi)_tiny_s[12]_shard[01]of2_[0-9a-f]{8}", name), name
    for job in jobs.values():
        summary = json.loads((job / "summary.json").read_text())
        assert summary["num_prompts"] == 2 and summary["shard"]["count"] == 2


def test_the_baseline_is_sampled_once_per_setting_and_shared(grid):
    caches = sorted(p for p in (grid / "outputs/baselines").iterdir() if p.is_dir())
    assert len(caches) == 2  # one per seed: method and shard do not change best-of-K's samples
    jobs = jobs_of(grid / "outputs/sweeps/grid")
    for cache in caches:
        records = lines(cache / "results.jsonl")
        assert len(records) == len({r["id"] for r in records}) == 4  # both shards' prompts, none twice
    def seed(name):
        return name.split("_")[2]

    bon = {(seed(name), r["id"]): r for name, d in jobs.items() if name.startswith("bon")
           for r in lines(d / "results.jsonl")}
    compared = 0
    for name, job in jobs.items():
        if name.startswith("entrgi"):
            summary = json.loads((job / "summary.json").read_text())
            for record in lines(job / "results.jsonl"):
                base = bon[(seed(name), record["id"])]
                assert record["baseline"]["top1_reward"] == base["top1_reward"]
                assert record["baseline"]["response"] == base["responses"][base["best_index"]]
                expected = 1.0 if record["top1_reward"] > base["top1_reward"] else (
                    0.5 if record["top1_reward"] == base["top1_reward"] else 0.0)
                assert record["outcome"]["guide"] == expected
                compared += 1
            rate = summary["win_rate"]["guide"]
            assert rate["low"] <= rate["rate"] <= rate["high"] and rate["n"] == 2
            assert summary["cost_total"]["peak_memory_bytes"] > 0
            assert summary["cost_total"]["job_wall_clock_seconds"] > 0
    assert compared == 8


def test_wandb_offline_gets_config_group_curves_table_and_summary(grid):
    jobs = jobs_of(grid / "outputs/sweeps/grid")
    name = next(n for n in jobs if n.startswith("entrgi_tiny_s1_shard0"))
    (run_dir,) = (jobs[name] / "wandb").glob("offline-run-*")
    logged = read_run(run_dir)
    assert logged["group"] == "grid"
    assert {"entrgi", "tiny", "seed=1"} <= set(logged["tags"])
    assert logged["config"]["method"]["name"] == "entrgi" and logged["config"]["shard"]["index"] == 0
    summary = json.loads((jobs[name] / "summary.json").read_text())
    assert logged["summary"]["top1_reward/mean"] == pytest.approx(summary["top1_reward"]["mean"])
    assert logged["summary"]["win_rate/guide/rate"] == pytest.approx(summary["win_rate"]["guide"]["rate"])
    curves = [row for row in logged["history"] if "denoising/step" in row]
    assert [row["denoising/step"] for row in curves] == [0, 1, 2, 3]  # T = 4 denoising steps
    records = lines(jobs[name] / "results.jsonl")
    for row in curves:
        step = row["denoising/step"]
        expected = sum(r["trace"]["guided_reward"][step] for r in records) / len(records)
        assert row["denoising/guided_reward"] == pytest.approx(expected, abs=1e-4)
        assert 0 <= row["denoising/entropy_weight"] <= 1
    progress = [row for row in logged["history"] if "progress/prompts_done" in row]
    assert progress[-1]["progress/prompts_done"] == 2
    (table_file,) = (run_dir / "files/media/table").glob("prompts_*.table.json")
    table = json.loads(table_file.read_text())
    assert "baseline_response" in table["columns"] and len(table["data"]) == 2
    assert {row[0] for row in table["data"]} == {r["id"] for r in records}


def test_relaunching_a_finished_sweep_launches_nothing(grid):
    before = {p: p.stat().st_mtime_ns for p in (grid / "outputs/sweeps/grid").rglob("summary.json")}
    again = entrgi_cli("-m", *GRID, "sweep=grid", *TINY, "batch_size=1", cwd=grid)  # batch size: same job
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipping 8 finished job(s) of 8; launching 0" in again.stderr + again.stdout
    assert {p: p.stat().st_mtime_ns for p in (grid / "outputs/sweeps/grid").rglob("summary.json")} == before


def test_a_killed_sweep_finishes_only_what_is_missing_at_prompt_granularity(grid, tmp_path):
    shutil.copytree(grid, tmp_path, dirs_exist_ok=True)
    jobs = jobs_of(tmp_path / "outputs/sweeps/grid")
    name = next(n for n in jobs if n.startswith("entrgi_tiny_s2_shard1"))
    job = jobs[name]
    original = {r["id"]: r for r in lines(job / "results.jsonl")}
    # killed mid-job: one prompt written, the next line half-written, no summary
    text = (job / "results.jsonl").read_text().splitlines()
    (job / "results.jsonl").write_text(text[0] + "\n" + text[1][:40])
    (job / "summary.json").unlink()
    shutil.rmtree(job / "wandb")
    resumed = entrgi_cli("-m", *GRID, "sweep=grid", *TINY, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    output = resumed.stderr + resumed.stdout
    assert "skipping 7 finished job(s) of 8; launching 1" in output
    assert "resuming: 1 of 2 prompts already done" in output
    records = lines(job / "results.jsonl")
    assert [r["id"] for r in records] == list(original)
    for record in records:
        assert record["responses"] == original[record["id"]]["responses"]
    # the same W&B run continues: the id comes from the settings
    (first_run,) = (grid / "outputs/sweeps/grid" / name / "wandb").glob("offline-run-*")
    (second_run,) = (job / "wandb").glob("offline-run-*")
    assert first_run.name.split("-")[-1] == second_run.name.split("-")[-1]


def test_shards_partition_the_prompts_and_do_not_change_them(grid, tmp_path):
    jobs = jobs_of(grid / "outputs/sweeps/grid")
    sharded = {r["id"]: r for n, d in jobs.items() if n.startswith("entrgi_tiny_s1") for r in lines(d / "results.jsonl")}
    whole = tmp_path / "whole"
    run(compose_config(*TINY, "method=entrgi", "seed=1", "logger=none",
                       f"baseline.cache_dir={grid / 'outputs/baselines'}"), whole)
    unsharded = {r["id"]: r for r in lines(whole / "results.jsonl")}
    assert sharded.keys() == unsharded.keys() and len(unsharded) == 4
    for prompt_id, record in unsharded.items():
        assert sharded[prompt_id]["responses"] == record["responses"]


def test_a_directory_of_other_settings_is_refused(tmp_path):
    from entrgi.errors import ConfigError

    run(compose_config(*TINY, "benchmark.num_prompts=1", "method=bon", "logger=none",
                       f"baseline.cache_dir={tmp_path / 'cache'}"), tmp_path / "job")
    with pytest.raises(ConfigError, match="other settings.*sampler.steps"):
        run(compose_config(*TINY, "benchmark.num_prompts=1", "method=bon", "logger=none", "sampler.steps=2"),
            tmp_path / "job")


@pytest.mark.slow
def test_submitit_local_launcher_runs_and_resumes_a_sweep(tmp_path):
    args = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "method=bon,expectation",
            "sweep=sub", *TINY, "benchmark.num_prompts=1", "logger=none"]
    first = entrgi_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    jobs = jobs_of(tmp_path / "outputs/sweeps/sub")
    assert sorted(n.split("_")[0] for n in jobs) == ["bon", "expectation"]
    assert all((d / "summary.json").exists() for d in jobs.values())
    assert list((tmp_path / "outputs/sweeps/sub/.submitit").iterdir())  # the jobs went through submitit
    again = entrgi_cli(*args, cwd=tmp_path)
    assert "skipping 2 finished job(s) of 2; launching 0" in again.stderr + again.stdout


@pytest.mark.slow
def test_parallel_launcher_pins_each_worker_to_its_own_gpu(tmp_path):
    # on a machine without GPUs the pinning is still visible: each job records CUDA_VISIBLE_DEVICES
    args = ["-m", "hydra/launcher=parallel", "hydra.launcher.gpus=[0,1]", "method=bon", "seed=1,2,3",
            "sweep=par", *TINY, "benchmark.num_prompts=1", "logger=none"]
    done = entrgi_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [json.loads((d / "summary.json").read_text()) for d in jobs_of(tmp_path / "outputs/sweeps/par").values()]
    assert len(summaries) == 3
    by_gpu = {}
    for summary in summaries:
        gpu = summary["environment"]["cuda_visible_devices"]
        assert gpu in ("0", "1")
        by_gpu.setdefault(gpu, []).append((summary["started_at"], summary["finished_at"]))
    for spans in by_gpu.values():  # never two jobs on one GPU at once
        spans.sort()
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))


def test_parallel_launcher_gpu_list():
    from hydra_plugins.entrgi_hydra.parallel_launcher import visible_gpus

    assert visible_gpus([0, 2]) == ["0", "2"]
    assert visible_gpus([]) == []
    os.environ["CUDA_VISIBLE_DEVICES"], saved = "3,5", os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        assert visible_gpus("auto") == ["3", "5"]
    finally:
        if saved is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


def test_a_held_out_judge_scores_both_top1_responses(tmp_path):
    # the tiny reward model as its own "held-out" judge: its verdicts must agree with the guide's
    judge = ["eval_reward.type=reward_model", "eval_reward.name=tiny_judge", "+eval_reward.path=${asset:tiny-reward}",
             "+eval_reward.trust_remote_code=false"]
    summary = run(compose_config(*TINY, "method=expectation", "logger=none", *judge), tmp_path / "job")
    records = lines(tmp_path / "job/results.jsonl")
    for record in records:
        assert record["judge"]["name"] == "tiny_judge"
        assert record["judge"]["top1"] == pytest.approx(record["top1_reward"], abs=1e-4)
        assert record["judge"]["baseline_top1"] == pytest.approx(record["baseline"]["top1_reward"], abs=1e-4)
        if abs(record["top1_reward"] - record["baseline"]["top1_reward"]) > 1e-3:
            assert record["outcome"]["judge"] == record["outcome"]["guide"]
    assert summary["win_rate"]["judge"]["judge"] == "tiny_judge"
    assert summary["win_rate"]["judge"]["n"] == 4


def test_a_setting_only_some_swept_methods_have_goes_to_those_methods(tmp_path):
    args = ["-m", "method=bon,entrgi", "method.inner_steps=3,2", "sweep=mixed", *TINY, "benchmark.num_prompts=1",
            "logger=none"]
    done = entrgi_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "method.inner_steps left out of the bon jobs" in done.stderr + done.stdout
    sweep = tmp_path / "outputs/sweeps/mixed"
    jobs = jobs_of(sweep)
    assert sorted(n.split("_")[0] for n in jobs) == ["bon", "entrgi", "entrgi"]  # bon once, not once per value
    settings = {name: json.loads((d / "settings.json").read_text())["settings"] for name, d in jobs.items()}
    assert sorted(s["method"]["inner_steps"] for n, s in settings.items() if n.startswith("entrgi")) == [2, 3]
    (bon,) = [s for n, s in settings.items() if n.startswith("bon")]
    assert "inner_steps" not in bon["method"]
    plain = compose_config("method=bon", "sweep=mixed", *TINY, "benchmark.num_prompts=1", "logger=none")
    from entrgi.bookkeeping.settings import job_name
    assert job_name(plain) in jobs  # the same job as bon swept alone
    recorded = json.loads((sweep / "sweep.json").read_text())["jobs"]
    assert all("method.inner_steps" not in " ".join(j["overrides"]) for j in recorded if j["dir"].startswith("bon"))


def test_a_setting_no_swept_method_has_is_still_refused(tmp_path):
    done = entrgi_cli("-m", "method=bon,entrgi", "method.inner_stepz=3", "sweep=typo", "logger=none", cwd=tmp_path)
    assert done.returncode != 0 and "inner_stepz" in done.stderr
    assert not (tmp_path / "outputs/sweeps/typo").exists() or not jobs_of(tmp_path / "outputs/sweeps/typo")
