"""conf/ composes with Hydra's compose API as any config directory does, with no call into entrgi
first: in a fresh interpreter, the way a notebook would."""

import subprocess
import sys
import textwrap

from entrgi.run import CONF_DIR

NOTEBOOK = textwrap.dedent("""
    import json, sys
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
        run = compose(config_name="config", overrides=["method=aps"])
        train = compose(config_name="train")
    print(json.dumps({"run": OmegaConf.to_container(run, resolve=True),
                      "train": OmegaConf.to_container(train, resolve=True)}))
""")


def test_conf_composes_in_a_fresh_interpreter_with_no_extra_call():
    import json

    from entrgi.sampling.sampler import SamplerConfig

    done = subprocess.run([sys.executable, "-c", NOTEBOOK, CONF_DIR], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    composed = json.loads(done.stdout.splitlines()[-1])
    run = composed["run"]
    assert run["method"]["name"] == "aps" and run["method"]["family"] == "gradient"
    assert run["sampler"]["temperature"] == SamplerConfig().temperature  # a default the code holds, not conf/
    assert run["model"]["path"].endswith("tiny-dllm")  # ${asset:...} resolved
    assert "max_prompt_tokens" in run["benchmark"]  # the loader's defaults
    assert composed["train"]["train"]["recipe"] == "rgrl"
