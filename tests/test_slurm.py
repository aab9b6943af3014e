"""A sweep as a real Slurm job array: a private one-node cluster on localhost (scripts/slurm/cluster.sh),
Hydra's submitit Slurm launcher, the tiny default stack. It changes the system (apt-get installs
Slurm, munge and MariaDB the first time), so it runs only when asked: ``ENTRGI_TEST_SLURM=1``, as
``.ci/run`` sets it; it also needs root and apt-get. Skipped, with the reason, otherwise. The
cluster's daemons are stopped at the end."""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import TINY, entrgi_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
CLUSTER = Path(__file__).resolve().parents[1] / "scripts/slurm/cluster.sh"


def free_port_base(start: int = 17817) -> int:
    """The first of four consecutive free TCP ports on 127.0.0.1 (slurmctld, slurmd, slurmdbd, MariaDB)."""
    for base in range(start, start + 400, 4):
        try:
            for port in range(base, base + 4):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no four consecutive free ports for the test cluster")


@pytest.fixture(scope="module")
def slurm_env():
    if os.environ.get("ENTRGI_TEST_SLURM") != "1":
        pytest.skip("installs Slurm, munge and MariaDB with apt-get and starts their daemons; "
                    "run it with ENTRGI_TEST_SLURM=1 (as root)")
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root")
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        pytest.skip("Slurm is not installed and apt-get is not there to install it")
    env = dict(os.environ, SLURM_LOCAL_DIR=f"/tmp/entrgi-slurm-test-{os.getpid()}",
               SLURM_LOCAL_PORT_BASE=str(free_port_base()), SLURM_LOCAL_START_TIMEOUT="120")
    installed = subprocess.run([str(CLUSTER), "install"], env=env, capture_output=True, text=True, timeout=900)
    if installed.returncode != 0:
        pytest.skip(f"cannot install Slurm with apt-get: {installed.stderr.strip().splitlines()[-1:]}")
    started = subprocess.run([str(CLUSTER), "start"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        env["SLURM_CONF"] = started.stdout.strip().removeprefix("export SLURM_CONF=")
        yield env
    finally:  # stops only the daemons this cluster's start recorded, and removes its directory
        stopped = subprocess.run([str(CLUSTER), "stop"], env=env, capture_output=True, text=True, timeout=300)
        assert stopped.returncode == 0, stopped.stderr[-3000:]


def sacct(env) -> dict[str, str]:
    """Every job step allocation the cluster knows: job id -> state."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-S", "now-1days"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("|")[:2] for line in out.splitlines() if line)


def wait_for_sacct(env, count: int, timeout: float = 30) -> dict[str, str]:
    """sacct lags squeue by a moment: poll until ``count`` jobs show a final state."""
    end = time.time() + timeout
    while True:
        jobs = sacct(env)
        final = {j: s for j, s in jobs.items() if s not in ("PENDING", "RUNNING", "COMPLETING")}
        if len(final) >= count or time.time() > end:
            return jobs
        time.sleep(0.5)


def test_a_sweep_runs_as_a_slurm_array_resumes_and_reports(slurm_env, tmp_path):
    args = ["-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10", "method=bon,entrgi", "shard.count=2",
            "shard.index=0,1", "sweep=slurm", *TINY]
    env = {"SLURM_CONF": slurm_env["SLURM_CONF"]}
    first = entrgi_cli(*args, cwd=tmp_path, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "outputs/sweeps/slurm"
    jobs = sorted(d for d in sweep.iterdir() if (d / "summary.json").exists())
    assert len(jobs) == 4
    states = wait_for_sacct(slurm_env, 4)
    assert len(states) == 4 and set(states.values()) == {"COMPLETED"}, states
    assert len({job_id.split("_")[0] for job_id in states}) == 1  # one array job of 4 tasks
    assert sorted(job_id.split("_")[1] for job_id in states) == ["0", "1", "2", "3"]

    again = entrgi_cli(*args, cwd=tmp_path, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipping 4 finished job(s) of 4; launching 0" in again.stderr + again.stdout
    assert len(sacct(slurm_env)) == 4  # nothing submitted

    # a job killed after its first prompt: the re-launch submits it alone and it finishes the rest
    killed = next(d for d in jobs if d.name.startswith("entrgi"))
    original = (killed / "results.jsonl").read_text().splitlines()
    (killed / "results.jsonl").write_text(original[0] + "\n")
    (killed / "summary.json").unlink()
    resumed = entrgi_cli(*args, cwd=tmp_path, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "skipping 3 finished job(s) of 4; launching 1" in resumed.stderr + resumed.stdout
    assert [json.loads(line)["responses"] for line in (killed / "results.jsonl").read_text().splitlines()] == \
        [json.loads(line)["responses"] for line in original]
    states = wait_for_sacct(slurm_env, 5)
    assert len(states) == 5 and set(states.values()) == {"COMPLETED"}, states

    report = entrgi_cli(str(sweep), module="entrgi.report", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    text = (sweep / "report/report.md").read_text()
    assert "| entrgi |" in text and "Left out" not in text


def test_a_training_sweep_runs_as_a_slurm_array(slurm_env, tmp_path):
    """entrgi.train through the same launcher: one array task per recipe, each a single-process run."""
    args = ["-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=4", "hydra.launcher.timeout_min=10", "train=rgrl,rft", "sweep=slurm_train",
            "logger=none", "train.steps=2", "train.num_samples=2", "train.batch_size=2", "train.eval.num_prompts=2",
            "train.eval.num_samples=2", "train.save_every=1", "sampler.steps=2", "sampler.gen_length=8"]
    before = set(sacct(slurm_env))
    done = entrgi_cli(*args, cwd=tmp_path, module="entrgi.train", env={"SLURM_CONF": slurm_env["SLURM_CONF"]},
                      timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [d for d in (tmp_path / "outputs/train_sweeps/slurm_train").iterdir() if (d / "summary.json").exists()]
    assert sorted(json.loads((d / "summary.json").read_text())["recipe"] for d in runs) == ["rft", "rgrl"]
    assert all((d / "adapter" / "adapter_model.safetensors").exists() for d in runs)
    states = {j: s for j, s in wait_for_sacct(slurm_env, len(before) + 2).items() if j not in before}
    assert len(states) == 2 and set(states.values()) == {"COMPLETED"}, states
    assert len({job_id.split("_")[0] for job_id in states}) == 1  # one array job of 2 tasks
