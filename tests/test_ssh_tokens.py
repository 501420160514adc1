"""Tokens created on an SSH connector (``host.createtoken``): they live in the remote workspace, are
shared by every controller that uses it, and are taken and released by the host's agent with the
same token code as locally. Against the real sshd of tests/helpers/remote_host.py."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import pytest
from click.testing import CliRunner
from conftest import controller_env, start_controller, wait_until
from remote_host import RemoteHost
from remote_tasks import Add, Holds

from experimaestro import experiment
from experimaestro.cli import main
from experimaestro.connectors.local import LocalConnector
from experimaestro.connectors.ssh import SshConnector
from experimaestro.core.config import RunMode
from experimaestro.launchers import remote
from experimaestro.launchers.direct import DirectLauncher
from test_ssh_connector import fresh_connections  # noqa: F401 (autouse: no shared connection left)
from test_ssh_experiment import host  # noqa: F401 (a fixture)


def remote_log(remote_host: RemoteHost, path: str) -> list[tuple[str, str, float]]:
    """The ``(event, name, time)`` lines that ``Holds`` jobs appended to ``path`` on the host."""
    out = remote_host.run(f"cat {shlex.quote(path)} 2>/dev/null", check=False).stdout
    return [(e, n, float(t)) for e, n, t in (line.split() for line in out.splitlines() if line)]


def started(remote_host: RemoteHost, path: str) -> list[str]:
    return [name for event, name, _ in remote_log(remote_host, path) if event == "start"]


def max_overlap(events: list[tuple[str, str, float]]) -> int:
    """The most jobs that ran at the same time, from their start and end times."""
    current = peak = 0
    for _, delta in sorted((t, 1 if e == "start" else -1) for e, _, t in events):
        current += delta
        peak = max(peak, current)
    return peak


def holders(remote_host: RemoteHost, workspace: str, name: str) -> list[dict[str, Any]]:
    """The holder files of token ``name`` in the remote workspace, read on the host."""
    folder = f"{workspace}/.experimaestro/tokens/{name}/holders"
    out = remote_host.run(f"cat {shlex.quote(folder)}/*.json 2>/dev/null", check=False).stdout
    decoder, found, text = json.JSONDecoder(), [], out.strip()
    while text:
        value, end = decoder.raw_decode(text)
        found.append(value)
        text = text[end:].strip()
    return found


def remote_alive(remote_host: RemoteHost, pid: int) -> bool:
    return remote_host.run(f"kill -0 {pid}", check=False).returncode == 0


def probe(connector: SshConnector, workspace: str, name: str, total: int) -> bool:
    """Try to take one unit as a job that nobody launches (a third controller)."""
    return connector.call("token_acquire", workspace=workspace, tokens=[[name, total, 1]],
                          key="probe", job_prefix=f"{workspace}/jobs/probe/x/probe", owner="probe")


def test_a_remote_token_of_one_unit_runs_remote_jobs_one_after_the_other(
        host: SshConnector, remote_host: RemoteHost, remote_workspace: str, tmp_path: Path  # noqa: F811
) -> None:
    token = host.createtoken("one", 1)
    assert host.createtoken("one", 1) is token
    log = f"{remote_workspace}/log"
    with experiment(tmp_path / "ws", "tokens", launcher=DirectLauncher(connector=host, max_jobs=2)):
        for name in ("a", "b"):
            token(1, Holds.C(name=name, log=log, duration=0.3)).submit()
    events = remote_log(remote_host, log)
    assert sorted(n for e, n, _ in events if e == "end") == ["a", "b"]
    assert max_overlap(events) == 1, events  # two launcher slots, one unit: one after the other
    # The token lives in the remote workspace (released there), not in the local one
    assert remote_host.run(
        f"test -f {shlex.quote(remote_workspace)}/.experimaestro/tokens/one/total").returncode == 0
    assert holders(remote_host, remote_workspace, "one") == []
    assert not (tmp_path / "ws" / ".experimaestro" / "tokens" / "one").exists()


def test_a_job_only_holds_tokens_of_the_place_it_runs(host: SshConnector, tmp_path: Path  # noqa: F811
                                                      ) -> None:
    local = LocalConnector.instance().createtoken("here-only", 1)
    remote = host.createtoken("there-only", 1)
    with experiment(tmp_path / "ws", "remote", launcher=DirectLauncher(connector=host)):
        with pytest.raises(ValueError, match=r"host.createtoken\('here-only', 1\)"):
            local(1, Add.C(x=1)).submit()
    with experiment(tmp_path / "ws", "local"):
        with pytest.raises(ValueError, match="runs on this machine"):
            remote(1, Add.C(x=2)).submit()
    assert not (tmp_path / "ws" / "jobs").exists() or not any((tmp_path / "ws" / "jobs").iterdir())


def controller(tmp_path: Path, remote_host: RemoteHost, workspace: str, xp: str, total: int,
               n: int, gate: str = "", duration: float = 0.1,
               env: Optional[dict[str, str]] = None, python: Optional[str] = None) -> Any:
    """A controller process (own local workspace ``ws-XP``) whose ``n`` jobs each hold one unit of
    the remote token ``tk`` (its agent runs with ``python``, the host's by default)."""
    script = CONTROLLER_SCRIPT.format(
        root=str(tmp_path), alias=remote_host.alias, workspace=workspace,
        python=python or remote_host.python, total=total, xp=xp, n=n, log=f"{workspace}/log",
        gate=gate, duration=duration)
    scripts = tmp_path / "ctl"
    scripts.mkdir(exist_ok=True)
    return start_controller(script, scripts, f"{xp}.py", env=env)


CONTROLLER_SCRIPT = """
import logging
from pathlib import Path
from polling import poll
from experimaestro import experiment
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.direct import DirectLauncher
from remote_tasks import Holds

logging.getLogger("experimaestro").setLevel(logging.DEBUG)  # "waits for its tokens" in the log
root = Path({root!r})
host = SshConnector({alias!r}, workspace={workspace!r}, python={python!r})
token = host.createtoken("tk", {total})
poll((root / "go").exists, 60)  # controllers started together submit at the same moment
with experiment(root / "ws-{xp}", "xp", launcher=DirectLauncher(connector=host, max_jobs=4)):
    for i in range({n}):
        token(1, Holds.C(name=f"{xp}{{i}}", log={log!r}, gate={gate!r}, duration={duration})).submit()
    (root / "{xp}.submitted").touch()
"""


def experiment_log(tmp_path: Path, xp: str) -> str:
    path = tmp_path / f"ws-{xp}" / "experiments" / "xp" / "experiment.log"
    return path.read_text() if path.exists() else ""


def test_two_controllers_share_a_remote_token(remote_host: RemoteHost, ssh_home: Path,
                                              remote_workspace: str, tmp_path: Path  # noqa: F811
                                              ) -> None:
    """Two controllers (two processes, two local workspaces) use one remote workspace: its token of
    2 units is shared. While the first two jobs hold both units (their gate is closed), both
    controllers are alive with all their jobs submitted and no third job starts; never more than
    2 run at once."""
    gate, log = f"{remote_workspace}/gate", f"{remote_workspace}/log"
    controllers = {xp: controller(tmp_path, remote_host, remote_workspace, xp, 2, 3, gate)
                   for xp in ("left", "right")}
    (tmp_path / "go").touch()
    wait_until(lambda: all((tmp_path / f"{xp}.submitted").exists() for xp in controllers)
               and len(started(remote_host, log)) >= 2
               and all("waits for its tokens" in experiment_log(tmp_path, xp) for xp in controllers),
               timeout=90, what="both controllers to submit, two jobs to start, the others to wait")
    assert len(started(remote_host, log)) == 2, remote_log(remote_host, log)
    assert all(c.poll() is None for c in controllers.values())
    held = holders(remote_host, remote_workspace, "tk")
    assert len(held) == 2 and all(h["host"] != os.uname().nodename for h in held)
    # `tokens list --host` reads the remote workspace through the agent
    result = CliRunner().invoke(main, ["tokens", "list", "--host", remote_host.alias, "--workdir",
                                       remote_workspace, "--python", remote_host.python, "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert (row["name"], row["total"], row["used"]) == ("tk", 2, 2)
    remote_host.run(f"touch {shlex.quote(gate)}")
    for xp, c in controllers.items():
        assert c.wait(timeout=120) == 0, (tmp_path / "ctl" / f"{xp}.py.out").read_text()
    events = remote_log(remote_host, log)
    assert sorted(n for e, n, _ in events if e == "end") == [
        f"{xp}{i}" for xp in ("left", "right") for i in range(3)]
    assert max_overlap(events) == 2, events
    assert holders(remote_host, remote_workspace, "tk") == []


def test_a_killed_controllers_job_keeps_its_remote_unit_until_it_ends(
        host: SshConnector, remote_host: RemoteHost, remote_workspace: str, tmp_path: Path  # noqa: F811
) -> None:
    """Controller A is killed (-9) while its job holds the only unit: its agent exits on the host,
    but the job runs on, so the unit stays taken. When the job ends, controller B, which waits
    for the unit (and whose slow sweep is off: only the host's pushed event can wake it), gets it."""
    gate, log = f"{remote_workspace}/gate", f"{remote_workspace}/log"
    a = controller(tmp_path, remote_host, remote_workspace, "a", 1, 1, gate)
    (tmp_path / "go").touch()
    wait_until(lambda: started(remote_host, log) == ["a0"], timeout=90, what="A's job to start")
    (holder,) = holders(remote_host, remote_workspace, "tk")
    agent = holder["controller_pid"]  # the agent that serves A on the host
    assert remote_alive(remote_host, agent)
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=30)
    wait_until(lambda: not remote_alive(remote_host, agent), timeout=30,
               what="A's agent to exit on the host when A's connection ends")
    # A's agent is gone, its job runs: the unit is not reclaimed
    assert not probe(host, remote_workspace, "tk", 1)
    assert len(holders(remote_host, remote_workspace, "tk")) == 1
    b = controller(tmp_path, remote_host, remote_workspace, "b", 1, 1, gate, duration=0,
                   env={"XPM_SWEEP_INTERVAL": "3600"})
    wait_until(lambda: "waits for its tokens" in experiment_log(tmp_path, "b"), timeout=90,
               what="B to wait for the unit")
    assert started(remote_host, log) == ["a0"]
    remote_host.run(f"touch {shlex.quote(gate)}")
    assert b.wait(timeout=60) == 0, (tmp_path / "ctl" / "b.py.out").read_text()
    events = {(e, n): t for e, n, t in remote_log(remote_host, log)}
    assert events[("start", "b0")] >= events[("end", "a0")], events


HOLDER = """
import sys
from experimaestro.connectors.ssh import SshConnector

host = SshConnector({alias!r}, workspace={workspace!r}, python={python!r})
taken = host.call("token_acquire", workspace={workspace!r}, tokens=[["tk", 1, 1]], key="early",
                  job_prefix={workspace!r} + "/jobs/t/early/t", owner="early")
print("held" if taken else "refused", flush=True)
sys.stdin.read()  # holds the unit until killed
"""


def test_units_taken_by_a_controller_that_dies_before_launching_are_reclaimed(
        host: SshConnector, remote_host: RemoteHost, remote_workspace: str, tmp_path: Path  # noqa: F811
) -> None:
    """A holder recorded before its job's process exists: kept while its controller lives, freed
    once the controller (its agent on the host) is gone, since no job process was ever recorded."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER.format(alias=remote_host.alias, workspace=remote_workspace,
                                    python=remote_host.python))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=controller_env(), text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        (holder,) = holders(remote_host, remote_workspace, "tk")
        assert not probe(host, remote_workspace, "tk", 1)  # its controller lives
        proc.kill()
        proc.wait(timeout=30)
        wait_until(lambda: not remote_alive(remote_host, holder["controller_pid"]), timeout=30,
                   what="the dead controller's agent to exit")
        assert probe(host, remote_workspace, "tk", 1)
        assert [h["key"] for h in holders(remote_host, remote_workspace, "tk")] == ["probe"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_agent_whose_controller_is_gone_finishes_the_launch_under_way(
        host: SshConnector, remote_host: RemoteHost, remote_workspace: str, tmp_path: Path  # noqa: F811
) -> None:
    """The controller's connection ends while its agent launches a job that holds the only unit
    (the job's Python is held at a gate): the agent, the holder's controller process, stays until
    the launch is done, so the unit is not reclaimed while the job is about to start; then the
    job's runner holds it (its lock), until the job ends."""
    gate, begun = f"{remote_workspace}/python-gate", f"{remote_workspace}/python-begun"
    wrapper = f"{remote_workspace}/slow-python"
    host.mkdir(remote_workspace)
    host.write_atomic(wrapper, f"#!/bin/sh\ntouch {shlex.quote(begun)}\n"
                               f"while [ ! -e {shlex.quote(gate)} ]; do sleep 0.02; done\n"
                               f"exec {shlex.quote(remote_host.python)} \"$@\"\n")
    assert host.run(["chmod", "+x", wrapper]).returncode == 0
    launcher = DirectLauncher(connector=host, python=wrapper)
    launcher.check()
    with experiment(tmp_path / "ws", "gen", launcher=launcher, run_mode=RunMode.GENERATE_ONLY):
        job = Add.C(x=8).submit().__xpm__.job
    prefix = f"{job.files.path}/{job.name}"
    assert host.call("token_acquire", workspace=remote_workspace, tokens=[["tk", 1, 1]],
                     key=job.identifier, job_prefix=prefix, owner="the controller")
    agent = host.agent.hello["pid"]

    def launch() -> None:
        try:
            remote.launch(launcher, [job.files])
        except Exception:  # the connection is cut under it: expected
            pass

    thread = threading.Thread(target=launch, daemon=True)
    thread.start()
    wait_until(lambda: remote_host.run(f"test -e {shlex.quote(begun)}", check=False).returncode == 0,
               timeout=30, what="the launch to be under way")
    assert remote_host.kill_sessions()  # the controller's connection ends (as when it dies)
    thread.join(30)
    # No .pid, no runner yet: only the old agent, still launching, keeps the unit
    assert not probe(host, remote_workspace, "tk", 1)  # through the new agent
    assert remote_alive(remote_host, agent)
    remote_host.run(f"touch {shlex.quote(gate)}")
    wait_until(lambda: not remote_alive(remote_host, agent), timeout=60,
               what="the old agent to exit once the launch is done")
    wait_until(lambda: job.files.marker_state() is not None, timeout=60, what="the job to end")
    assert probe(host, remote_workspace, "tk", 1)


def test_a_controller_that_reconnected_releases_its_own_units(
        host: SshConnector, remote_host: RemoteHost, remote_workspace: str, tmp_path: Path  # noqa: F811
) -> None:
    """The connection drops while a job holds a unit: the holder was written by the old agent,
    the release comes through the new one, and the owner (the controller) is what matches."""
    token = host.createtoken("tk", 1)
    gate, log = f"{remote_workspace}/gate", f"{remote_workspace}/log"
    with experiment(tmp_path / "ws", "xp", launcher=DirectLauncher(connector=host)):
        token(1, Holds.C(name="r", log=log, gate=gate)).submit()
        wait_until(lambda: started(remote_host, log) == ["r"], timeout=60, what="the job to start")
        starts = host.agent.starts
        assert remote_host.kill_sessions()
        wait_until(lambda: host.agent.starts > starts, timeout=60, what="a new agent")
        remote_host.run(f"touch {shlex.quote(gate)}")
    assert [n for e, n, _ in remote_log(remote_host, log) if e == "end"] == ["r"]
    assert holders(remote_host, remote_workspace, "tk") == []


def reconnected(tmp_path: Path, xp: str) -> bool:
    """Whether controller ``xp`` lost its agent and started a new one (its experiment's log)."""
    text = experiment_log(tmp_path, xp)
    return "reconnecting" in text and "agent started" in text.split("reconnecting", 1)[1]


def test_a_waiting_controller_is_woken_after_a_reconnection(
        remote_host: RemoteHost, ssh_home: Path, remote_workspace: str, tmp_path: Path  # noqa: F811
) -> None:
    """The connections drop while controller B waits for a unit that A's job holds: B's new agent
    is asked to watch the token again, so the release that comes later still wakes B (whose slow
    sweep is off)."""
    gate, log = f"{remote_workspace}/gate", f"{remote_workspace}/log"
    a = controller(tmp_path, remote_host, remote_workspace, "a", 1, 1, gate)
    (tmp_path / "go").touch()
    wait_until(lambda: started(remote_host, log) == ["a0"], timeout=90, what="A's job to start")
    b = controller(tmp_path, remote_host, remote_workspace, "b", 1, 1, gate, duration=0,
                   env={"XPM_SWEEP_INTERVAL": "3600"})
    wait_until(lambda: "waits for its tokens" in experiment_log(tmp_path, "b"), timeout=90,
               what="B to wait for the unit")
    assert remote_host.kill_sessions()
    wait_until(lambda: reconnected(tmp_path, "b"), timeout=60, what="B to reconnect")
    remote_host.run(f"touch {shlex.quote(gate)}")
    assert a.wait(timeout=60) == 0, (tmp_path / "ctl" / "a.py.out").read_text()
    assert b.wait(timeout=60) == 0, (tmp_path / "ctl" / "b.py.out").read_text()
    events = {(e, n): t for e, n, t in remote_log(remote_host, log)}
    assert events[("start", "b0")] >= events[("end", "a0")], events


def test_a_unit_released_while_a_waiting_controller_is_disconnected_wakes_it_when_it_is_back(
        host: SshConnector, remote_host: RemoteHost, remote_workspace: str, tmp_path: Path  # noqa: F811
) -> None:
    """B waits for the unit A's job holds; the connections drop, and B's new agent is held back
    (its Python waits at a gate) while A's job ends and A releases the unit: no event can tell B.
    Once B is back it tries again at once (the reconnection wakes every waiter)."""
    gate, log = f"{remote_workspace}/gate", f"{remote_workspace}/log"
    agent_gate, once = f"{remote_workspace}/agent-gate", f"{remote_workspace}/agent-once"
    wrapper = f"{remote_workspace}/agent-python"
    host.mkdir(remote_workspace)
    host.write_atomic(wrapper, (  # a second agent waits for agent-gate; jobs are not held
        f'#!/bin/sh\nif [ "$3" = agent ] && [ -e {shlex.quote(once)} ]; then\n'
        f"  while [ ! -e {shlex.quote(agent_gate)} ]; do sleep 0.02; done\nfi\n"
        f'if [ "$3" = agent ]; then touch {shlex.quote(once)}; fi\n'
        f'exec {shlex.quote(remote_host.python)} "$@"\n'))
    assert host.run(["chmod", "+x", wrapper]).returncode == 0
    a = controller(tmp_path, remote_host, remote_workspace, "a", 1, 1, gate)
    (tmp_path / "go").touch()
    wait_until(lambda: started(remote_host, log) == ["a0"], timeout=90, what="A's job to start")
    b = controller(tmp_path, remote_host, remote_workspace, "b", 1, 1, gate, duration=0,
                   env={"XPM_SWEEP_INTERVAL": "3600"}, python=wrapper)
    wait_until(lambda: "waits for its tokens" in experiment_log(tmp_path, "b"), timeout=90,
               what="B to wait for the unit")
    assert remote_host.kill_sessions()
    remote_host.run(f"touch {shlex.quote(gate)}")
    assert a.wait(timeout=60) == 0, (tmp_path / "ctl" / "a.py.out").read_text()
    assert holders(remote_host, remote_workspace, "tk") == []  # released while B is away
    assert not reconnected(tmp_path, "b")
    remote_host.run(f"touch {shlex.quote(agent_gate)}")
    assert b.wait(timeout=60) == 0, (tmp_path / "ctl" / "b.py.out").read_text()
    assert [n for e, n, _ in remote_log(remote_host, log) if e == "start"] == ["a0", "b0"]
