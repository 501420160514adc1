"""Experiments whose jobs run on the SSH test host (a real sshd on a separate namespace host where
nothing of this machine's workspace is visible; tests/helpers/remote_host.py): the job folders live
in the remote workspace, the user's code is staged there, and each job's folder is copied back into
the local workspace when it ends."""

from __future__ import annotations

import json
import shlex
import socket
import time
from pathlib import Path

import pytest
from remote_host import RemoteHost
from remote_tasks import Add, Fails, ReadsData, Total

from experimaestro import ValidationError, experiment
from experimaestro.scheduler.experiment import FailedExperiment
from experimaestro.connectors.remote_record import read_remote_record
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.direct import DirectLauncher
from test_ssh_connector import fresh_connections  # noqa: F401 (autouse: no shared connection left)


@pytest.fixture
def host(remote_host: RemoteHost, ssh_home: Path, remote_workspace: str) -> SshConnector:
    return SshConnector(remote_host.alias, workspace=remote_workspace, python=remote_host.python)


def remote_exists(remote_host: RemoteHost, path: str) -> bool:
    return remote_host.run(f"test -e {shlex.quote(path)}", check=False).returncode == 0


def test_jobs_run_on_the_remote_and_come_back(host: SshConnector, remote_host: RemoteHost,
                                              tmp_path: Path, remote_workspace: str) -> None:
    launcher = DirectLauncher(connector=host)
    with experiment(tmp_path / "ws", "remote", launcher=launcher):
        a = Add.C(x=1, y=2).submit()
        b = Add.C(x=10).submit()
        total = Total.C(parts=[a, b]).submit()
    # The local copies hold what the jobs wrote on the remote host
    result = json.loads((a.__xpm__.job.path / "result.json").read_text())
    assert result["sum"] == 3
    assert result["host"] != socket.gethostname()
    assert result["cwd"].startswith(remote_workspace)
    assert json.loads((total.__xpm__.job.path / "total.json").read_text()) == {"total": 13}
    job = total.__xpm__.job
    record = read_remote_record(job.path)
    assert record is not None and record.path == f"{remote_workspace}/{job.relpath}"
    assert remote_exists(remote_host, f"{record.path}/total.json")
    # The job ran there, not here
    assert json.loads((job.path / f"{job.name}.pid").read_text())["host"] != socket.gethostname()


def test_a_failed_remote_job_is_reported_and_copied_back(host: SshConnector, tmp_path: Path) -> None:
    launcher = DirectLauncher(connector=host)
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "remote", launcher=launcher):
            job = Fails.C(code=3).submit().__xpm__.job
    assert job.state.value == "error"
    assert job.failure is not None and job.failure.reason == "failed"
    assert (job.path / f"{job.name}.failed").exists(), "the failed job's folder is copied back too"
    assert "SystemExit" in (job.path / f"{job.name}.failed").read_text()


def test_done_remote_jobs_are_reused(host: SshConnector, tmp_path: Path) -> None:
    launcher = DirectLauncher(connector=host)
    with experiment(tmp_path / "ws", "remote", launcher=launcher):
        Add.C(x=5).submit()
    requests = host.agent.requests
    with experiment(tmp_path / "ws", "remote", launcher=launcher):
        job = Add.C(x=5).submit().__xpm__.job
    assert job.state.value == "done"
    assert host.agent.requests - requests <= 2, "reused from the local copy, without asking the host"


def test_a_data_path_missing_on_the_host_is_refused_at_submit(
        host: SshConnector, remote_host: RemoteHost, tmp_path: Path, remote_workspace: str) -> None:
    here_only = tmp_path / "corpus.txt"  # exists here, not on the host
    here_only.write_text("local data")
    there = f"{remote_host.home}/corpus-{time.monotonic_ns()}.txt"
    remote_host.run(f"echo remote data > {shlex.quote(there)}")
    launcher = DirectLauncher(connector=host)
    with experiment(tmp_path / "ws", "remote", launcher=launcher):
        with pytest.raises(ValidationError, match=r"do not exist on .*corpus.txt.*Copy the data there"):
            ReadsData.C(data=here_only).submit()
        job = ReadsData.C(data=Path(there)).submit().__xpm__.job
    assert "remote data" in (job.path / f"{job.name}.out").read_text()
    # Nothing was written for the refused job, here or there
    assert not (tmp_path / "ws" / "jobs" / "remote_tasks.readsdata").exists() or len(
        list((tmp_path / "ws" / "jobs" / "remote_tasks.readsdata").iterdir())) == 1


def test_code_none_runs_what_is_installed_on_the_host(
        remote_host: RemoteHost, ssh_home: Path, tmp_path: Path, remote_workspace: str) -> None:
    """Without staging, the host must have the user's classes installed: here it does not, and the
    job's failure says the module cannot be imported (no Python file of ours was sent)."""
    host = SshConnector(remote_host.alias, workspace=remote_workspace, python=remote_host.python,
                        code=None)
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "remote", launcher=DirectLauncher(connector=host)):
            job = Add.C(x=1).submit().__xpm__.job
    assert "remote_tasks" in (job.path / f"{job.name}.err").read_text()
    assert not remote_exists(remote_host, f"{remote_workspace}/.experimaestro/code")
