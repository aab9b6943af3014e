"""The report: the paper's table from a real sweep, and clear messages for what it must leave out."""

import csv
import json
import shutil

import pytest
from conftest import entrgi_cli

from entrgi.report import build


@pytest.fixture
def sweep(grid, tmp_path):
    """A private copy of the finished grid sweep, free to damage."""
    shutil.copytree(grid / "outputs/sweeps/grid", tmp_path / "grid")
    return tmp_path / "grid"


def job(sweep, prefix):
    return next(d for d in sorted(sweep.iterdir()) if d.name.startswith(prefix))


def test_report_of_a_finished_sweep(grid, tmp_path):
    done = entrgi_cli(str(grid / "outputs/sweeps/grid"), "--out", str(tmp_path / "report"), module="entrgi.report",
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "report/report.md").read_text()
    assert "Left out" not in report and "†" not in report  # two seeds, all shards there
    top1 = report.split("## Top-1 reward")[1].split("##")[0]
    assert "| bon |" in top1 and "| entrgi |" in top1
    assert "Win-rate of top-1 vs best-of-K, judged by the guiding reward model" in report
    # the table's numbers are mean +- stderr over the two seeds of the merged shards
    per_seed = {}
    for d in (grid / "outputs/sweeps/grid").iterdir():
        if d.name.startswith("entrgi"):
            seed = d.name.split("_")[2]
            for line in (d / "results.jsonl").read_text().splitlines():
                per_seed.setdefault(seed, []).append(json.loads(line)["top1_reward"])
    means = [sum(v) / len(v) for v in per_seed.values()]
    assert all(len(v) == 4 for v in per_seed.values())
    rows = {row["method"]: row for row in csv.DictReader((tmp_path / "report/table.csv").open())}
    assert float(rows["entrgi"]["tiny mean"]) == pytest.approx(sum(means) / 2)
    assert float(rows["entrgi"]["tiny stderr"]) == pytest.approx(abs(means[0] - means[1]) / 2)
    assert rows["entrgi"]["tiny seeds"] == "2"
    long = list(csv.DictReader((tmp_path / "report/results.csv").open()))
    win = next(r for r in long if r["method"] == "entrgi" and r["metric"] == "win_rate_guide")
    assert float(win["low95"]) <= float(win["value"]) <= float(win["high95"])
    # the paired gain over bon: per prompt, averaged over the seeds that drew it, then over prompts
    gains = {}
    for d in (grid / "outputs/sweeps/grid").iterdir():
        if d.name.startswith("entrgi"):
            for line in (d / "results.jsonl").read_text().splitlines():
                record = json.loads(line)
                gains.setdefault(record["id"], []).append(record["top1_reward"] - record["baseline"]["top1_reward"])
    gain = next(r for r in long if r["method"] == "entrgi" and r["metric"] == "top1_reward_gain")
    assert float(gain["value"]) == pytest.approx(sum(sum(g) / len(g) for g in gains.values()) / len(gains))
    assert float(gain["low95"]) < float(gain["value"]) < float(gain["high95"])
    assert "| bon |" not in report.split("## Top-1 reward gain over best-of-K")[1].split("##")[0]
    for name in ("reward_by_method.png", "denoising_curves.png"):
        png = (tmp_path / "report" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert f"![{name}]({name})" in report


def test_an_empty_sweep_dir_is_an_error_that_says_so(tmp_path):
    done = entrgi_cli(str(tmp_path), module="entrgi.report", cwd=tmp_path)
    assert done.returncode == 1
    assert "no finished job" in done.stderr and str(tmp_path) in done.stderr
    missing = entrgi_cli(str(tmp_path / "nope"), module="entrgi.report", cwd=tmp_path)
    assert missing.returncode == 2 and "not a directory" in missing.stderr


def test_a_missing_shard_leaves_out_that_setting_only(sweep, tmp_path):
    shutil.rmtree(job(sweep, "entrgi_tiny_s2_shard1"))
    text, problems = build(sweep, tmp_path / "out")
    assert problems == ["entrgi on tiny, seed 2: shard(s) 1 of 2 missing (have 0) -- re-launch the sweep to run them"]
    assert "## Left out" in text and "shard(s) 1 of 2 missing" in text
    top1 = text.split("## Top-1 reward")[1].split("##")[0]
    assert "| entrgi | " in top1 and "†" in top1.split("| entrgi |")[1].splitlines()[0]  # one seed left


def test_a_results_file_cut_short_is_named(sweep, tmp_path):
    unfinished = job(sweep, "entrgi_tiny_s1_shard0")
    text = (unfinished / "results.jsonl").read_text().splitlines()
    (unfinished / "results.jsonl").write_text(text[0] + "\n" + text[1][:30])
    (unfinished / "summary.json").unlink()
    cut = job(sweep, "bon_tiny_s1_shard1")  # summary there, results cut short behind its back
    (cut / "results.jsonl").write_text((cut / "results.jsonl").read_text().splitlines()[0][:50])
    _, problems = build(sweep, tmp_path / "out")
    assert len(problems) == 4, problems
    assert any(unfinished.name in p and "unfinished" in p and "1 complete prompt(s)" in p and "cut short" in p
               for p in problems)
    assert any(cut.name in p and "lacks 2 of 2 prompts" in p for p in problems)
    assert any("entrgi on tiny, seed 1: shard(s) 0 of 2 missing" in p for p in problems)
    assert any("bon on tiny, seed 1: shard(s) 1 of 2 missing" in p for p in problems)
    assert (tmp_path / "out/report.md").exists()


def test_a_baseline_of_other_settings_is_named_and_its_win_rates_left_out(sweep, tmp_path):
    for shard in ("entrgi_tiny_s1_shard0", "entrgi_tiny_s1_shard1"):
        path = job(sweep, shard) / "summary.json"
        summary = json.loads(path.read_text())
        summary["baseline"]["digest"] = "0" * 64
        summary["baseline"]["settings"]["sampler"]["steps"] = 16
        path.write_text(json.dumps(summary))
    text, problems = build(sweep, tmp_path / "out")
    assert len(problems) == 1
    assert "entrgi on tiny, seed 1" in problems[0] and "sampler.steps" in problems[0]
    assert "win-rates left out" in problems[0]
    guide = text.split("judged by the guiding reward model")[1].split("##")[0]
    assert "| entrgi | — |" in guide
