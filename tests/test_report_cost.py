"""The report's cost columns and plot, on a hand-made sweep: FLOPs and seconds relative to bon."""

import csv
import json
from dataclasses import asdict

import pytest
import yaml
from test_report import row, section

from entrgi.bookkeeping.costs import SequenceFlops
from entrgi.bookkeeping.records import PromptResult
from entrgi.reporting.sweep import build

HAND = SequenceFlops(dllm_forward=10, reward_text_forward=3, reward_embedding_forward=2, reward_backward=4,
                     relaxation=1, reward_prefix=5)


def write_job(sweep, method, num_samples, counts, seconds, top1, win=None, trace=None):
    """A finished two-prompt job whose prompts have the same per-prompt ``counts`` and ``seconds``; its
    baseline is the bon run of the same K."""
    job = sweep / f"{method}_k{num_samples}"
    job.mkdir(parents=True)
    config = {"method": {"name": method}, "num_samples": num_samples, "seed": 0, "shard": {"index": 0, "count": 1},
              "model": {"name": "tiny"}, "reward": {"name": "tiny"}, "sampler": {"gen_length": 8, "steps": 4},
              "benchmark": {"name": "tiny"}}
    (job / "config.yaml").write_text(yaml.safe_dump(config))
    cost = {**counts, "seconds": seconds}

    def compared(j):  # with bon, by the guiding reward and by the keyword judge
        return {"outcome": {"guide": win[j], "judge": win[j]}, "baseline": {"top1_reward": 0.0},
                "judge": {"name": "keywords", "top1": 0.5, "baseline_top1": 0.4}} if win else {}

    records = [PromptResult(id=i, prompt="p", reference=None, responses=["r"], rewards=[top1 + j], best_index=0,
                            top1_reward=top1 + j, mean_reward=top1 + j, trace=trace or {}, cost=cost, **compared(j))
               for j, i in enumerate(["a", "b"])]
    (job / "results.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    summary = {"method": method, "benchmark": "tiny", "seed": 0, "num_prompts": 2, "num_samples": num_samples,
               "prompt_ids": ["a", "b"], "cost_per_prompt": counts,
               "cost_total": {**{k: 2 * v for k, v in counts.items()}, "sampling_seconds": 2 * seconds,
                              "peak_memory_bytes": 2**20},
               "baseline": {"digest": f"bon{num_samples}"},
               "flops": {"per_prompt": HAND.per_prompt(counts, num_samples), "per_sequence": asdict(HAND)}}
    (job / "summary.json").write_text(json.dumps(summary))


def test_cost_relative_to_bon_and_the_cost_plot(tmp_path):
    sweep = tmp_path / "sweep"
    # K = 4 samples of 4 steps: bon scores 4 texts; entrgi adds 12 guided passes; bon at N = 10
    write_job(sweep, "bon", 4, {"dllm_forwards": 16, "reward_forwards": 4, "reward_backwards": 0}, 1.0, 0.0)
    fidelity = {"step": [0, 1], "relaxation_gap": [0.5, 0.2], "relaxation_correlation": [float("nan"), 0.9]}
    write_job(sweep, "entrgi", 4, {"dllm_forwards": 16, "reward_forwards": 16, "reward_backwards": 12}, 3.0, 1.0,
              win=[1.0, 0.5], trace=fidelity)
    write_job(sweep, "bon", 10, {"dllm_forwards": 40, "reward_forwards": 10, "reward_backwards": 0}, 2.5, 0.5)
    text, problems = build(sweep, tmp_path / "report")
    assert problems == []
    table = section(text, "## Cost relative to bon")
    # entrgi: 160 + 68 + 60 = 288 FLOPs per prompt against 4 unguided samples of 4 x 10 + 3; 3 s against 1 s
    entrgi = row(table, "entrgi num_samples=4")
    assert entrgi[5:9] == ["288", "3.00", f"{288 / 172:.2f}", "3.00 |"]
    assert row(table, "bon num_samples=10")[7:9] == ["1.00", "1.00 |"] and row(table, "bon num_samples=4")[7] == "1.00"
    long = {(r["method"], r["variant"], r["metric"]): r for r in csv.DictReader((tmp_path / "report/results.csv").open())}
    assert float(long["entrgi", "num_samples=4", "cost/relative_flops"]["value"]) == pytest.approx(288 / 172)
    assert float(long["entrgi", "num_samples=4", "cost/flops_reward_forward"]["value"]) == 68
    for name in ("cost_tiny.png", "relaxation_fidelity.png"):  # diagnostics.relaxation traced: its plot
        png = (tmp_path / "report" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and f"![{name}]({name})" in text


def test_a_sweep_without_flops_has_no_cost_section(tmp_path):
    sweep = tmp_path / "sweep"
    write_job(sweep, "bon", 4, {"dllm_forwards": 16, "reward_forwards": 4, "reward_backwards": 0}, 1.0, 0.0)
    path = sweep / "bon_k4" / "summary.json"
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "flops"}))
    text, _ = build(sweep, tmp_path / "report")
    assert "## Cost relative to bon" not in text and "cost_tiny.png" not in text
    assert "relaxation_fidelity.png" not in text
    assert "## Cost per prompt" in text
