"""W&B modes: offline by environment, disabled by config, and online without an account."""

import pytest
from conftest import compose_config
from wandb_offline import read_run

from entrgi.bookkeeping.logging_wandb import has_credentials
from entrgi.errors import ConfigError
from entrgi.run import run

ONE = ["benchmark.num_prompts=1", "sampler.gen_length=8", "sampler.steps=4", "method=bon"]


@pytest.fixture
def no_account(monkeypatch, tmp_path):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE"):
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


def test_default_online_mode_without_an_account_logs_offline(no_account, tmp_path):
    cfg = compose_config(*ONE, f"baseline.cache_dir={tmp_path / 'cache'}")
    assert cfg.logger.mode == "online"  # the default when WANDB_MODE is not set
    summary = run(cfg, tmp_path / "job")
    (run_dir,) = (tmp_path / "job/wandb").glob("offline-run-*")
    assert read_run(run_dir)["summary"]["top1_reward/mean"] == pytest.approx(summary["top1_reward"]["mean"])


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
