"""Files on shared storage and concurrent jobs: modes, read-only readers, locks, directory names and claims."""

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import compose_config
from filelock import FileLock

from entrgi.bookkeeping.baseline import BaselineCache
from entrgi.bookkeeping.settings import claim_directory, job_name, safe_name
from entrgi.bookkeeping.storage import ResultsLog, locked, write_atomic, write_json
from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it after."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_create_files_as_the_umask_says(tmp_path, umask, mask, mode):
    umask(mask)
    write_atomic(tmp_path / "results.jsonl", "{}\n")
    write_json(tmp_path / "summary.json", {"a": 1})
    for name in ("results.jsonl", "summary.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl", "summary.json"]  # no temporary left


def records(*ids):
    return [{"id": i, "value": len(i)} for i in ids]


def torn_log(path: Path, tail: str = '{"id": "c", "val') -> str:
    """A log whose writer was killed mid-line (or before the last line's newline)."""
    text = "".join(json.dumps(r) + "\n" for r in records("a", "b")) + tail
    path.write_text(text)
    return text


def test_opening_a_results_log_only_reads_it(tmp_path):
    path = tmp_path / "results.jsonl"
    text = torn_log(path)
    before = path.stat().st_mtime_ns
    log = ResultsLog(path)
    assert log.done() == {"a", "b"}
    assert path.read_text() == text and path.stat().st_mtime_ns == before


@pytest.mark.parametrize("tail", ['{"id": "c", "val', json.dumps({"id": "c"})])  # cut mid-line, or before "\n"
def test_the_first_append_drops_a_torn_tail_before_appending(tmp_path, tail):
    path = tmp_path / "results.jsonl"
    torn_log(path, tail)
    log = ResultsLog(path)
    log.append(records("d"))
    log.append(records("e"))
    kept = [json.loads(line)["id"] for line in path.read_text().splitlines()]
    assert kept == (["a", "b", "c", "d", "e"] if tail.endswith("}") else ["a", "b", "d", "e"])


def test_a_held_lock_is_skipped_at_once_and_taken_when_free(tmp_path):
    lock_path = tmp_path / "job" / ".job.lock"
    lock_path.parent.mkdir()
    other = FileLock(str(lock_path))  # another launcher's hold on the same file
    with other:
        with locked(lock_path, wait=False) as mine:
            assert mine is False
    with locked(lock_path, wait=False) as mine:
        assert mine is True
        with locked(lock_path, wait=False) as second:
            assert second is False
    with locked(lock_path, wait=False) as mine:  # released on leaving the block
        assert mine is True


def test_a_filled_baseline_cache_is_read_without_a_lock_or_a_write(tmp_path):
    prompts = [Prompt("a", "first"), Prompt("b", "second")]
    cache = BaselineCache(tmp_path / "cache", {"seed": 0})
    filled = cache.records(prompts, lambda batch: records(*[p.id for p in batch]), batch_size=1)
    (tmp_path / "cache" / f"{cache.dir.name}.lock").unlink()
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in cache.dir.iterdir()}

    def must_not_sample(batch):
        raise AssertionError("a filled cache was sampled again")

    reader = BaselineCache(tmp_path / "cache", {"seed": 0})
    assert reader.records(prompts[::-1], must_not_sample, batch_size=1) == filled[::-1]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in cache.dir.iterdir()} == files
    assert not (tmp_path / "cache" / f"{cache.dir.name}.lock").exists()
    # a prompt it lacks: the reader becomes a writer, under the lock, and samples only that prompt
    more = reader.records(prompts + [Prompt("c", "third")], lambda batch: records(*[p.id for p in batch]), 1)
    assert [r["id"] for r in more] == ["a", "b", "c"]


@pytest.mark.parametrize("name", ["../../escaped", "/abs/path", "..", ".hidden", "a b\\c"])
def test_job_directory_names_stay_one_component_of_the_sweep_directory(tmp_path, name):
    sweep = tmp_path / "sweep"
    cfg = compose_config(f"method.name='{name}'", "benchmark.name=tiny/../x")
    job = sweep / job_name(cfg)
    assert job.parent == sweep and not job.name.startswith(".") and ".." not in Path(job.name).parts
    assert safe_name(name) == safe_name(safe_name(name))  # already safe names are kept as they are


def test_a_run_with_an_adapter_is_named_by_it_in_a_single_run_and_in_a_sweep():
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from entrgi.run import CONF_DIR

    adapter = "outputs/train/rgrl_tiny_train_s0_1a2b3c4d/adapter"
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"model.adapter={adapter}", "method=base"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        run_dir = Path(cfg.hydra.run.dir).name
    assert run_dir.endswith("_base_tiny_adapter=rgrl_tiny_train_s0_1a2b3c4d")
    assert job_name(cfg).startswith("base_tiny_adapter=rgrl_tiny_train_s0_1a2b3c4d_s0_")
    untrained = job_name(compose_config("method=base"))
    assert untrained.startswith("base_tiny_s0_") and untrained != job_name(cfg)


def test_a_safe_job_name_is_kept_as_it_is():
    assert safe_name("entrgi_tiny_s0_1a2b3c4d") == "entrgi_tiny_s0_1a2b3c4d"


def test_a_directory_claimed_by_a_run_that_wrote_no_results_is_free(tmp_path):
    job = tmp_path / "job"
    claim_directory(job, {"sampler": {"steps": 4}})  # a run that failed before its first prompt
    (job / "results.jsonl").write_text('{"id": "a", "resp')  # at most a torn line
    digest = claim_directory(job, {"sampler": {"steps": 2}})  # the corrected re-run takes it
    assert json.loads((job / "settings.json").read_text())["digest"] == digest
    (job / "results.jsonl").write_text(json.dumps({"id": "a"}) + "\n")  # one complete result
    with pytest.raises(ConfigError, match="other settings.*sampler.steps"):
        claim_directory(job, {"sampler": {"steps": 4}})
