"""examples/slurm.py: the same script with no launchers.py (every job local, one warning) and with
one (the launchers it returns), with the same job identifiers; examples/launchers.py itself."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experimaestro.launcherfinder import explain_launcher
from experimaestro.launchers.direct import DirectLauncher

EXAMPLES = Path(__file__).parents[1] / "examples"

LOCAL_LAUNCHERS = """
from experimaestro.launcherfinder import HostSpecification, CPUSpecification, CudaSpecification
from experimaestro.launchers.direct import DirectLauncher

def find_launcher(requirements, tags):
    gpu_node = HostSpecification(cpu=CPUSpecification(cores=4, memory=16 * 1024**3),
                                 cuda=[CudaSpecification(memory=16 * 1024**3)])
    if (match := requirements.match(gpu_node)) and match.requirement.cuda_gpus:
        return DirectLauncher(1, fork=False)
    return DirectLauncher(2)
"""


def run_example(workdir: Path, xdg: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "XPM_WORKDIR"}
    env["XDG_CONFIG_HOME"] = str(xdg)
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "slurm.py"), "--workdir", str(workdir)],
        capture_output=True, text=True, env=env, timeout=120,
    )


def identifiers(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("learning_rate=")]


def test_the_same_script_runs_with_and_without_launchers_py(tmp_path: Path) -> None:
    alone = run_example(tmp_path / "ws1", tmp_path / "nothing")
    assert alone.returncode == 0, alone.stderr
    assert alone.stderr.count("no launchers.py found") == 1  # two find_launcher calls, one warning
    assert "best: 0.343" in alone.stdout

    (tmp_path / "xdg" / "experimaestro").mkdir(parents=True)
    (tmp_path / "xdg" / "experimaestro" / "launchers.py").write_text(LOCAL_LAUNCHERS)
    configured = run_example(tmp_path / "ws2", tmp_path / "xdg")
    assert configured.returncode == 0, configured.stderr
    assert "launchers.py" not in configured.stderr
    assert len(identifiers(alone.stdout)) == 2
    assert identifiers(configured.stdout) == identifiers(alone.stdout)


def test_the_example_launchers_py_keeps_small_cpu_work_local() -> None:
    choice = explain_launcher("duration=10m & cpu(cores=1, mem=1G)", config_dir=EXAMPLES)
    assert choice.source == EXAMPLES / "launchers.py" and not choice.fallback
    assert isinstance(choice.launcher, DirectLauncher) and choice.launcher.max_jobs == 2
    assert explain_launcher("cpu(cores=64)", config_dir=EXAMPLES).fallback


@pytest.mark.skipif(
    importlib.util.find_spec("experimaestro.launchers.slurm") is None,
    reason="experimaestro.launchers.slurm is not there yet (branch slurm-launcher)",
)
def test_the_example_launchers_py_sends_gpu_work_to_slurm() -> None:
    from experimaestro.launchers.slurm import SlurmLauncher

    choice = explain_launcher("duration=90m & cuda(mem=16G)*2 & cpu(mem=8G)", config_dir=EXAMPLES)
    assert isinstance(choice.launcher, SlurmLauncher)
    assert choice.alternative_index == 0


SLURM_LAUNCHERS = """
import math
from experimaestro.launcherfinder import HostSpecification, CPUSpecification, CudaSpecification
from experimaestro.launchers.slurm import SlurmLauncher, SlurmOptions

NODE = HostSpecification(cpu=CPUSpecification(cores=8, memory=4 * 1024**3),
                         cuda=[CudaSpecification(memory=16 * 1024**3)] * 2)

def find_launcher(requirements, tags):
    if match := requirements.match(NODE):
        wanted = match.requirement
        return SlurmLauncher(options=SlurmOptions(
            time=max(1, math.ceil(wanted.duration / 60)),
            gpus_per_node=len(wanted.cuda_gpus) or None,
        ))
    return None
"""


def test_the_same_script_on_the_cluster_and_locally_gives_the_same_identifiers(
    tmp_path: Path, slurm_env: object
) -> None:
    local = run_example(tmp_path / "local", tmp_path / "nothing")
    assert local.returncode == 0, local.stderr
    (tmp_path / "xdg" / "experimaestro").mkdir(parents=True)
    (tmp_path / "xdg" / "experimaestro" / "launchers.py").write_text(SLURM_LAUNCHERS)
    cluster = run_example(tmp_path / "cluster", tmp_path / "xdg")
    assert cluster.returncode == 0, cluster.stderr
    assert "launchers.py" not in cluster.stderr
    assert identifiers(cluster.stdout) == identifiers(local.stdout)
    assert cluster.stdout.splitlines()[-1] == local.stdout.splitlines()[-1]
