"""The report: the paper's table and the paired comparisons from a real sweep, and clear messages for
what it must leave out."""

import csv
import json
import shutil
from collections import defaultdict

import pytest
from conftest import entrgi_cli

from entrgi.bookkeeping.sweep_record import job_entry, read_jobs, record_jobs
from entrgi.evaluation.judges import keyword_coverage, rouge_l
from entrgi.reporting.sweep import build


@pytest.fixture
def sweep(grid, tmp_path):
    """A private copy of the finished grid sweep, free to damage."""
    shutil.copytree(grid / "outputs/sweeps/grid", tmp_path / "grid")
    return tmp_path / "grid"


def job(sweep, prefix):
    return next(d for d in sorted(sweep.iterdir()) if d.name.startswith(prefix))


def records_by_seed(sweep, method) -> dict[str, list[dict]]:
    by_seed = defaultdict(list)
    for d in sorted(sweep.iterdir()):
        if d.name.startswith(method + "_"):
            by_seed[d.name.split("_")[2]] += [json.loads(line) for line in (d / "results.jsonl").read_text().splitlines()]
    return by_seed


def per_prompt_mean(by_seed, value) -> float:
    """Mean over prompts of ``value(record)`` averaged over the seeds that drew the prompt."""
    by_prompt = defaultdict(list)
    for records in by_seed.values():
        for record in records:
            by_prompt[record["id"]].append(value(record))
    return sum(sum(v) / len(v) for v in by_prompt.values()) / len(by_prompt)


def section(text, title):
    return text.split(title)[1].split("\n## ")[0]


def row(table_text, method):
    return next(line for line in table_text.splitlines() if line.startswith(f"| {method} |")).split(" | ")


def test_report_of_a_finished_sweep(grid, tmp_path):
    sweep = grid / "outputs/sweeps/grid"
    done = entrgi_cli(str(sweep), "--out", str(tmp_path / "report"), "--judge", "lexical", module="entrgi.report",
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "report/report.md").read_text()
    assert "Left out" not in report and "†" not in report and "[1 of 2 seeds" not in report  # every shard
    assert "8 job(s) (the sweep's grid has 8)" in report
    top1 = section(report, "## Top-1 reward")
    assert "| bon |" in top1 and "| entrgi |" in top1
    # the paper's table: mean +- stderr over the two seeds of the merged shards
    entrgi = records_by_seed(sweep, "entrgi")
    means = [sum(r["top1_reward"] for r in v) / len(v) for v in entrgi.values()]
    assert sorted(len(v) for v in entrgi.values()) == [4, 4]
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "report/table.csv").open())}
    assert float(rows["entrgi"]["tiny mean"]) == pytest.approx(sum(means) / 2)
    assert float(rows["entrgi"]["tiny stderr"]) == pytest.approx(abs(means[0] - means[1]) / 2)
    assert rows["entrgi"]["tiny seeds"] == "2"

    long = {(r["method"], r["metric"]): r for r in csv.DictReader((tmp_path / "report/results.csv").open())}
    # the guiding reward's paired gain over bon: per prompt, averaged over its seeds, then over prompts
    gain = long["entrgi", "guide/gain"]
    assert float(gain["value"]) == pytest.approx(
        per_prompt_mean(entrgi, lambda r: r["top1_reward"] - r["baseline"]["top1_reward"]))
    assert float(gain["low95"]) < float(gain["value"]) < float(gain["high95"])
    win = long["entrgi", "guide/win_rate"]
    assert float(win["value"]) == pytest.approx(per_prompt_mean(entrgi, lambda r: r["outcome"]["guide"]))
    assert float(win["low95"]) <= float(win["value"]) <= float(win["high95"])
    # the held-out judge the sweep ran, from the records: no mean@K without every answer scored
    assert float(long["entrgi", "keywords/top1"]["value"]) == pytest.approx(
        per_prompt_mean(entrgi, lambda r: r["judge"]["top1"]))
    assert ("entrgi", "keywords/mean_at_k") not in long and ("bon", "keywords/top1") not in long
    # a judge the sweep did not run (--judge lexical) scores every stored answer, bon's included
    bon = records_by_seed(sweep, "bon")
    assert float(long["bon", "lexical/mean_at_k"]["value"]) == pytest.approx(
        per_prompt_mean(bon, lambda r: sum(rouge_l(a, r["reference"]) for a in r["responses"]) / len(r["responses"])))

    def lexical_outcome(r):
        mine, theirs = rouge_l(r["responses"][r["best_index"]], r["reference"]), rouge_l(r["baseline"]["response"],
                                                                                       r["reference"])
        return 1.0 if mine > theirs else 0.5 if mine == theirs else 0.0

    assert float(long["entrgi", "lexical/win_rate"]["value"]) == pytest.approx(per_prompt_mean(entrgi, lexical_outcome))
    guide = section(report, "## Judged by the guiding reward model")
    assert row(guide, "bon")[4:6] == ["—", "—"]  # no gain or win-rate of bon over itself
    assert "| bon |" not in section(report, "## Judged by `keywords` (held out")
    assert "| bon |" in section(report, "## Judged by `lexical` (held out")
    for name in ("reward_by_method.png", "denoising_curves.png", "win_rates.png"):
        png = (tmp_path / "report" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert f"![{name}]({name})" in report


def test_the_sweeper_records_the_grid_and_a_relaunch_widens_it(grid, tmp_path):
    recorded = read_jobs(grid / "outputs/sweeps/grid")
    assert sorted(j["dir"] for j in recorded) == sorted(d.name for d in (grid / "outputs/sweeps/grid").iterdir()
                                                        if d.is_dir() and (d / "summary.json").exists())
    entry = next(j for j in recorded if j["dir"].startswith("entrgi_tiny_s2_shard1of2"))
    assert {"method=entrgi", "seed=2", "shard.index=1"} <= set(entry["overrides"])
    assert entry["settings"]["seed"] == 2 and entry["settings"]["shard"] == {"index": 1, "count": 2}
    record_jobs(tmp_path, [job_entry("b", ["x=1"], {}), job_entry("a", ["x=0"], {})])
    record_jobs(tmp_path, [job_entry("c", ["x=2"], {}), job_entry("a", ["x=0", "y=1"], {})])
    assert [(j["dir"], j["overrides"]) for j in read_jobs(tmp_path)] == [("a", ["x=0", "y=1"]), ("b", ["x=1"]),
                                                                         ("c", ["x=2"])]
    assert read_jobs(tmp_path / "nothing") is None


def test_a_missing_job_is_named_and_cells_of_fewer_seeds_are_marked(sweep, tmp_path):
    gone = [job(sweep, "entrgi_tiny_s2_shard0"), job(sweep, "entrgi_tiny_s2_shard1")]
    for d in gone:
        shutil.rmtree(d)
    done = entrgi_cli(str(sweep), "--out", str(tmp_path / "out"), module="entrgi.report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for d in gone:
        assert f"entrgi.report: left out: {d.name}: missing (entrgi on tiny, seed 2;" in done.stderr
    text = (tmp_path / "out/report.md").read_text()
    left_out = text.split("## Left out")[1]
    assert all(d.name in left_out and "seed=2" in left_out for d in gone)
    top1 = section(text, "## Top-1 reward")
    assert row(top1, "entrgi")[1].endswith("† [1 of 2 seeds: 1] |")
    assert "seeds:" not in "".join(row(top1, "bon"))
    assert row(section(text, "## Judged by the guiding reward model"), "entrgi")[-1] == "1 [1 of 2 seeds: 1] |"


def test_without_the_sweeps_record_a_missing_seed_is_still_named(sweep, tmp_path):
    (sweep / "sweep.json").unlink()
    for shard in ("entrgi_tiny_s2_shard0", "entrgi_tiny_s2_shard1"):
        shutil.rmtree(job(sweep, shard))
    text, problems = build(sweep, tmp_path / "out")
    assert problems == [("entrgi on tiny, seed 2: no job directory found, though other cells of the sweep have "
                         "seed 2 -- launch it (the sweep has no sweep.json naming its jobs)")]
    assert "[1 of 2 seeds: 1]" in row(section(text, "## Top-1 reward"), "entrgi")[1]


def test_an_empty_sweep_dir_or_an_unknown_judge_is_an_error_that_says_so(tmp_path):
    done = entrgi_cli(str(tmp_path), module="entrgi.report", cwd=tmp_path)
    assert done.returncode == 1
    assert "no finished job" in done.stderr and str(tmp_path) in done.stderr
    missing = entrgi_cli(str(tmp_path / "nope"), module="entrgi.report", cwd=tmp_path)
    assert missing.returncode == 2 and "not a directory" in missing.stderr
    judge = entrgi_cli(str(tmp_path), "--judge", "oracle", module="entrgi.report", cwd=tmp_path)
    assert judge.returncode == 2
    lines = judge.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "entrgi.report: error: --judge oracle: not a judge of conf/eval_reward; use one of ")
    assert "keywords, lexical" in lines[0]


def test_a_missing_shard_leaves_out_that_setting_only(sweep, tmp_path):
    gone = job(sweep, "entrgi_tiny_s2_shard1")
    shutil.rmtree(gone)
    text, problems = build(sweep, tmp_path / "out")
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{gone.name}: missing (entrgi on tiny, seed 2; the sweep launched it with ")
    assert problems[1] == "entrgi on tiny, seed 2: shard(s) 1 of 2 missing (have 0) -- re-launch the sweep to run them"
    assert "## Left out" in text and "shard(s) 1 of 2 missing" in text
    assert row(section(text, "## Top-1 reward"), "entrgi")[1].endswith("† [1 of 2 seeds: 1] |")  # one seed left


def test_a_results_file_cut_short_is_named(sweep, tmp_path):
    unfinished = job(sweep, "entrgi_tiny_s1_shard0")
    text = (unfinished / "results.jsonl").read_text().splitlines()
    (unfinished / "results.jsonl").write_text(text[0] + "\n" + text[1][:30])
    (unfinished / "summary.json").unlink()
    cut = job(sweep, "bon_tiny_s1_shard1")  # summary there, results cut short behind its back
    (cut / "results.jsonl").write_text((cut / "results.jsonl").read_text().splitlines()[0][:50])
    _, problems = build(sweep, tmp_path / "out")
    assert len(problems) == 4, problems
    assert any(p.startswith(f"{unfinished.name} (entrgi on tiny, seed 1): unfinished") and "1 complete prompt(s)" in p
               and "cut short" in p for p in problems)
    assert any(cut.name in p and "lacks 2 of 2 prompts" in p for p in problems)
    assert any("entrgi on tiny, seed 1: shard(s) 0 of 2 missing" in p for p in problems)
    assert any("bon on tiny, seed 1: shard(s) 1 of 2 missing" in p for p in problems)
    assert (tmp_path / "out/report.md").exists()


def test_a_baseline_of_other_settings_is_named_and_its_comparisons_left_out(sweep, tmp_path):
    for shard in ("entrgi_tiny_s1_shard0", "entrgi_tiny_s1_shard1"):
        path = job(sweep, shard) / "summary.json"
        summary = json.loads(path.read_text())
        summary["baseline"]["digest"] = "0" * 64
        summary["baseline"]["settings"]["sampler"]["steps"] = 16
        path.write_text(json.dumps(summary))
    text, problems = build(sweep, tmp_path / "out")
    assert len(problems) == 1
    assert "entrgi on tiny, seed 1" in problems[0] and "sampler.steps" in problems[0]
    assert "comparisons with bon left out" in problems[0]
    entrgi = row(section(text, "## Judged by the guiding reward model"), "entrgi")
    assert entrgi[1] != "—" and entrgi[3:6] == ["—", "—", "—"]  # its own rewards stay; bon's, gain, win-rate go
    judged = row(section(text, "## Judged by `keywords`"), "entrgi")
    assert judged[1] != "—" and judged[3:6] == ["—", "—", "—"]


def test_a_judge_rescoring_agrees_with_the_judge_the_sweep_ran(sweep, tmp_path):
    _, problems = build(sweep, tmp_path / "out", judges=["keywords"])
    assert problems == []
    long = {(r["method"], r["metric"]): float(r["value"]) for r in csv.DictReader((tmp_path / "out/results.csv").open())}
    entrgi = records_by_seed(sweep, "entrgi")
    assert long["entrgi", "keywords/top1"] == pytest.approx(per_prompt_mean(entrgi, lambda r: r["judge"]["top1"]))
    assert long["entrgi", "keywords/baseline_top1"] == pytest.approx(
        per_prompt_mean(entrgi, lambda r: r["judge"]["baseline_top1"]))
    asked = {r["id"]: r["prompt"].split("Using the words ")[1].split(", say")[0].split(" and ")
             for v in entrgi.values() for r in v}
    assert long["entrgi", "keywords/mean_at_k"] == pytest.approx(per_prompt_mean(
        entrgi, lambda r: sum(keyword_coverage(a, asked[r["id"]]) for a in r["responses"]) / len(r["responses"])))


def test_rejudging_reads_verdicts_so_a_declined_answer_is_unscored_and_a_pairwise_judge_is_refused():
    from types import SimpleNamespace

    from entrgi.bookkeeping.records import PromptResult
    from entrgi.errors import ConfigError
    from entrgi.evaluation.judges import Verdict
    from entrgi.reporting.loading import load_judge, rejudge

    class Declines:  # a pointwise judge without `score`, as ifeval and lmunit are: it declines answers with "?"
        name, forwards = "picky", 0

        def verdicts(self, prompts, responses):
            return [Verdict(None, error="unreadable") if "?" in r else Verdict(float(len(r))) for r in responses]

    def result(id_, responses):
        return PromptResult(id=id_, prompt="p", reference=None, responses=responses, rewards=[0.0, 1.0],
                            best_index=1, top1_reward=1.0, mean_reward=0.5, trace={}, cost={},
                            baseline={"method": "bon", "response": "bon!", "top1_reward": 1.0})
    setting = SimpleNamespace(method="entrgi", judged={},
                              records=[result("a", ["x", "yyy"]), result("b", ["z?", "zz"])])
    rejudge([setting], Declines())
    scored, declined = setting.judged["picky"]["a"], setting.judged["picky"]["b"]
    assert (scored.top1, scored.mean_at_k, scored.baseline_top1, scored.outcome) == (3.0, 2.0, 4.0, 0.0)
    assert (declined.top1, declined.mean_at_k, declined.outcome) == (2.0, None, 0.0)  # its top-1 was scored
    with pytest.raises(ConfigError, match="compares two answers"):
        load_judge("pairwise")
