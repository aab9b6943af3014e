"""scripts/bench.py runs end to end, on the tiny shapes and on the real widths cut to one layer."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import bench  # noqa: E402

FAST = ["--threads", "1", "--repeat", "1", "--prompts", "1", "--samples", "2", "--gen-length", "8", "--steps", "4",
        "--inner-steps", "2", "--prompt-length", "6"]


def test_bench_reports_parts_throughput_flops_and_sweeps(tmp_path, capsys):
    out = tmp_path / "bench.json"
    report = bench.main(FAST + ["--vocab", "512", "--sweep", "gen_length=4,8", "--sweep", "vocab=256,1024",
                                "--json", str(out)])
    assert json.loads(out.read_text())["main"]["flops"] == report["main"]["flops"]
    main = report["main"]
    assert set(bench.PARTS) <= set(main["parts_seconds"]) and main["parts_seconds"]["reward_backward"] > 0
    assert main["prompts_per_second"] > 0 and main["committed_tokens_per_second"] > 0
    flops = main["flops"]
    assert flops["total"] == pytest.approx(flops["per_guided_step"] * flops["guided_steps"])
    # more positions and a bigger vocabulary cost more FLOPs
    by_length = [r["flops"]["total"] for r in report["sweeps"]["gen_length"]]
    by_vocab = [r["flops"]["per_guided_step"] for r in report["sweeps"]["vocab"]]
    assert by_length[0] < by_length[1] and by_vocab[0] < by_vocab[1]
    assert "reward_backward" in capsys.readouterr().out


@pytest.mark.slow
def test_paper_preset_builds_and_runs_a_guided_step_at_one_layer(tmp_path):
    # Dream-7B / Skywork-Reward-V2-Qwen3-1.7B widths, one layer each and a small vocabulary
    report = bench.main(FAST + ["--preset", "dream-skywork", "--layers", "1", "--vocab", "1024", "--dtype", "bf16",
                                "--gen-length", "4", "--steps", "2", "--no-breakdown", "--json",
                                str(tmp_path / "b.json")])
    setting, flops = report["main"]["setting"], report["main"]["flops"]
    assert setting["preset"] == "dream-skywork" and flops["guided_steps"] == 2
    # a 3584-wide Qwen2 layer is ~0.47 GFLOP of linear work per token: 2 rows x (6 + 4) tokens
    assert flops["dllm_forward_per_step"] > 0.45e9 * 2 * (6 + 4)


def test_bench_runs_the_block_modes_and_counts_the_columns_they_compute(tmp_path):
    def columns(*args):
        report = bench.main(FAST + ["--vocab", "512", "--no-breakdown", "--no-unguided", "--json",
                                    str(tmp_path / "b.json"), *args])
        return report["main"]["flops"]

    full = columns()
    dual = columns("--block-length", "4", "--cache", "dual", "--threshold", "0.5")
    block_causal = columns("--block-causal", "4")
    assert dual["dllm_columns_per_sample"] < full["dllm_columns_per_sample"]
    assert block_causal["dllm_total"] < full["dllm_total"]
    assert dual["denoising_steps_per_sample"] <= full["denoising_steps_per_sample"]
    # prompts of 6, 5 and 4 tokens start their blocks at three offsets and are stepped in three groups:
    # the guided steps are those of the longest of them alone, not the groups' steps added up
    alone = [columns("--block-causal", "4", "--prompt-length", str(n))["guided_steps"] for n in (6, 5, 4)]
    assert columns("--block-causal", "4", "--prompts", "3")["guided_steps"] == max(alone)
