"""examples/slurm.py, unchanged, with a launchers.py that sends the work to the SSH test host (a real
sshd on a separate namespace host), then to the Slurm cluster behind it: the same job identifiers
and the same result as on the laptop, read from the local copies of the remote job folders."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest
from remote_host import RemoteHost, fresh_workspace, point_home_at
from test_example_slurm import identifiers, run_example

SSH_LAUNCHERS = """
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.direct import DirectLauncher

HOST = SshConnector({alias!r}, workspace={workspace!r}, python={python!r})

def find_launcher(requirements, tags):
    return DirectLauncher(connector=HOST)
"""


def test_the_same_script_on_an_ssh_host_gives_the_same_identifiers_and_results(
        tmp_path: Path, remote_host: RemoteHost, ssh_home: Path) -> None:
    local = run_example(tmp_path / "local", tmp_path / "nothing")
    assert local.returncode == 0, local.stderr
    workspace = f"{remote_host.home}/example-{time.monotonic_ns()}"
    (tmp_path / "xdg" / "experimaestro").mkdir(parents=True)
    (tmp_path / "xdg" / "experimaestro" / "launchers.py").write_text(SSH_LAUNCHERS.format(
        alias=remote_host.alias, workspace=workspace, python=remote_host.python))
    try:
        remote = run_example(tmp_path / "remote", tmp_path / "xdg")
        assert remote.returncode == 0, remote.stderr
        assert identifiers(remote.stdout) == identifiers(local.stdout)
        assert remote.stdout.splitlines()[-1] == local.stdout.splitlines()[-1]  # "best: 0.343"
        # The jobs ran there: their folders are in the remote workspace
        listing = remote_host.run(f"ls {shlex.quote(workspace)}/jobs").stdout.split()
        assert sorted(listing) == ["__main__.evaluate", "__main__.train"]
    finally:
        remote_host.run(f"rm -rf {shlex.quote(workspace)}", check=False)


SSH_SLURM_LAUNCHERS = """
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.slurm import SlurmLauncher, SlurmOptions

HOST = SshConnector({alias!r}, workspace={workspace!r}, python={python!r})

def find_launcher(requirements, tags):
    return SlurmLauncher(connector=HOST, options=SlurmOptions(time=5), poll_interval=0.1,
                         max_poll_interval=0.5)
"""


def test_the_same_script_on_the_cluster_behind_ssh_gives_the_same_identifiers_and_results(
        tmp_path: Path, remote_slurm_host: RemoteHost, monkeypatch: pytest.MonkeyPatch) -> None:
    local = run_example(tmp_path / "local", tmp_path / "nothing")
    assert local.returncode == 0, local.stderr
    point_home_at(remote_slurm_host, tmp_path / "home", monkeypatch)
    with fresh_workspace(remote_slurm_host) as workspace:
        (tmp_path / "xdg" / "experimaestro").mkdir(parents=True)
        (tmp_path / "xdg" / "experimaestro" / "launchers.py").write_text(SSH_SLURM_LAUNCHERS.format(
            alias=remote_slurm_host.alias, workspace=workspace, python=remote_slurm_host.python))
        remote = run_example(tmp_path / "remote", tmp_path / "xdg")
        assert remote.returncode == 0, remote.stderr
        assert identifiers(remote.stdout) == identifiers(local.stdout)
        assert remote.stdout.splitlines()[-1] == local.stdout.splitlines()[-1]  # "best: 0.343"
        # The jobs went through the host's Slurm: their records name its job ids
        records = remote_slurm_host.run(
            f"cat {shlex.quote(workspace)}/jobs/__main__.train/*/train.pid").stdout
        assert records.count('"type": "slurm"') == 2
