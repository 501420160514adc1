"""Faults of experiments whose jobs run on the SSH test host (a real sshd on a separate namespace
host, tests/helpers/remote_host.py): the connection dropping while jobs run or while the scheduler
launches one, no job lost nor run twice (each run of a CountedWait job leaves a line on the host)."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest
from remote_host import RemoteHost
from remote_tasks import CountedWait

from conftest import HELPERS, start_controller, wait_until
from experimaestro import experiment
from experimaestro.connectors.agentclient import AgentStartError, ReconnectTimeout
from experimaestro.connectors.ssh import SshConnector
from experimaestro.connectors.sshconnection import HostKeyError, SshConnectError
from experimaestro.launchers.direct import DirectLauncher
from experimaestro.launchers.jobfiles import JobState
from experimaestro.launchers import remote
from experimaestro.launchers.base import Ending, Launched
from experimaestro.launchers.remote import RemoteJobFiles, job_events
from experimaestro.scheduler.experiment import FailedExperiment
from test_ssh_connector import fresh_connections, set_host  # noqa: F401 (autouse: no shared connection left)


class RevocableKey:
    """A client key of this test only, in authorized_keys on the host until :meth:`revoke`: while
    revoked, every reconnection attempt fails (the connector retries with backoff)."""

    def __init__(self, remote_host: RemoteHost, ssh_home: Path, alias: str) -> None:
        self.key = ssh_home / ".ssh" / f"id_{alias}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        self.line = Path(f"{self.key}.pub").read_text()
        self.authorized = remote_host.directory / "server" / "authorized_keys" / remote_host.user
        set_host(ssh_home, alias, HostName=remote_host.address, User=remote_host.user,
                 IdentityFile=self.key)
        self.restore()

    def revoke(self) -> None:
        self.authorized.write_text(self.authorized.read_text().replace(self.line, ""))

    def restore(self) -> None:
        with open(self.authorized, "a") as f:
            f.write(self.line)


@pytest.fixture
def flaky(remote_host: RemoteHost, ssh_home: Path) -> Iterator[RevocableKey]:
    key = RevocableKey(remote_host, ssh_home, "flaky")
    yield key
    key.revoke()


def flaky_host(remote_host: RemoteHost, workspace: Optional[str], reconnect_timeout: float = 60
               ) -> SshConnector:
    """The connector to the host through the ``flaky`` fixture's key."""
    return SshConnector("flaky", workspace=workspace, python=remote_host.python,
                        reconnect_timeout=reconnect_timeout)


def runs(remote_host: RemoteHost, marks: str) -> List[str]:
    """The pids of the runs of the CountedWait job whose folder on the host is ``marks``."""
    done = remote_host.run(f"cat {shlex.quote(marks)}/runs", check=False)
    return done.stdout.split()


def release(remote_host: RemoteHost, marks: str) -> None:
    remote_host.run(f"mkdir -p {shlex.quote(marks)} && touch {shlex.quote(marks)}/go")


def remote_exists(remote_host: RemoteHost, path: str) -> bool:
    return remote_host.run(f"test -e {shlex.quote(path)}", check=False).returncode == 0


def drop(host: SshConnector, remote_host: RemoteHost) -> None:
    """Kill the sshd process serving the connector's connection (the link fails)."""
    port = host.connection.transport().sock.getsockname()[1]
    assert remote_host.kill_sessions(client_port=port)


def job_folder(workspace: str, cfg: object) -> str:
    """The folder on the host of a configured task (before it is submitted)."""
    info = cfg.__xpm__  # type: ignore[attr-defined]
    return f"{workspace}/jobs/{info.xpmtype.typeid}/{info.identifier.hex()}"


@contextlib.contextmanager
def launch_lock_held(remote_host: RemoteHost, folder: str) -> Iterator[Callable[[], None]]:
    """Another process holds the launch lock of the job folder ``folder`` on the host (a controller
    at work on the job) until the function given is called, or the block ends."""
    held, flag = f"{folder}.held", f"{folder}.unlock"
    remote_host.run(f"mkdir -p {shlex.quote(folder)}")
    holder = threading.Thread(target=remote_host.run, args=(
        f"flock {shlex.quote(folder)}/.launch.lock sh -c "
        f"'echo held > {shlex.quote(held)}; while [ ! -e {shlex.quote(flag)} ]; do sleep 0.05; done'",),
        kwargs={"timeout": 120})
    holder.start()

    def unlock() -> None:
        remote_host.run(f"touch {shlex.quote(flag)}")

    try:
        wait_until(lambda: remote_exists(remote_host, held), timeout=10,
                   what="the other holder of the launch lock")
        yield unlock
    finally:
        unlock()
        holder.join(timeout=30)


def test_a_drop_while_jobs_run_loses_none_and_runs_none_twice(
        remote_host: RemoteHost, flaky: RevocableKey, remote_workspace: str, tmp_path: Path) -> None:
    host = flaky_host(remote_host, remote_workspace)
    marks = f"{remote_workspace}/marks"
    launcher = DirectLauncher(connector=host, max_jobs=4)
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "drop", launcher=launcher):
            stays = CountedWait.C(marks=f"{marks}/stays").submit().__xpm__.job
            ends = CountedWait.C(marks=f"{marks}/ends").submit().__xpm__.job
            killed = CountedWait.C(marks=f"{marks}/killed").submit().__xpm__.job
            jobs = (stays, ends, killed)
            wait_until(lambda: all(j.state is JobState.RUNNING for j in jobs), timeout=30,
                       what="the three jobs to run")
            wait_until(lambda: all(runs(remote_host, f"{marks}/{n}") for n in ("stays", "ends", "killed")),
                       timeout=30, what="the three jobs' first lines")
            # The link fails, and stays down (the key is refused) while one job ends and one dies.
            flaky.revoke()
            drop(host, remote_host)
            release(remote_host, f"{marks}/ends")
            wait_until(lambda: remote_exists(remote_host, f"{ends.files.path}/{ends.name}.done"),
                       timeout=30, what="the job released meanwhile to end")
            pid = runs(remote_host, f"{marks}/killed")[0]
            remote_host.run(f"kill -KILL {pid}")
            wait_until(lambda: remote_host.run(f"kill -0 {pid}", check=False).returncode != 0,
                       timeout=10, what="the killed job to be gone")
            assert host.agent.starts == 1, "not reconnected yet"
            flaky.restore()
            wait_until(lambda: host.agent.starts == 2, timeout=30, what="the reconnection")
            # What ended meanwhile is concluded once the new agent finds each job again.
            wait_until(lambda: ends.finished and killed.finished, timeout=30,
                       what="the jobs that ended while disconnected to be concluded")
            assert stays.state is JobState.RUNNING, "a running job is unaffected"
            release(remote_host, f"{marks}/stays")
    assert ends.state is JobState.DONE and stays.state is JobState.DONE
    assert (ends.path / "out.txt").read_text().startswith("released")
    assert (stays.path / "out.txt").read_text().startswith("released")
    assert killed.state is JobState.ERROR and killed.failure is not None
    assert killed.failure.reason == "lost", killed.failure
    for name in ("stays", "ends", "killed"):
        assert len(runs(remote_host, f"{marks}/{name}")) == 1, f"{name} ran once"


def test_a_drop_while_waiting_for_the_launch_lock_launches_once(
        remote_host: RemoteHost, flaky: RevocableKey, remote_workspace: str, tmp_path: Path) -> None:
    host = flaky_host(remote_host, remote_workspace)
    marks = f"{remote_workspace}/marks"
    task = CountedWait.C(marks=marks)
    # Another controller holds the job's launch lock on the host.
    with launch_lock_held(remote_host, job_folder(remote_workspace, task)) as unlock:
        with experiment(tmp_path / "ws", "lock", launcher=DirectLauncher(connector=host)):
            job = task.submit().__xpm__.job
            wait_until(lambda: job.state is JobState.READY and host.agent._pending, timeout=30,
                       what="the scheduler to wait for the launch lock")
            drop(host, remote_host)  # the lock request is lost with the agent that waited
            wait_until(lambda: host.agent.starts == 2, timeout=30, what="the reconnection")
            assert not job.finished, "a launch cut by a drop is not a failed job"
            unlock()
            wait_until(lambda: runs(remote_host, marks), timeout=30, what="the job to run")
            release(remote_host, marks)
    assert job.state is JobState.DONE, job.failure
    assert len(runs(remote_host, marks)) == 1
    assert (job.path / "out.txt").exists()


def test_a_launch_whose_answer_is_lost_runs_the_job_once(
        remote_host: RemoteHost, flaky: RevocableKey, remote_workspace: str, tmp_path: Path) -> None:
    host = flaky_host(remote_host, remote_workspace)
    marks = f"{remote_workspace}/marks"
    launcher = DirectLauncher(connector=host, max_jobs=4)
    with experiment(tmp_path / "ws", "lost-answer", launcher=launcher):
        first = CountedWait.C(marks=f"{marks}/first").submit().__xpm__.job  # starts the fork server
        wait_until(lambda: first.state is JobState.RUNNING, timeout=30, what="the first job")
        agent = host.agent.hello["pid"]
        server = remote_host.run(
            f"pgrep -P {agent} -f 'experimaestro run --forkserver'").stdout.split()
        assert len(server) == 1, server
        # The fork server is held up (a loaded host): the agent waits for it to start the job...
        remote_host.run(f"kill -STOP {server[0]}")
        job = CountedWait.C(marks=f"{marks}/second").submit().__xpm__.job
        wait_until(lambda: job.state is JobState.READY and host.agent._pending, timeout=30,
                   what="the launch to be pending")
        wait_until(lambda: remote_exists(remote_host, f"{job.files.path}/{job.name}.sh"),
                   timeout=30, what="the launch script (the agent is launching)")
        # ...when the link fails: the job starts on the host, its launch's answer is lost.
        flaky.revoke()
        drop(host, remote_host)
        remote_host.run(f"kill -CONT {server[0]}")
        wait_until(lambda: runs(remote_host, f"{marks}/second"), timeout=30,
                   what="the job started by the lost launch")
        flaky.restore()
        wait_until(lambda: host.agent.starts == 2, timeout=30, what="the reconnection")
        wait_until(lambda: job.state is JobState.RUNNING, timeout=30,
                   what="the job to be found running")
        second = job.files.read_pid()
        assert second is not None
        wait_until(lambda: host.pids_alive([second]) == [False], timeout=30,
                   what="the second launch's runner to exit (the first one holds the job)")
        assert str(job.files.path) in job_events(host).following(), "its host pushes its end"
        # Its .pid names the second launch's runner, which found the first one at work and
        # exited: after another drop, the new agent still finds the job by its runner's lock.
        drop(host, remote_host)
        wait_until(lambda: host.agent.starts == 3, timeout=30, what="the second reconnection")
        wait_until(lambda: job_events(host).resyncs == 2, timeout=30,
                   what="the jobs to be found again")
        assert job.state is JobState.RUNNING, job.failure
        assert str(job.files.path) in job_events(host).following()
        release(remote_host, f"{marks}/second")
        release(remote_host, f"{marks}/first")
    assert job.state is JobState.DONE, job.failure
    assert len(runs(remote_host, f"{marks}/second")) == 1, "run once"
    assert (job.path / "out.txt").exists()


def test_finding_a_job_again_cut_by_a_drop_is_asked_again(
        remote_host: RemoteHost, ssh_home: Path, remote_workspace: str) -> None:
    host = SshConnector(remote_host.alias, workspace=remote_workspace, python=remote_host.python,
                        reconnect_timeout=60)
    launcher = DirectLauncher(connector=host, max_jobs=2)
    folder = f"{remote_workspace}/job"
    host.mkdir(folder)
    process = host.start_detached(["sleep", "60"], folder, None, None)  # a job running there
    files = RemoteJobFiles(host, Path(folder), "job")
    agent = host.agent.hello["pid"]
    remote_host.run(f"kill -STOP {agent}")  # the agent is held up: the request stays pending
    found: List[object] = []

    def reattach() -> None:
        try:
            found.append(remote.reattach(launcher, files, process.record))
        except Exception as exc:
            found.append(exc)

    asking = threading.Thread(target=reattach)
    asking.start()
    try:
        wait_until(lambda: host.agent._pending, timeout=10, what="the request to be pending")
        drop(host, remote_host)
    finally:
        remote_host.run(f"kill -CONT {agent}")
    asking.join(timeout=30)
    assert len(found) == 1 and isinstance(found[0], Launched), found
    endings: List[Ending] = []
    found[0].subscribe(endings.append)
    remote_host.run(f"kill {process.record.pid}")
    wait_until(lambda: endings, timeout=10, what="the end pushed by the new agent")


def test_a_sync_back_cut_by_a_drop_is_made_again(
        remote_host: RemoteHost, flaky: RevocableKey, remote_workspace: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    host = flaky_host(remote_host, remote_workspace)
    folder = f"{remote_workspace}/jobs/t/x"
    remote_host.run(f"mkdir -p {folder} && echo result > {folder}/result.txt")
    flaky.revoke()
    drop(host, remote_host)
    errors: List[BaseException] = []

    def fetch() -> None:
        try:
            host.fetch_job(folder, tmp_path / "local")
        except BaseException as exc:
            errors.append(exc)

    fetching = threading.Thread(target=fetch)
    fetching.start()
    try:
        # A big folder's copy (its own channel) fails and is made again; a small one's (a request
        # to the agent) waits for the connection to come back.
        wait_until(lambda: "copying it again once the connection is back" in caplog.text
                   or not fetching.is_alive() or host.agent._state == "reconnecting", timeout=30,
                   what="the copy to fail once, or to wait for the connection")
    finally:
        flaky.restore()
    fetching.join(timeout=60)
    assert not errors, errors
    assert (tmp_path / "local" / "result.txt").read_text() == "result\n"


def test_an_ending_unreadable_past_the_reconnect_timeout_ends_the_job(
        remote_host: RemoteHost, flaky: RevocableKey, remote_workspace: str, tmp_path: Path) -> None:
    host = flaky_host(remote_host, remote_workspace, reconnect_timeout=2)
    marks = f"{remote_workspace}/marks"
    blocked = CountedWait.C(marks=f"{marks}/blocked")
    try:
        with launch_lock_held(remote_host, job_folder(remote_workspace, blocked)):
            with pytest.raises(FailedExperiment):
                with experiment(tmp_path / "ws", "slow", launcher=DirectLauncher(connector=host, max_jobs=4)):
                    ends = CountedWait.C(marks=f"{marks}/ends").submit().__xpm__.job
                    wait_until(lambda: ends.state is JobState.RUNNING, timeout=30, what="a job to run")
                    # The scheduler waits for the other job's launch lock...
                    blocked.submit()
                    wait_until(lambda: host.agent._pending, timeout=30, what="the launch lock wait")
                    # ...when the first job ends: its end is pushed, and waits for the scheduler.
                    release(remote_host, f"{marks}/ends")
                    wait_until(lambda: str(ends.files.path) not in job_events(host).following(),
                               timeout=30, what="the end to be pushed")
                    flaky.revoke()
                    drop(host, remote_host)  # and stays down past the reconnect timeout
                    wait_until(lambda: ends.finished, timeout=60,
                               what="the job whose end cannot be read to end, not to hang")
            # Its end was pushed with its markers (read on the host when it ended): it is done,
            # though the connection stays down (its folder is not copied back: said in the log).
            assert ends.state is JobState.DONE, ends.failure
    finally:
        flaky.restore()


# --- controllers killed, controllers side by side (each a script in a process of its own) ---

CONTROLLER = """
import sys
from pathlib import Path
from experimaestro import experiment
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.direct import DirectLauncher
from polling import poll
from remote_tasks import CountedWait

host = SshConnector({alias!r}, workspace={workspace!r}, python={python!r}, code=[{helpers!r}])
Path({local!r}).mkdir(parents=True, exist_ok=True)
Path({local!r}, "connected").touch()
poll(lambda: Path({go!r}).exists(), 60)  # the test starts controllers together
with experiment({local!r}, "xp", launcher=DirectLauncher(connector=host, max_jobs=4)):
    jobs = [CountedWait.C(marks=f"{marks}/{{name}}").submit() for name in {names!r}]
    # Scheduled: to be launched (or waiting for the launch lock), or found running.
    poll(lambda: jobs[0].__xpm__.job.state.value in ("ready", "running", "done"), 60)
    Path({local!r}, "submitted").touch()
for job in jobs:
    print("result", (job.__xpm__.job.path / "out.txt").read_text())
"""


def controller(remote_host: RemoteHost, workspace: str, local: Path, names: List[str],
               go: Optional[Path] = None) -> str:
    """A controller script: it connects, waits for the file ``go`` (none: goes on at once), runs
    CountedWait jobs named ``names``, and prints their results."""
    return CONTROLLER.format(alias=remote_host.alias, workspace=workspace, python=remote_host.python,
                             helpers=str(HELPERS), local=str(local), marks=f"{workspace}/marks",
                             names=names, go=str(go or local))


def test_a_killed_controller_rerun_reattaches_its_remote_jobs(
        remote_host: RemoteHost, ssh_home: Path, remote_workspace: str, tmp_path: Path) -> None:
    marks = f"{remote_workspace}/marks"
    names = ["ends", "runs"]
    folders = {n: job_folder(remote_workspace, CountedWait.C(marks=f"{marks}/{n}")) for n in names}
    script = controller(remote_host, remote_workspace, tmp_path / "ws", names)
    first = start_controller(script, tmp_path, "first.py")
    wait_until(lambda: all(remote_exists(remote_host, f"{folders[n]}/countedwait.pid") for n in names)
               and all(runs(remote_host, f"{marks}/{n}") for n in names), timeout=60,
               what="both jobs to run on the host")
    records = {n: remote_host.run(f"cat {folders[n]}/countedwait.pid").stdout for n in names}
    first.kill()  # SIGKILL: nothing of the controller runs any more
    first.wait(timeout=10)
    release(remote_host, f"{marks}/ends")  # one job ends while no controller watches it
    wait_until(lambda: remote_exists(remote_host, f"{folders['ends']}/countedwait.done"), timeout=30,
               what="the job to end on its own")
    rerun = start_controller(script, tmp_path, "rerun.py")
    log = tmp_path / "ws" / "experiments" / "xp" / "experiment.log"
    wait_until(lambda: "was submitted earlier: waiting on it" in log.read_text()
               or rerun.poll() is not None, timeout=60, what="the rerun to find the running job")
    release(remote_host, f"{marks}/runs")
    assert rerun.wait(timeout=60) == 0, (tmp_path / "rerun.py.out").read_text()
    output = (tmp_path / "rerun.py.out").read_text()
    assert output.count("result released") == 2, output
    for name in names:
        assert len(runs(remote_host, f"{marks}/{name}")) == 1, f"{name} ran once"
        assert remote_host.run(f"cat {folders[name]}/countedwait.pid").stdout == records[name], (
            f"{name} was found again, not launched again")


def test_two_laptops_on_one_remote_workspace_run_each_job_once(
        remote_host: RemoteHost, ssh_home: Path, remote_workspace: str, tmp_path: Path) -> None:
    marks = f"{remote_workspace}/marks"
    names = ["a", "b", "c"]
    laptops = []
    # Both controllers connect, then submit the same jobs at the same moment: for each job, the
    # launch lock on the host makes them take turns (the second finds the job started by the
    # first), and the runner's own lock stops any second run.
    go = tmp_path / "go"
    for laptop in ("one", "two"):
        (tmp_path / laptop).mkdir()
        script = controller(remote_host, remote_workspace, tmp_path / laptop / "ws", names, go)
        laptops.append(start_controller(script, tmp_path / laptop))
    wait_until(lambda: all((tmp_path / laptop / "ws" / "connected").exists() for laptop in ("one", "two"))
               or any(p.poll() is not None for p in laptops), timeout=60,
               what="both controllers to connect")
    go.touch()
    wait_until(lambda: all(runs(remote_host, f"{marks}/{n}") for n in names), timeout=60,
               what="the jobs to run")
    for name in names:
        release(remote_host, f"{marks}/{name}")
    for laptop, process in zip(("one", "two"), laptops):
        output = (tmp_path / laptop / "controller.py.out")
        assert process.wait(timeout=60) == 0, output.read_text()
        assert output.read_text().count("result released") == 3, output.read_text()
    for name in names:
        assert len(runs(remote_host, f"{marks}/{name}")) == 1, f"{name} ran once"


# --- clear errors at the user's line, nothing half written locally ---


def raised_at(caught: pytest.ExceptionInfo, text: str) -> bool:
    """Whether the last line of this file in the traceback is the statement holding ``text``."""
    own = [entry for entry in caught.traceback if Path(str(entry.path)) == Path(__file__)]
    return bool(own) and text in str(own[-1].statement)


def no_job_folder(workspace: Path) -> bool:
    return not any((workspace / "jobs").rglob("*")) if workspace.exists() else True


@pytest.mark.parametrize("case", ["unreachable", "wrong user", "refused key", "unknown host key",
                                  "no experimaestro", "no workspace"])
def test_a_host_that_cannot_run_jobs_is_an_error_at_submit(
        case: str, remote_host: RemoteHost, ssh_home: Path, remote_workspace: str, tmp_path: Path
) -> None:
    options = dict(workspace=remote_workspace, python=remote_host.python, connect_timeout=3,
                   connect=False, code=[str(HELPERS)])
    alias = remote_host.alias
    if case == "unreachable":
        import socket

        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        set_host(ssh_home, alias := "closed", HostName="127.0.0.1", Port=port, User="me")
        expected = (SshConnectError, "cannot reach closed .*HostName and Port")
    elif case == "wrong user":
        options["user"] = "nobody-here"
        expected = (SshConnectError, "authentication as 'nobody-here' .*Check `User`")
    elif case == "refused key":
        key = ssh_home / ".ssh" / "id_other"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        set_host(ssh_home, alias := "otherkey", HostName=remote_host.address, User=remote_host.user,
                 IdentityFile=key)
        expected = (SshConnectError, f"authentication as '{remote_host.user}'.*{key}.*authorized_keys")
    elif case == "unknown host key":
        (ssh_home / ".ssh" / "known_hosts").write_text("")
        expected = (HostKeyError, "not in known_hosts.*ssh-keyscan")
    elif case == "no experimaestro":
        options["python"] = "/usr/bin/python3"
        expected = (AgentStartError, "not installed for /usr/bin/python3 .*pip install experimaestro==")
    else:
        del options["workspace"]
        expected = (ValueError, r"has no workspace.*SshConnector\(.*workspace='/scratch/me/xpm'\)")
    host = SshConnector(alias, **options)  # type: ignore[arg-type]
    start = time.monotonic()
    with pytest.raises(expected[0], match=expected[1]) as caught:
        with experiment(tmp_path / "ws", "xp", launcher=DirectLauncher(connector=host, max_jobs=2)):
            CountedWait.C(marks="/nowhere").submit()
    assert time.monotonic() - start < 15, "within the connect timeout"
    assert raised_at(caught, ".submit()"), caught.traceback
    assert no_job_folder(tmp_path / "ws"), list((tmp_path / "ws").rglob("*"))
    if case == "unknown host key":
        assert (ssh_home / ".ssh" / "known_hosts").read_text() == "", "never accepted"


def test_an_unreachable_host_is_an_error_at_the_connectors_line(ssh_home: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    set_host(ssh_home, "closed", HostName="127.0.0.1", Port=port, User="me")
    start = time.monotonic()
    with pytest.raises(SshConnectError, match="cannot reach closed") as caught:
        host = SshConnector("closed", workspace="/scratch/xpm", connect_timeout=2)
        with experiment(tmp_path / "ws", "xp", launcher=DirectLauncher(connector=host)):
            CountedWait.C(marks="/nowhere").submit()
    assert time.monotonic() - start < 5
    assert raised_at(caught, "SshConnector(")
    assert not (tmp_path / "ws").exists(), "nothing written locally"


def test_requests_in_a_long_outage_fail_at_once_past_the_reconnect_timeout(
        remote_host: RemoteHost, flaky: RevocableKey) -> None:
    host = flaky_host(remote_host, None, reconnect_timeout=2)
    flaky.revoke()
    drop(host, remote_host)
    start = time.monotonic()
    with pytest.raises(ReconnectTimeout, match="lost for more than 2"):
        host.resolve("~")
    assert 1.5 < time.monotonic() - start < 10
    start = time.monotonic()
    with pytest.raises(ReconnectTimeout):  # e.g. the next job's launch: no second wait
        host.resolve("~")
    assert time.monotonic() - start < 1, "the outage is already longer than the timeout"
    flaky.restore()
    wait_until(lambda: host.agent.starts == 2, timeout=30, what="the reconnection")
    assert str(host.resolve("~")) == remote_host.home
