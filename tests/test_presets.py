"""The sweep presets and launcher configs compose into what they promise."""

from pathlib import Path

import pytest
from conftest import compose_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from entrgi.run import CONF_DIR


def compose_with_hydra(*overrides):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_paper_preset_holds_the_papers_grid_and_settings():
    preset = OmegaConf.load(Path(CONF_DIR) / "experiment/paper.yaml")
    assert preset.num_samples == 4 and preset.benchmark.num_prompts == 64
    assert (preset.sampler.gen_length, preset.sampler.steps) == (128, 128)
    assert (preset.sampler.temperature, preset.sampler.top_p) == (0.7, 0.95)
    params = preset.hydra.sweeper.params
    assert params.method.split(",") == ["bon", "aps", "expectation", "entrgi"]
    assert params.benchmark.split(",") == ["rm_bench", "judgebench", "reward_bench_2"]
    assert params.seed.split(",") == ["1", "2", "3"]
    cfg = compose_with_hydra("experiment=paper")
    assert cfg.model.name == "dream" and cfg.sweep == "paper"
    assert cfg.sampler.gen_length == 128 and cfg.benchmark.num_prompts == 64
    guided = compose_config("experiment=paper", "method=entrgi").method
    assert (guided.inner_steps, guided.lr) == (3, 0.5)


def test_tiny_grid_preset_composes():
    cfg = compose_with_hydra("experiment=tiny_grid")
    assert cfg.sweep == "tiny_grid" and cfg.model.name == "tiny"
    assert cfg.hydra.sweeper.params.method == "bon,expectation,aps,entrgi"
    assert cfg.hydra.sweep.dir == "outputs/sweeps/tiny_grid"


def test_tiny_study_preset_is_every_method_on_every_held_out_prompt_with_the_judge():
    cfg = compose_with_hydra("experiment=tiny_study")
    assert cfg.sweep == "tiny_study" and cfg.model.name == "tiny" and cfg.benchmark.num_prompts is None
    assert cfg.eval_reward.type == "keywords"
    assert cfg.hydra.sweeper.params.method == "bon,expectation,aps,entrgi"
    assert cfg.hydra.sweeper.params.seed == "0,1,2"


@pytest.mark.parametrize("launcher,target", [("slurm", "SlurmLauncher"), ("parallel", "ParallelLauncher"),
                                             ("submitit_local", "LocalLauncher")])
def test_launcher_configs_compose(launcher, target):
    cfg = compose_with_hydra(f"hydra/launcher={launcher}")
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.hydra.sweeper._target_.endswith("ResumingSweeper")
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.max_num_timeout > 0
