"""Remote jobs cost few round trips (issue 8, "Batch what is batchable"): one request launches a
job (the host does the launch-lock steps), its end comes with its markers, a small folder comes back
inside one request (no process started on the host per job), and the reuse check of many submitted
jobs is one request; all against the real SSH test host (tests/helpers/remote_host.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import run_controller, wait_until
from remote_host import REPO, RemoteHost
from remote_tasks import Add, Fails

from experimaestro import experiment
from experimaestro.connectors import ssh as ssh_module
from experimaestro.connectors.process import PidRecord
from experimaestro.connectors.remote_record import read_remote_record
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.direct import DirectLauncher
from experimaestro.launchers.jobfiles import JobFiles
from experimaestro.launchers.remote import HostLaunchers
from experimaestro.scheduler.experiment import FailedExperiment
from test_ssh_connector import fresh_connections  # noqa: F401 (autouse: no shared connection left)
from test_ssh_experiment import host  # noqa: F401 (fixture; remote_workspace comes from conftest)

HELPERS = REPO / "tests" / "helpers"


class Requests:
    """Counts the agent's requests by operation (``job_files`` by method), and the sync-back
    channels opened (each one starts ``sync-send`` on the host)."""

    def __init__(self, connector: SshConnector, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ops: Counter[str] = Counter()
        self.channels = 0
        request = connector.agent.request

        def counted(op: str, args: Any = None, *rest: Any, **kw: Any) -> Any:
            self.ops[op if op != "job_files" else f"job_files.{(args or {}).get('method')}"] += 1
            return request(op, args, *rest, **kw)

        sync_streams = connector.sync_streams

        def counted_streams(root: str) -> Any:
            self.channels += 1
            return sync_streams(root)

        monkeypatch.setattr(connector.agent, "request", counted)
        monkeypatch.setattr(connector, "sync_streams", counted_streams)

    def take(self) -> Counter[str]:
        ops, self.ops = self.ops, Counter()
        return ops


def test_a_remote_job_costs_two_requests(host: SshConnector, tmp_path: Path,  # noqa: F811
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = DirectLauncher(connector=host)
    launcher.check()  # stages the code: not counted
    requests = Requests(host, monkeypatch)
    with experiment(tmp_path / "ws", "remote", launcher=launcher):
        jobs = [Add.C(x=i).submit().__xpm__.job for i in range(4)]
    assert all(json.loads((j.path / "result.json").read_text())["sum"] == i for i, j in enumerate(jobs))
    ops = requests.take()
    # The folders' states (submitted together), one launch each, one sync-back each: nothing else
    # (no lock, pid, params or marker round trips; the markers come with the job's end).
    assert set(ops) == {"job_states", "start_job", "sync_send"}, ops
    assert ops["start_job"] == 4 and ops["sync_send"] == 4 and ops["job_states"] <= 4, ops
    assert requests.channels == 0, "small folders come back without a sync-send process"


def test_a_failed_remote_job_is_reported_from_its_ending(host: SshConnector, tmp_path: Path,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = DirectLauncher(connector=host)
    launcher.check()
    requests = Requests(host, monkeypatch)
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "remote", launcher=launcher):
            job = Fails.C(code=3).submit().__xpm__.job
    assert job.failure is not None and job.failure.reason == "failed" and job.failure.code == 3
    ops = requests.take()
    assert not [op for op in ops if op.startswith("job_files")], ops


def test_a_fresh_workspace_reuses_done_remote_jobs_in_one_request(
        host: SshConnector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    launcher = DirectLauncher(connector=host)
    with experiment(tmp_path / "laptop-1", "remote", launcher=launcher):
        for i in range(6):
            Add.C(x=i).submit()
    requests = Requests(host, monkeypatch)
    # Another laptop: nothing local, the same remote workspace.
    with experiment(tmp_path / "laptop-2", "remote", launcher=launcher):
        jobs = [Add.C(x=i).submit().__xpm__.job for i in range(6)]
    assert all(j.state.value == "done" for j in jobs)
    for i, job in enumerate(jobs):  # copied back
        assert json.loads((job.path / "result.json").read_text())["sum"] == i
        assert read_remote_record(job.path) is not None
    ops = requests.take()
    assert "start_job" not in ops, "nothing ran again"
    assert ops["job_states"] < 6 and ops["sync_send"] < 6, f"batched: {ops}"
    assert set(ops) == {"job_states", "sync_send"}, ops
    assert requests.channels == 0


def test_a_rerun_on_the_same_laptop_fetches_nothing(host: SshConnector, remote_host: RemoteHost,  # noqa: F811
                                                    remote_workspace: str, tmp_path: Path) -> None:
    launcher = DirectLauncher(connector=host)
    with experiment(tmp_path / "ws", "remote", launcher=launcher):
        job = Add.C(x=7).submit().__xpm__.job
    synced = read_remote_record(job.path).synced_at
    # The rerun: another controller process (this one's scheduler knows the job already).
    code, output = run_controller(f"""
        import json
        from remote_tasks import Add
        from experimaestro import experiment
        from experimaestro.connectors.ssh import SshConnector
        from experimaestro.launchers.direct import DirectLauncher

        host = SshConnector({remote_host.alias!r}, workspace={remote_workspace!r},
                            python={remote_host.python!r}, code=[{str(HELPERS)!r}])
        launcher = DirectLauncher(connector=host)
        launcher.check()
        channels = []
        streams = host.sync_streams
        host.sync_streams = lambda root: (channels.append(root), streams(root))[1]
        before = host.agent.requests
        with experiment({str(tmp_path / "ws")!r}, "remote", launcher=launcher):
            job = Add.C(x=7).submit().__xpm__.job
        print("RESULT", json.dumps({{"state": job.state.value, "channels": len(channels),
                                    "requests": host.agent.requests - before}}))
    """, tmp_path)
    assert code == 0, output
    result = json.loads(output.split("RESULT ", 1)[1])
    assert result == {"state": "done", "channels": 0, "requests": 0}, output
    assert read_remote_record(job.path).synced_at == synced, "the local copy was not fetched again"


def test_a_big_folder_comes_back_through_a_channel(host: SshConnector, tmp_path: Path,  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh_module, "SYNC_INLINE_LIMIT", 64)  # bytes: every folder is "big"
    launcher = DirectLauncher(connector=host)
    requests = Requests(host, monkeypatch)
    with experiment(tmp_path / "ws", "remote", launcher=launcher):
        job = Add.C(x=1, y=1).submit().__xpm__.job
    assert json.loads((job.path / "result.json").read_text())["sum"] == 2
    assert requests.channels == 1


# -- the host's side of start_job, on this machine's folders (what the agent runs) ---------------


def test_start_job_finds_a_done_job_and_launches_nothing(tmp_path: Path) -> None:
    sent: list = []
    folder = tmp_path / "jobs" / "pkg.Add" / "0123"
    files = JobFiles(folder, "add")
    files.make()
    files.write_done()
    outcome = HostLaunchers(sent.append).start({"type": "direct"}, str(folder), "add", "{}")
    assert outcome == {"outcome": "done"}
    assert not files.params.exists() and files.read_pid() is None and not sent


def test_start_job_watches_a_job_that_runs_already(tmp_path: Path) -> None:
    sent: list = []
    folder = tmp_path / "jobs" / "pkg.Add" / "0123"
    files = JobFiles(folder, "add")
    files.make()
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                               stdin=subprocess.PIPE)
    try:
        record = PidRecord.of_process(process.pid)
        files.write_pid(record)
        outcome = HostLaunchers(sent.append).start({"type": "direct"}, str(folder), "add", "{}")
        assert outcome == {"outcome": "attached", "record": record.to_dict()}
        assert not files.params.exists(), "not launched a second time"
        assert not sent
        process.stdin.close()  # the job ends: its ending is pushed, with the folder's markers
        process.wait(timeout=30)
        wait_until(lambda: sent, timeout=30)
        assert sent[0]["event"] == "job_ended" and sent[0]["ending"]["markers"] == {
            "state": None, "failure": None}
    finally:
        process.kill()
        process.wait()
