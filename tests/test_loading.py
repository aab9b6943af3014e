"""Loading safely and saying why a load failed: no remote code unless a config asks, safetensors only,
no shell or eval, and messages that name what a model directory lacks and the download command."""

import ast
import importlib.metadata
import pickle
import shutil
from pathlib import Path

import pytest
from conftest import compose_config
from omegaconf import OmegaConf

import entrgi.models.loaders.auto
import entrgi.models.reward
from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import ASSETS
from entrgi.from_config import load_models
from entrgi.models.loading import download_command
from entrgi.models.reward import RewardModel
from entrgi.run import CONF_DIR

PACKAGE = Path(entrgi.models.__file__).resolve().parents[1]


def test_no_config_turns_on_remote_code():
    for path in sorted(Path(CONF_DIR).rglob("*.yaml")):
        assert "trust_remote_code: true" not in path.read_text().lower(), path


def test_the_default_stack_loads_without_remote_code_and_through_safetensors_only(monkeypatch):
    calls = []

    class Recording:  # stands between entrgi's loading code and transformers' from_pretrained
        def __init__(self, loader):
            self.loader = loader

        def from_pretrained(self, path, **kwargs):
            calls.append((getattr(self.loader, "__name__", ""), kwargs))
            return self.loader.from_pretrained(path, **kwargs)

    for module in (entrgi.models.loaders, entrgi.models.loaders.auto, entrgi.models.reward):
        real = module.from_pretrained
        monkeypatch.setattr(module, "from_pretrained",
                            lambda loader, *a, _real=real, **k: _real(Recording(loader), *a, **k))
    load_models(compose_config())
    assert calls and all(not kwargs.get("trust_remote_code", False) for _, kwargs in calls)
    weights = [(name, kwargs) for name, kwargs in calls if "dtype" in kwargs]  # the model loads
    assert {name for name, _ in weights} == {"AutoModelForCausalLM", "AutoModelForSequenceClassification"}
    assert all(kwargs["use_safetensors"] is True for _, kwargs in weights)


def calls_in(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_the_package_runs_no_shell_eval_exec_or_unpickling():
    unsafe = {"eval", "exec", "compile", "os.system", "os.popen", "pickle.load", "pickle.loads", "torch.load",
              "__import__"}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node, name in calls_in(ast.parse(path.read_text())):
            assert name not in unsafe, f"{path}:{node.lineno} calls {name}"
            shell = [k for k in node.keywords if k.arg == "shell"]
            assert not shell or (isinstance(shell[0].value, ast.Constant) and shell[0].value.value is False), \
                f"{path}:{node.lineno} runs a shell"


@pytest.fixture
def reward_copy(tmp_path):
    """A copy of the shipped reward model's directory, to break."""
    return Path(shutil.copytree(ASSETS / "tiny-reward", tmp_path / "reward"))


class WritesAFile:
    """Unpickling this creates ``path``: what a malicious pickle weight file could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_model_with_only_pickle_weights_is_refused_before_anything_is_unpickled(reward_copy, tmp_path):
    (reward_copy / "model.safetensors").unlink()
    (reward_copy / "pytorch_model.bin").write_bytes(pickle.dumps(WritesAFile(tmp_path / "pwned")))
    with pytest.raises(ConfigError, match=r"holds only pickle weights \(pytorch_model.bin\).*safetensors"):
        RewardModel.load(str(reward_copy), device="cpu")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("remove,missing", [
    (["tokenizer.json", "tokenizer_config.json"], "no tokenizer files"),  # transformers builds an empty one
    (["model.safetensors"], "no weights (*.safetensors)"),
    (["config.json"], "no config.json"),
])
def test_a_directory_that_is_not_a_model_says_what_it_lacks(reward_copy, remove, missing):
    for name in remove:
        (reward_copy / name).unlink()
    with pytest.raises(ConfigError, match="is not a model directory") as error:
        RewardModel.load(str(reward_copy), device="cpu")
    assert missing in str(error.value) and "reward.path" in str(error.value)


def test_the_download_command_is_the_one_the_installed_hub_client_has(monkeypatch):
    assert download_command("org/model") == "hf download org/model --local-dir <dir>"
    assert download_command("org/data", "dataset") == "hf download --repo-type dataset org/data --local-dir <dir>"

    class OldClient:  # huggingface-hub before 0.34: only huggingface-cli
        entry_points = [importlib.metadata.EntryPoint("huggingface-cli", "x:main", "console_scripts")]

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: OldClient)
    assert download_command("org/model") == "huggingface-cli download org/model --local-dir <dir>"


def test_an_offline_hub_model_names_the_download_command():
    cfg = compose_config("reward=skywork")
    with pytest.raises(ConfigError, match=r"\(hf download Skywork/\S+ --local-dir <dir>\) and set reward.path=<dir>"):
        RewardModel.load(OmegaConf.select(cfg, "reward.path"), device="cpu")
