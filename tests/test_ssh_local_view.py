"""A job that runs on the SSH test host is visible on the laptop while it runs: its local job folder
holds its params.json, ``.remote.json`` and a copy of its pid record from the moment it is launched,
so ``experimaestro jobs list`` (run without any connection), ``jobs path`` and the tag filters show
it; when it ends, its folder is copied back and it shows done."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import wait_until
from remote_host import RemoteHost
from remote_tasks import ReportsProgress, WaitsForFile

from experimaestro import experiment, tag
from experimaestro.connectors.remote_record import read_remote_record
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.direct import DirectLauncher
from test_ssh_connector import fresh_connections  # noqa: F401 (autouse: no shared connection left)
from test_ssh_experiment import host  # noqa: F401 (fixture; remote_workspace comes from conftest)


def xpm(*args: object) -> str:
    """The real command (a process of its own, which opens no connection); its output."""
    done = subprocess.run([sys.executable, "-m", "experimaestro", *map(str, args)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout


def listing(workspace: Path, *args: object) -> list[dict[str, Any]]:
    return json.loads(xpm("jobs", "list", "--workdir", workspace, "--json", *args))


def test_a_running_remote_job_is_listed_on_the_laptop(host: SshConnector, remote_host: RemoteHost,  # noqa: F811
                                                      remote_workspace: str, tmp_path: Path) -> None:  # noqa: F811
    workspace = tmp_path / "ws"
    flag = f"{remote_workspace}/go"
    with experiment(workspace, "remote", launcher=DirectLauncher(connector=host)):
        job = WaitsForFile.C(path=flag, tag=tag("slow")).submit().__xpm__.job
        pidfile = job.path / f"{job.name}.pid"
        wait_until(pidfile.exists, timeout=60, what="the local copy of the job's pid record")
        remote_record = read_remote_record(job.path)
        assert remote_record is not None and remote_record.synced_at is None
        assert remote_record.path == f"{remote_workspace}/{job.relpath}"
        assert json.loads(pidfile.read_text())["host"] == json.loads(
            remote_host.run(f"cat {shlex.quote(remote_record.path)}/{job.name}.pid").stdout)["host"]
        assert (job.path / "params.json").read_text() == host.read_text(f"{remote_record.path}/params.json")
        # Without a connection, from the local folder alone
        [entry] = listing(workspace)
        assert (entry["identifier"], entry["state"]) == (job.identifier, "running")
        assert entry["remote"] == {"host": remote_host.alias, "path": remote_record.path, "synced_at": None}
        assert [e["identifier"] for e in listing(workspace, "--tags", "tag=slow")] == [job.identifier]
        assert [e["identifier"] for e in listing(workspace, "--state", "running")] == [job.identifier]
        assert listing(workspace, "--tags", "tag=other") == []
        assert xpm("jobs", "path", "--workdir", workspace, job.identifier[:12]).strip() == str(job.path)
        assert xpm("jobs", "path", "--workdir", workspace, "--remote", job.identifier[:12]).strip() == \
            f"{remote_host.alias}:{remote_record.path}"
        table = xpm("jobs", "list", "--workdir", workspace)
        assert "running" in table and job.identifier[:12] in table
        remote_host.run(f"touch {shlex.quote(flag)}")
    assert job.state.value == "done"
    [entry] = listing(workspace)
    assert entry["state"] == "done" and entry["remote"]["synced_at"] is not None
    assert (job.path / "out.txt").read_text() == "released"


CONTROLLER = """
import sys
from experimaestro import experiment, tag
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.direct import DirectLauncher
from remote_tasks import ReportsProgress, WaitsForFile

workdir, alias, workspace, python, flag = sys.argv[1:]
host = SshConnector(alias, workspace=workspace, python=python)
with experiment(workdir, "remote", launcher=DirectLauncher(connector=host)):
    WaitsForFile.C(path=flag, tag=tag("slow")).submit()
"""


def test_a_reattached_remote_job_gets_its_local_folder_again(
        remote_host: RemoteHost, ssh_home: Path, remote_workspace: str,  # noqa: F811
        tmp_path: Path) -> None:
    """The controller is killed while its remote job runs, and the job's local folder is lost; the
    controller run again finds the job on the host (not launched again) and writes the folder."""
    import shutil
    import signal

    from conftest import start_controller

    workspace = tmp_path / "ws"
    flag = f"{remote_workspace}/go"
    script = CONTROLLER.replace("sys.argv[1:]", repr([str(workspace), remote_host.alias, remote_workspace,
                                                     remote_host.python, flag]))

    def running_entry() -> Any:
        entries = listing(workspace) if (workspace / "jobs").is_dir() else []
        return entries and entries[0]["state"] == "running" and entries[0]

    first = start_controller(script, tmp_path, "first.py")
    entry = wait_until(running_entry, timeout=60, what="the job running, from its local folder")
    pid_text = (Path(entry["path"]) / "waitsforfile.pid").read_text()
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    shutil.rmtree(entry["path"])
    second = start_controller(script, tmp_path, "second.py")
    try:
        again = wait_until(running_entry, timeout=60, what="the re-attached job's local folder")
        assert again["path"] == entry["path"] and again["remote"]["synced_at"] is None
        assert (Path(entry["path"]) / "waitsforfile.pid").read_text() == pid_text, "not launched again"
        remote_host.run(f"touch {shlex.quote(flag)}")
        assert second.wait(timeout=60) == 0, (tmp_path / "second.py.out").read_text()
    finally:
        remote_host.run(f"touch {shlex.quote(flag)}")
        if second.poll() is None:
            second.kill()
    [done] = listing(workspace)
    assert done["state"] == "done"
    assert (Path(entry["path"]) / "out.txt").read_text() == "released"


def test_the_progress_of_a_running_remote_job_reaches_the_laptop(
        host: SshConnector, remote_host: RemoteHost, remote_workspace: str, tmp_path: Path) -> None:  # noqa: F811
    workspace = tmp_path / "ws"
    flag = f"{remote_workspace}/go-progress"
    with experiment(workspace, "remote", launcher=DirectLauncher(connector=host)):
        job = ReportsProgress.C(path=flag).submit().__xpm__.job
        local = job.path / f"{job.name}.progress"
        wait_until(local.exists, timeout=60, what="the progress copied from the host")
        assert json.loads(local.read_text())["levels"][0] == {"value": 0.42, "desc": "epoch 3/10"}
        table = xpm("jobs", "list", "--workdir", workspace)  # a process of its own: the files only
        assert "42" in table and "epoch 3/10" in table
        remote_host.run(f"touch {shlex.quote(flag)}")
    assert job.state.value == "done"
