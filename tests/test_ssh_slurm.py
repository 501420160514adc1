"""Slurm behind SSH: ``SlurmLauncher(connector=SshConnector(...))`` submits on the remote login node.

The remote is the SSH test host with the ``slurm-test/`` cluster running inside it
(``remote_slurm_host``, tests/helpers/remote_host.py): the SSH agent runs the same Slurm launcher there
(arrays, afterok chains, one poller), and the controller here never runs a Slurm command (fake ones
first on its PATH record any call). Job folders live in the remote workspace and come back into the
local one when each job ends.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest
from remote_host import RemoteHost, point_home_at
from remote_tasks import Gated

from conftest import start_controller, wait_until
from experimaestro import experiment
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.slurm import SlurmLauncher, SlurmLauncherError, SlurmOptions
from experimaestro.scheduler.experiment import FailedExperiment
from test_ssh_connector import fresh_connections  # noqa: F401 (autouse: no shared connection left)

#: Fast polling on the host, as the local Slurm tests do.
FAST = dict(poll_interval=0.1, max_poll_interval=0.5, marker_grace=1.0)


@pytest.fixture
def slurm_host(remote_slurm_host: RemoteHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> RemoteHost:
    """The Slurm host, with ``$HOME/.ssh`` describing it (as ``ssh_home`` does for ``remote_host``)."""
    point_home_at(remote_slurm_host, tmp_path / "home", monkeypatch)
    return remote_slurm_host


@pytest.fixture
def remote_workspace(slurm_host: RemoteHost) -> Iterator[str]:
    """A fresh workspace in the remote user's HOME (only there)."""
    path = f"{slurm_host.home}/xpm-slurm-{time.monotonic_ns()}"
    yield path
    slurm_host.run(f"rm -rf {shlex.quote(path)}", check=False)


@pytest.fixture
def host(slurm_host: RemoteHost, remote_workspace: str) -> SshConnector:
    return SshConnector(slurm_host.alias, workspace=remote_workspace, python=slurm_host.python)


@pytest.fixture
def local_slurm_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake Slurm commands first on this process's PATH: each call is appended to the returned
    file (which must stay absent: the controller never runs Slurm's commands itself)."""
    calls = tmp_path / "local-slurm-calls"
    folder = tmp_path / "fake-slurm-bin"
    folder.mkdir()
    for name in ("sbatch", "squeue", "sacct", "scontrol", "scancel", "sinfo"):
        script = folder / name
        script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {shlex.quote(str(calls))}\nexit 1\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return calls


def remote_text(host: RemoteHost, path: str) -> str:
    return host.run(f"cat {shlex.quote(path)}").stdout


def remote_record(host: RemoteHost, workspace: str, job) -> dict:  # type: ignore[no-untyped-def]
    """The ``.pid`` record of a job in its remote folder ({} while there is none)."""
    proc = host.run(f"cat {shlex.quote(f'{workspace}/{job.relpath}/{job.name}.pid')}", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}


def slurm(host: RemoteHost, command: str) -> str:
    """A Slurm command run on the host (not through SSH), with its cluster's configuration."""
    return host.run(f"SLURM_CONF={shlex.quote(host.slurm_conf or '')} {command}").stdout


def batch_runs(host: RemoteHost, workspace: str, job) -> int:  # type: ignore[no-untyped-def]
    """How many times a Slurm batch script started the job (its stderr says so each time)."""
    proc = host.run(f"cat {shlex.quote(f'{workspace}/{job.relpath}/{job.name}.err')}", check=False)
    return proc.stdout.count("batch script of slurm job")


def test_chain_and_array_run_on_the_cluster_behind_ssh(
        host: SshConnector, slurm_host: RemoteHost, remote_workspace: str, tmp_path: Path,
        local_slurm_calls: Path) -> None:
    """A head job and three dependents: the dependents go as one array with afterok on the head
    while it still runs (one sbatch each, on the host), and every result comes back here."""
    launcher = SlurmLauncher(connector=host, **FAST)
    gate = f"{remote_workspace}/gate"
    with experiment(tmp_path / "ws", "ssh-slurm", launcher=launcher):
        head = Gated.C(value=100, gate=gate).submit()
        tails = [Gated.C(value=i, upstream=head).submit() for i in range(3)]
        jobs = [t.__xpm__.job for t in tails]
        head_job = head.__xpm__.job
        try:
            wait_until(lambda: all(remote_record(slurm_host, remote_workspace, j)
                                   for j in [head_job, *jobs]),
                       timeout=60, what="the head and its dependents submitted on the host")
            head_id = remote_record(slurm_host, remote_workspace, head_job)["jobid"]
            ids = [remote_record(slurm_host, remote_workspace, j)["jobid"] for j in jobs]
            # One array for the three, queued after the head (still waiting on its gate)
            assert len({i.split("_")[0] for i in ids}) == 1, ids
            assert sorted(int(i.split("_")[1]) for i in ids) == [0, 1, 2]
            shown = slurm(slurm_host, f"scontrol show job {ids[0].split('_')[0]}")
            assert f"Dependency=afterok:{head_id}" in shown, shown
            assert "Reason=Dependency" in shown, shown
        finally:
            slurm_host.run(f"touch {shlex.quote(gate)}")
    for i, job in enumerate(jobs):
        result = json.loads((job.path / "value.json").read_text())  # the local copy
        assert result["total"] == 100 + i
        assert result["host"] == slurm_host.alias != socket.gethostname()
        assert result["slurm_array_job"] == ids[0].split("_")[0]
        assert json.loads((job.path / f"{job.name}.pid").read_text())["jobid"] == ids[i]
    assert json.loads((head_job.path / "value.json").read_text())["slurm_job"] == head_id
    # Two submissions, made on the host; the poller there made one squeue per poll
    summary = launcher.summary()
    counts = {name: int(n) for name, n in re.findall(r"(\w+) (\d+)", summary)}
    polls = int(re.search(r"(\d+) polls", summary).group(1))  # type: ignore[union-attr]
    assert counts["sbatch"] == 2, summary
    assert counts["squeue"] == polls, summary
    assert not local_slurm_calls.exists(), local_slurm_calls.read_text()
