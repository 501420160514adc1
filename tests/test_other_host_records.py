"""A job folder whose pid record names a process of another host (the local copy of a job run over
SSH, while it runs there): it is running as far as the files tell (not unscheduled) for
``experimaestro jobs list``, the monitor and the tag filters; its pid means nothing here, so
neither ``jobs kill`` nor the monitor's stop button ever signals a process of this machine with it;
and the monitor, with no connection to the host open, says where its log is and how to follow it.
The job folders are written by hand (tests/test_ssh_local_view.py runs real remote jobs)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

import psutil
import pytest
from click.testing import CliRunner
from monitor_client import get, page_token

from experimaestro.cli import main
from experimaestro.connectors.process import PidRecord
from experimaestro.connectors.remote_record import RemoteCopy, write_remote_record
from experimaestro.launchers.jobfiles import JobFiles, JobState
from experimaestro.monitor import serve_workspace
from experimaestro.monitor.actions import ActionError, kill_job

TYPE_ID = "pkg.Learn"
JOB_ID = "0123456789abcdef" * 4
REMOTE = RemoteCopy(host="cluster", path=f"/scratch/xpm/jobs/{TYPE_ID}/{JOB_ID}",
                    python="/scratch/venv/bin/python")


def job_folder(workspace: Path, record: PidRecord, remote: Optional[RemoteCopy] = REMOTE) -> JobFiles:
    """A local job folder with ``record`` as its pid record, and ``remote`` as its .remote.json."""
    files = JobFiles(workspace / "jobs" / TYPE_ID / JOB_ID, "Learn")
    files.path.mkdir(parents=True)
    if remote is not None:
        write_remote_record(files.path, remote)
    files.write_pid(record)
    return files


def dead_pid() -> int:
    """A pid no process has now (a finished child's)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def xpm(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], env={"XPM_WORKDIR": None})


@pytest.fixture
def sleeper() -> Any:
    """A live process of this machine (what a pid of another host may happen to name here)."""
    process = subprocess.Popen(["sleep", "120"])
    yield process
    process.kill()
    process.wait()


def test_another_hosts_record_runs_as_far_as_the_files_tell(tmp_path: Path) -> None:
    files = job_folder(tmp_path, PidRecord(dead_pid(), time.time(), "elsewhere", time.time()))
    assert files.disk_state() is JobState.RUNNING
    listed = xpm("jobs", "list", "--workdir", tmp_path, "--json", "--state", "running")
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.output)
    assert entry["state"] == "running" and entry["remote"]["host"] == "cluster"
    # This host's record (or one without a host, as 2.x wrote them) of a dead process: not running.
    for host in (socket.gethostname(), ""):
        files.write_pid(PidRecord(dead_pid(), time.time(), host, time.time()))
        assert files.disk_state() is JobState.UNSCHEDULED


def test_jobs_log_of_a_remote_job_says_where_its_log_is(tmp_path: Path) -> None:
    job_folder(tmp_path, PidRecord(dead_pid(), time.time(), "elsewhere", time.time()))
    result = xpm("jobs", "log", "--workdir", tmp_path, JOB_ID[:8], "--stdout")
    assert result.exit_code == 1
    assert (f"job {TYPE_ID}/{JOB_ID} runs on cluster: its log is there ({REMOTE.path}/Learn.out) and "
            f"is copied here when it ends; follow it with `experimaestro jobs log -f {TYPE_ID}/{JOB_ID} "
            f"--stdout`") in " ".join(result.output.split())


def test_jobs_kill_never_signals_a_local_process_for_another_hosts_record(
        tmp_path: Path, sleeper: subprocess.Popen) -> None:
    """The record's pid and create time name a live process here, but of another host's record:
    it is not the job (here it would be killed if the host were not checked)."""
    local = psutil.Process(sleeper.pid)
    job_folder(tmp_path, PidRecord(sleeper.pid, local.create_time(), "elsewhere", time.time()))
    result = xpm("jobs", "kill", "--workdir", tmp_path, JOB_ID[:8])
    assert result.exit_code == 1
    assert f"job {TYPE_ID}/{JOB_ID} runs on cluster" in result.output
    assert "ssh cluster '/scratch/venv/bin/python -m experimaestro jobs kill --workdir /scratch/xpm" \
        in result.output
    assert sleeper.poll() is None, "a process of this machine was signalled"


def test_the_monitor_never_signals_a_local_process_for_another_hosts_record(
        tmp_path: Path, sleeper: subprocess.Popen) -> None:
    local = psutil.Process(sleeper.pid)
    for create_time in (local.create_time(), local.create_time() - 3600):
        shutil.rmtree(tmp_path / "jobs", ignore_errors=True)
        files = job_folder(tmp_path, PidRecord(sleeper.pid, create_time, "elsewhere", time.time()))
        with pytest.raises(ActionError, match="runs on cluster"):
            kill_job(files)
        assert sleeper.poll() is None, "a process of this machine was signalled"
    server = serve_workspace(tmp_path, port=0)
    try:
        base = f"http://127.0.0.1:{server.port}"
        key = f"{TYPE_ID}/{JOB_ID}"
        status, answer = get(f"{base}/api/job/{key}/kill", {"X-XPM-Token": page_token(base)}, "POST")
        assert status == 409 and "runs on cluster" in answer["error"]
    finally:
        server.stop()
    assert sleeper.poll() is None


def test_the_monitor_shows_a_remote_job_running_and_where_its_log_is(tmp_path: Path) -> None:
    """No controller and no connection to the host: the state from the files, the log's place."""
    job_folder(tmp_path, PidRecord(dead_pid(), time.time(), "elsewhere", time.time()))
    server = serve_workspace(tmp_path, port=0)
    try:
        base = f"http://127.0.0.1:{server.port}"
        key = f"{TYPE_ID}/{JOB_ID}"
        [row] = get(f"{base}/api/jobs")[1]["jobs"]
        assert (row["key"], row["state"], row["host"]) == (key, "running", "elsewhere")
        details = get(f"{base}/api/job/{key}")[1]
        assert details["remote"] == {"location": REMOTE.location(), "synced_at": None}
        log = get(f"{base}/api/job/{key}/log/stderr")[1]
        assert log["text"] == "" and log["follow"] is False and log["remote"] == REMOTE.location()
        assert log["message"] == (
            f"This job runs on cluster: its stderr is there ({REMOTE.path}/Learn.err) and is copied "
            f"here when the job ends. Follow it with `experimaestro jobs log -f {key}`.")
        assert get(f"{base}/api/job/{key}/log/stdout")[1]["message"].endswith(
            f"`experimaestro jobs log -f {key} --stdout`.")
    finally:
        server.stop()


def test_a_remote_slurm_job_is_neither_asked_nor_cancelled_on_this_machine(tmp_path: Path) -> None:
    """The local copy of a job submitted to the host's Slurm (over SSH): its job id is the host's
    cluster's, so this machine's squeue is not asked about it, nor its scancel used."""
    record = PidRecord.from_dict({"type": "slurm", "jobid": "4242", "host": "login1", "started": 1.0e9})
    job_folder(tmp_path, record)
    listed = CliRunner().invoke(main, ["jobs", "list", "--workdir", str(tmp_path)],
                                env={"XPM_WORKDIR": None, "PATH": str(tmp_path / "no-slurm-here")})
    assert listed.exit_code == 0, listed.output
    assert "Cannot ask Slurm" not in listed.output
    assert listed.output.splitlines()[1].split()[0] == "running"
    killed = xpm("jobs", "kill", "--workdir", tmp_path, JOB_ID[:8])
    assert killed.exit_code == 1 and "runs on cluster" in killed.output
    with pytest.raises(ActionError, match="runs on cluster"):
        kill_job(JobFiles(tmp_path / "jobs" / TYPE_ID / JOB_ID, "Learn"))
