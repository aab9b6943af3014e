"""W&B: offline unless asked, disabled by config, online without an account, and its files kept in the job."""

import os

import pytest
from conftest import compose_config, entrgi_cli
from wandb_offline import read_run

from entrgi.bookkeeping.logging_wandb import JOB_DIRS, has_credentials, mode_to_use
from entrgi.errors import ConfigError
from entrgi.run import run

ONE = ["benchmark.num_prompts=1", "sampler.gen_length=8", "sampler.steps=4", "method=bon"]


@pytest.fixture
def no_account(monkeypatch, tmp_path):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", *JOB_DIRS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # if anything did go online, it fails fast


def test_credentials_come_from_the_environment_or_netrc(no_account, monkeypatch, tmp_path):
    assert not has_credentials()
    (tmp_path / "netrc").write_text("machine 127.0.0.1 login user password abc\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert has_credentials()
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert has_credentials()


def test_the_default_is_offline_and_online_without_an_account_logs_offline(no_account, tmp_path):
    assert compose_config().logger.mode == "offline"  # WANDB_MODE unset: nothing is uploaded unless asked
    cfg = compose_config(*ONE, "logger.mode=online", f"baseline.cache_dir={tmp_path / 'cache'}")
    summary = run(cfg, tmp_path / "job")
    (run_dir,) = (tmp_path / "job/wandb").glob("offline-run-*")
    logged = read_run(run_dir)
    assert logged["summary"]["top1_reward/mean"] == pytest.approx(summary["top1_reward"]["mean"])
    assert logged["config"]["logger"]["mode"] == "offline"  # what ran, not what was asked
    assert mode_to_use("online") == "offline" and mode_to_use("disabled") == "disabled"
    assert not set(JOB_DIRS) & set(os.environ)  # the job's W&B directories are unset again after it


def test_an_offline_run_keeps_every_wandb_file_in_its_directory(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    xdg = {"XDG_CACHE_HOME": home / ".cache", "XDG_DATA_HOME": home / ".local/share", "XDG_CONFIG_HOME": home / ".config"}
    done = entrgi_cli(*ONE, "logger.mode=offline", f"hydra.run.dir={tmp_path / 'job'}", cwd=tmp_path,
                      env={"HOME": str(home), **{k: str(v) for k, v in xdg.items()}}, unset=[*JOB_DIRS, "WANDB_DIR"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.relative_to(home) for p in home.rglob("*")] == []
    wandb_dir = tmp_path / "job/wandb"
    assert len(list(wandb_dir.glob("offline-run-*/files/media/table/prompts_*.table.json"))) == 1
    assert list((wandb_dir / "cache").rglob("core-debug-*.log"))  # wandb-core's own log, which defaults to ~/.cache


def test_wandb_mode_comes_from_the_environment_and_config_can_disable_it(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert compose_config().logger.mode == "offline"
    run(compose_config(*ONE, "logger.mode=disabled", f"baseline.cache_dir={tmp_path / 'cache'}"), tmp_path / "job")
    assert (tmp_path / "job/summary.json").exists()
    assert not list((tmp_path / "job").glob("wandb/offline-run-*"))


def test_an_unknown_mode_or_logger_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="logger.mode"):
        run(compose_config(*ONE, "logger.mode=sometimes", f"baseline.cache_dir={tmp_path}"), tmp_path / "a")
    with pytest.raises(ConfigError, match="logger.type"):
        run(compose_config(*ONE, "logger.type=tensorboard", f"baseline.cache_dir={tmp_path}"), tmp_path / "b")
