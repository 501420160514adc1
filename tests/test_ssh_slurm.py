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
from pathlib import Path
from typing import Iterator

import pytest
from remote_host import RemoteHost, fresh_workspace, point_home_at
from remote_tasks import Gated

from conftest import start_controller, wait_until
from experimaestro import experiment
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.base import Launched
from experimaestro.launchers.slurm import SlurmLauncher, SlurmLauncherError, SlurmOptions
from experimaestro.scheduler.experiment import FailedExperiment
from experimaestro.scheduler.scheduler import Scheduler
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
    """A fresh workspace on the Slurm host (not the plain one of the shared fixture)."""
    with fresh_workspace(slurm_host) as path:
        yield path


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
            assert "JobState=PENDING" in shown, shown
            # Chained on the host's cluster only: not by a launcher of this machine (even one
            # naming the same slurm.conf path), nor on a record without the host's agent
            launched = head_job.launched
            assert launched is not None and launcher.can_depend_on(launched)
            assert not SlurmLauncher(slurm_conf=slurm_host.slurm_conf).can_depend_on(launched)
            assert not launcher.can_depend_on(Launched(record=launched.record))
            # The scheduler's liveness check of a remote Slurm record asks the host's Slurm
            assert Scheduler.instance()._alive_elsewhere(head_job)
        finally:
            slurm_host.run(f"touch {shlex.quote(gate)}")
    for i, job in enumerate(jobs):
        result = json.loads((job.path / "value.json").read_text())  # the local copy
        assert result["total"] == 100 + i
        assert result["host"] == slurm_host.alias != socket.gethostname()
        assert result["slurm_array_job"] == ids[0].split("_")[0]
        assert json.loads((job.path / f"{job.name}.pid").read_text())["jobid"] == ids[i]
    assert json.loads((head_job.path / "value.json").read_text())["slurm_job"] == head_id
    # Two submissions, made on the host; the poller there made one squeue per poll (plus the one
    # of the liveness check above)
    summary = launcher.summary()
    counts = {name: int(n) for name, n in re.findall(r"(\w+) (\d+)", summary)}
    polls = int(re.search(r"(\d+) polls", summary).group(1))  # type: ignore[union-attr]
    assert counts["sbatch"] == 2, summary
    assert counts["squeue"] == polls + 1, summary
    assert not local_slurm_calls.exists(), local_slurm_calls.read_text()


def test_failures_come_back_and_dependents_are_cancelled_on_the_host(
        host: SshConnector, slurm_host: RemoteHost, remote_workspace: str, tmp_path: Path,
        local_slurm_calls: Path) -> None:
    """A job that fails on the cluster is reported failed here, with its folder copied back; its
    dependent, queued with afterok, is failed too and its Slurm job cancelled (never left pending)."""
    launcher = SlurmLauncher(connector=host, **FAST)
    gate = f"{remote_workspace}/gate"
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "ssh-slurm", launcher=launcher):
            failing = Gated.C(value=1, fail=True, gate=gate).submit()
            after = Gated.C(value=2, upstream=failing).submit()
            job, dependent = failing.__xpm__.job, after.__xpm__.job
            try:
                wait_until(lambda: remote_record(slurm_host, remote_workspace, dependent),
                           timeout=60, what="the dependent queued on the host")
            finally:
                slurm_host.run(f"touch {shlex.quote(gate)}")
    assert job.failure is not None and job.failure.reason == "failed"
    marker = job.path / f"{job.name}.failed"
    assert marker.exists(), "the failed job's folder is copied back"
    assert "SystemExit" in marker.read_text()
    assert dependent.failure is not None and dependent.failure.reason == "dependency"
    key = remote_record(slurm_host, remote_workspace, dependent)["jobid"]
    wait_until(lambda: slurm(slurm_host, f"squeue -h -t all -o %T -j {key}").strip() == "CANCELLED",
               timeout=30, what="the dependent's Slurm job cancelled")
    assert batch_runs(slurm_host, remote_workspace, dependent) == 0
    assert not local_slurm_calls.exists(), local_slurm_calls.read_text()


def test_a_preempted_job_is_submitted_again_through_the_host(
        host: SshConnector, slurm_host: RemoteHost, remote_workspace: str, tmp_path: Path,
        local_slurm_calls: Path) -> None:
    """Preempted on the cluster (submitted with --no-requeue: it ends PREEMPTED), a job is
    submitted again by the controller's retry, through the host, and then succeeds."""
    launcher = SlurmLauncher(connector=host, options=SlurmOptions(extra=["--no-requeue"]), **FAST)
    gate = f"{remote_workspace}/gate"
    with experiment(tmp_path / "ws", "ssh-slurm", launcher=launcher):
        job = Gated.C(value=5, gate=gate).submit().__xpm__.job
        try:
            wait_until(lambda: batch_runs(slurm_host, remote_workspace, job) == 1, timeout=60,
                       what="the job running on the cluster")
            first = remote_record(slurm_host, remote_workspace, job)["jobid"]
            # A job of the urgent partition takes the whole node: it preempts ours
            slurm(slurm_host, "sbatch -p urgent -c 8 --mem=100M -o /dev/null --wrap true")
            wait_until(lambda: remote_record(slurm_host, remote_workspace, job).get("jobid")
                       not in (None, first), timeout=60, what="a new submission")
            assert slurm(slurm_host, f"squeue -h -t all -o %T -j {first}").strip() == "PREEMPTED"
        finally:
            slurm_host.run(f"touch {shlex.quote(gate)}")
    assert job.state.value == "done" and job.retries == 1
    assert json.loads((job.path / "value.json").read_text())["total"] == 5
    assert batch_runs(slurm_host, remote_workspace, job) == 2
    assert not local_slurm_calls.exists(), local_slurm_calls.read_text()


def test_a_dropped_connection_loses_no_slurm_job(
        host: SshConnector, slurm_host: RemoteHost, remote_workspace: str, tmp_path: Path) -> None:
    """The connection drops while a chain waits on the cluster (its agent, and the poller there,
    end with it): the new agent watches both jobs again, which end once, as if nothing happened."""
    launcher = SlurmLauncher(connector=host, **FAST)
    gate = f"{remote_workspace}/gate"
    with experiment(tmp_path / "ws", "ssh-slurm", launcher=launcher):
        head = Gated.C(value=10, gate=gate).submit()
        tail = Gated.C(value=1, upstream=head).submit()
        jobs = [head.__xpm__.job, tail.__xpm__.job]
        try:
            wait_until(lambda: all(remote_record(slurm_host, remote_workspace, j) for j in jobs),
                       timeout=60, what="the chain queued on the host")
            ids = [remote_record(slurm_host, remote_workspace, j)["jobid"] for j in jobs]
            starts = host.agent.starts
            assert slurm_host.kill_sessions()
            wait_until(lambda: host.agent.starts > starts,
                       timeout=60, what="the agent started again")
        finally:
            slurm_host.run(f"touch {shlex.quote(gate)}")
    assert json.loads((jobs[1].path / "value.json").read_text())["total"] == 11
    for job, jobid in zip(jobs, ids):
        assert job.state.value == "done"
        assert remote_record(slurm_host, remote_workspace, job)["jobid"] == jobid
        assert batch_runs(slurm_host, remote_workspace, job) == 1


def test_what_slurm_says_of_a_job_comes_back(host: SshConnector, tmp_path: Path) -> None:
    """A job that dies before its runner starts (a failing setup line): the failure says what
    Slurm's poller on the host learned (its state and the batch script's output)."""
    launcher = SlurmLauncher(connector=host, setup=["echo no-such-module >&2", "exit 7"], **FAST)
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "ssh-slurm", launcher=launcher):
            job = Gated.C(value=3).submit().__xpm__.job
    assert job.failure is not None and job.failure.reason == "failed"
    assert re.search(r"Slurm job \d+ ended FAILED", job.failure.message), job.failure.message
    assert "no-such-module" in job.failure.message
    assert "no-such-module" in (job.path / f"{job.name}.err").read_text()


def test_bad_hosts_and_options_fail_at_submit(slurm_host: RemoteHost, remote_workspace: str,
                                              tmp_path: Path) -> None:
    """Checked on the host at the submit() line: no sbatch on the SSH session's PATH, no such
    slurm.conf there, an unknown partition; each error names the host and the fix."""
    wrapper = f"{slurm_host.home}/python-without-slurm"
    slurm_host.run(f"printf '#!/bin/sh\\nPATH=/nonexistent exec %s \"$@\"\\n' "
                   f"{shlex.quote(slurm_host.python)} > {wrapper} && chmod +x {wrapper}")
    cases = [
        (dict(python=wrapper), {}, ["sbatch is not on the PATH of SSH commands", "/nonexistent",
                                    f"ssh {slurm_host.alias} which sbatch"]),
        ({}, dict(slurm_conf="/nonexistent/slurm.conf"), ["no such file", "slurm.conf"]),
        ({}, dict(options=SlurmOptions(partition="nope")), ["no partition 'nope'", "debug"]),
    ]
    for connector_options, launcher_options, expected in cases:
        host = SshConnector(slurm_host.alias, workspace=remote_workspace,
                            **{"python": slurm_host.python, **connector_options})
        launcher = SlurmLauncher(connector=host, **launcher_options)
        with experiment(tmp_path / "ws", "bad", launcher=launcher):
            with pytest.raises(SlurmLauncherError) as error:
                Gated.C(value=1).submit()
        message = str(error.value)
        assert slurm_host.alias in message, message
        for text in expected:
            assert text in message, message


#: A controller in its own process (killed by the test): three jobs on the cluster behind SSH.
CONTROLLER = """
from experimaestro import experiment
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.slurm import SlurmLauncher
from remote_tasks import Gated

if __name__ == "__main__":
    host = SshConnector({alias!r}, workspace={workspace!r}, python={python!r}, code=[{code!r}])
    launcher = SlurmLauncher(connector=host, poll_interval=0.1, max_poll_interval=0.5,
                             marker_grace=1.0)
    with experiment({local!r}, "rerun", launcher=launcher):
        Gated.C(value=1).submit()
        Gated.C(value=2, gate={gate!r}).submit()
        Gated.C(value=3, gate={gate!r}).submit()
    print("CONTROLLER DONE")
"""


def test_rerun_reuses_done_jobs_and_reattaches_to_queued_ones(
        slurm_host: RemoteHost, remote_workspace: str, tmp_path: Path,
        local_slurm_calls: Path) -> None:
    """The controller is killed while two jobs wait on the cluster: the rerun reuses the done job,
    re-attaches to one from its ``.pid`` and finds the other from its submit intent (a controller
    killed between sbatch and the ``.pid``), asking the host's Slurm: nothing is submitted twice."""
    from remote_tasks import __file__ as tasks_file

    gate = f"{remote_workspace}/gate"
    script = CONTROLLER.format(alias=slurm_host.alias, workspace=remote_workspace,
                               python=slurm_host.python, code=str(Path(tasks_file).parent),
                               local=str(tmp_path / "ws"), gate=gate)
    relpaths = {}
    for value in (1, 2, 3):
        xpm = Gated.C(value=value, **({"gate": gate} if value > 1 else {})).__xpm__
        relpaths[value] = f"jobs/{xpm.xpmtype.identifier}/{xpm.identifier}"
    folders = {v: f"{remote_workspace}/{relpath}" for v, relpath in relpaths.items()}
    local = {v: tmp_path / "ws" / relpath for v, relpath in relpaths.items()}

    def record(value: int) -> dict:
        proc = slurm_host.run(f"cat {folders[value]}/gated.pid", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}

    first = start_controller(script, tmp_path)
    wait_until(lambda: (local[1] / "value.json").exists() and record(2) and record(3),
               timeout=90, what="the first job done and copied back, the two others queued")
    first.kill()
    first.wait(timeout=10)
    ids = {v: record(v)["jobid"] for v in (1, 2, 3)}
    # Job 3 as a controller killed between its sbatch and its .pid leaves it: an intent, no .pid
    jobid, _, task = ids[3].partition("_")
    comment = slurm(slurm_host, f"squeue -h -t all -o %k -j {jobid}").split()[0]
    intent = json.dumps({"comment": comment, "task": int(task) if task else None,
                         "slurm_conf": slurm_host.slurm_conf})
    slurm_host.run(f"printf %s {shlex.quote(intent)} > {folders[3]}/.submit-intent.json && "
                   f"rm {folders[3]}/gated.pid")

    second = start_controller(script, tmp_path, name="rerun.py")
    log = tmp_path / "ws" / "experiments" / "rerun" / "experiment.log"
    wait_until(lambda: log.read_text().count("was submitted earlier") == 2, timeout=60,
               what="the rerun to find the two queued jobs")
    slurm_host.run(f"touch {shlex.quote(gate)}")
    assert second.wait(timeout=120) == 0, (tmp_path / "rerun.py.out").read_text()
    for value in (1, 2, 3):
        assert json.loads((local[value] / "value.json").read_text())["total"] == value
        assert json.loads((local[value] / "gated.pid").read_text())["jobid"] == ids[value]
        runs = slurm_host.run(f"cat {folders[value]}/gated.err").stdout
        assert runs.count("batch script of slurm job") == 1, runs
    assert "1 reused" in (tmp_path / "rerun.py.out").read_text()
    summaries = [line for line in log.read_text().splitlines() if "Slurm commands run" in line]
    assert summaries and "sbatch" not in summaries[-1], summaries
    assert not local_slurm_calls.exists(), local_slurm_calls.read_text()
