"""``experimaestro jobs ...`` and ``experimaestro experiments ...`` on workspaces made by real runs.

The workspaces are built by controller scripts run in subprocesses (real jobs, real markers), then
inspected with click's CliRunner on the real command group (``experimaestro.cli.main``); two tests run
the installed ``experimaestro`` console script and ``python -m experimaestro``.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import click
import pytest
from click.testing import CliRunner, Result
from conftest import wait_until

from experimaestro import Config, LightweightTask, Param, Task, tag
from experimaestro.cli.jobs import document_tags
from experimaestro.core.serialization import dumps, parse_document
from experimaestro.launchers.jobfiles import FailureRecord

TASKS = '''
from pathlib import Path

from polling import poll

from experimaestro import Config, Param, Task


class Data(Config):
    n: Param[int]


class Learn(Task):
    n: Param[int]
    data: Param[Data]

    def execute(self):
        print("learning", self.n)


class Broken(Task):
    def execute(self):
        raise ValueError("broken on purpose")


class Waiter(Task):
    """Waits for a file that the test never creates (bounded by its own timeout)."""

    flag: Param[str]
    timeout: Param[float] = 30.0

    def execute(self):
        print("waiting for", self.flag, flush=True)
        poll(Path(self.flag).exists, self.timeout)
'''

CONTROLLER = '''
import sys

from experimaestro import FailedExperiment, experiment, tag
from xpmcli_tasks import Broken, Data, Learn, Waiter

workdir, name = sys.argv[1], sys.argv[2]
try:
    with experiment(workdir, name):
        if name == "alpha":
            Learn.C(n=tag(1), data=Data.C(n=tag(2)).tag("size", "big")).submit()
            Broken.C().submit()
        elif name == "beta":
            Learn.C(n=tag(1), data=Data.C(n=tag(2)).tag("size", "big")).submit()
            Learn.C(n=tag(3), data=Data.C(n=4)).submit()
        elif name == "waiting":
            Waiter.C(flag=sys.argv[3]).submit()
except FailedExperiment:
    sys.exit(3)
'''

LEARN = "xpmcli_tasks.learn"
BROKEN = "xpmcli_tasks.broken"


# --- helpers -------------------------------------------------------------------------------------


def cli() -> click.Group:
    """The real ``experimaestro`` command group (cli.py), with no stand-in."""
    from experimaestro.cli import main

    return main


def invoke(*args: Any, env: Optional[dict[str, Optional[str]]] = None) -> Result:
    environment: dict[str, Optional[str]] = {"XPM_WORKDIR": None}
    environment.update(env or {})
    return CliRunner().invoke(cli(), [str(a) for a in args], env=environment)


def ok(*args: Any) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output


def listing(workdir: Path, *args: Any) -> list[dict[str, Any]]:
    return json.loads(ok("jobs", "list", "--workdir", workdir, "--json", *args))


def env_for(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(Path(__file__).parent / "helpers")])
    for name in ("XPM_SWEEP_INTERVAL", "XPM_WORKDIR"):
        env.pop(name, None)
    return env


def write_programs(root: Path) -> Path:
    (root / "xpmcli_tasks.py").write_text(TASKS)
    script = root / "controller.py"
    script.write_text(CONTROLLER)
    return script


def run_controller(root: Path, workdir: Path, name: str, expected: int) -> None:
    script = write_programs(root)
    done = subprocess.run(
        [sys.executable, str(script), str(workdir), name],
        env=env_for(root), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == expected, done.stderr


def build_workspace(root: Path) -> Path:
    """alpha: Learn n=1 (done) and Broken (failed); beta: the same Learn and Learn n=3 (done)."""
    workdir = root / "ws"
    run_controller(root, workdir, "alpha", expected=3)
    run_controller(root, workdir, "beta", expected=0)
    return workdir


def fake_job(workdir: Path, typeid: str, identifier: str, marker: Optional[str] = None) -> Path:
    """A job folder written by hand (for cases real runs cannot produce on demand)."""
    path = workdir / "jobs" / typeid / identifier
    path.mkdir(parents=True)
    name = typeid.rsplit(".", 1)[-1]
    if marker == "done":
        (path / f"{name}.done").write_text("")
    elif marker == "failed":
        (path / f"{name}.failed").write_text(FailureRecord(1, "failed").to_json())
    return path


def by_type(entries: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Entries keyed by (type id, value of tag n, or -1)."""
    return {(e["typeid"], e["tags"].get("n", -1)): e for e in entries}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("cli"))


# --- jobs list -----------------------------------------------------------------------------------


def test_list_json_states_tags_experiments(workspace: Path) -> None:
    entries = by_type(listing(workspace))
    assert set(entries) == {(LEARN, 1), (LEARN, 3), (BROKEN, -1)}
    learn1, learn3, broken = entries[LEARN, 1], entries[LEARN, 3], entries[BROKEN, -1]
    # The root's n=1 wins over Data's n=2; Data's own tag "size" is part of the graph's tags.
    assert learn1["tags"] == {"n": 1, "size": "big"}
    assert learn3["tags"] == {"n": 3}
    assert broken["tags"] == {}
    assert learn1["state"] == learn3["state"] == "done"
    assert learn1["failure"] is None
    assert broken["state"] == "failed"
    assert broken["failure"] == {
        "code": 1, "reason": "failed", "message": "ValueError: broken on purpose"
    }
    assert learn1["experiments"] == ["alpha", "beta"]
    assert learn3["experiments"] == ["beta"]
    assert broken["experiments"] == ["alpha"]
    path = Path(learn1["path"])
    assert path == workspace.absolute() / "jobs" / LEARN / learn1["identifier"]
    assert path.is_dir() and len(learn1["identifier"]) == 64


def test_list_table(workspace: Path) -> None:
    lines = ok("jobs", "list", "--workdir", workspace).splitlines()
    assert lines[0].split() == ["STATE", "TYPE", "ID", "EXPERIMENTS", "TAGS"]
    # Aligned columns: every row's type starts where the TYPE header does.
    column = lines[0].index("TYPE")
    assert all(line[column:].startswith("xpmcli_tasks.") for line in lines[1:])
    rows = {tuple(line.split()) for line in lines[1:]}
    ids = {(e["typeid"], e["tags"].get("n", -1)): e["identifier"][:12] for e in listing(workspace)}
    assert rows == {
        ("done", LEARN, ids[LEARN, 1], "alpha,beta", "n=1", "size=big"),
        ("done", LEARN, ids[LEARN, 3], "beta", "n=3"),
        ("failed", BROKEN, ids[BROKEN, -1], "alpha"),
    }


def test_list_filters(workspace: Path) -> None:
    def keys(*args: Any) -> set[tuple[str, int]]:
        return set(by_type(listing(workspace, *args)))

    assert keys("--state", "failed") == {(BROKEN, -1)}
    assert keys("--state", "done") == {(LEARN, 1), (LEARN, 3)}
    assert keys("--state", "done", "--state", "failed") == {(LEARN, 1), (LEARN, 3), (BROKEN, -1)}
    assert keys("--state", "running") == set()
    assert keys("--experiment", "alpha") == {(LEARN, 1), (BROKEN, -1)}
    assert keys("--experiment", "beta", "--state", "done") == {(LEARN, 1), (LEARN, 3)}
    assert keys("--tags", "n=1") == {(LEARN, 1)}
    assert keys("--tags", "n=1", "--tags", "size=big") == {(LEARN, 1)}
    assert keys("--tags", "n=3", "--tags", "size=big") == set()
    assert keys("--tags", "size=small") == set()


def test_list_bad_options(workspace: Path) -> None:
    result = invoke("jobs", "list", "--workdir", workspace, "--tags", "n")
    assert result.exit_code == 2 and "'n' is not of the form key=value" in result.output
    result = invoke("jobs", "list", "--workdir", workspace, "--experiment", "gamma")
    assert result.exit_code == 2
    assert "no experiment 'gamma'" in result.output and "alpha, beta" in result.output
    result = invoke("jobs", "list", "--workdir", workspace, "--state", "lost")
    assert result.exit_code == 2


def test_not_a_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke("jobs", "list", "--workdir", tmp_path)
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"{tmp_path} is not an experimaestro workspace (it has no jobs/ folder)" in message
    assert "--workdir" in message and "XPM_WORKDIR" in message
    # The default is the current folder.
    monkeypatch.chdir(tmp_path)
    result = invoke("experiments", "list")
    assert result.exit_code == 2 and "not an experimaestro workspace" in result.output


def test_workdir_from_environment(workspace: Path) -> None:
    result = invoke("jobs", "list", "--json", env={"XPM_WORKDIR": str(workspace)})
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 3


def test_real_command_without_the_user_modules(workspace: Path) -> None:
    """The installed ``experimaestro`` console script (``.venv/bin/experimaestro``) lists jobs, reading
    tags without importing the tasks' module."""
    script = Path(sys.executable).parent / "experimaestro"
    assert script.is_file(), f"{script} is missing: install the package (pip install -e .)"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # xpmcli_tasks cannot be imported
    env.pop("XPM_WORKDIR", None)
    for command in (["jobs", "list"], ["experiments", "list"]):
        done = subprocess.run(
            [str(script), *command, "--workdir", str(workspace)],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        if command[0] == "jobs":
            assert lines[0].split() == ["STATE", "TYPE", "ID", "EXPERIMENTS", "TAGS"]
            assert any(line.split()[-2:] == ["n=1", "size=big"] for line in lines[1:])
            assert len(lines) == 4
        else:
            assert [line.split()[0] for line in lines] == ["NAME", "alpha", "beta"]


def test_python_dash_m_is_the_same_command() -> None:
    """``python -m experimaestro`` runs the same group as the console script."""
    done = subprocess.run(
        [sys.executable, "-m", "experimaestro", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert {"jobs", "experiments", "tokens", "explain-id"} <= listed


# --- tags of a params document -------------------------------------------------------------------


class Leaf(Config):
    x: Param[int]


class Holder(Config):
    leaves: Param[list[Leaf]]
    named: Param[dict[str, Leaf]]


class Setup(LightweightTask):
    y: Param[int]


class Root(Task):
    holder: Param[Holder]
    other: Param[Leaf]


def test_document_tags_are_the_graph_tags() -> None:
    """Tags read from params.json equal Config.tags(): same union, same precedence."""
    root = Root.C(
        holder=Holder.C(
            leaves=[Leaf.C(x=tag(1)).tag("k", "leaf-a"), Leaf.C(x=tag(2)).tag("k", "leaf-b")],
            named={"a": Leaf.C(x=tag(3)).tag("z", "named")},
        ).tag("h", 1),
        other=Leaf.C(x=tag(4)),
    )
    root.tag("k", "root")
    root.__xpm__.init_tasks = [Setup.C(y=tag(5)).tag("w", True)]
    expected = root.tags()
    doc = parse_document(dumps(root))
    assert document_tags(doc) == dict(sorted(expected.items()))
    assert document_tags(doc)["k"] == "root"


# --- jobs path / log -----------------------------------------------------------------------------


def test_path_by_prefix(workspace: Path) -> None:
    entries = by_type(listing(workspace))
    identifier = entries[BROKEN, -1]["identifier"]
    expected = entries[BROKEN, -1]["path"]
    assert ok("jobs", "path", "--workdir", workspace, identifier[:10]).strip() == expected
    assert ok("jobs", "path", "--workdir", workspace, identifier).strip() == expected
    assert ok("jobs", "path", "--workdir", workspace, f"{BROKEN}/{identifier[:6]}").strip() == (
        expected
    )


def test_ambiguous_and_unknown_ids(tmp_path: Path) -> None:
    fake_job(tmp_path, "a.first", "abc1" + "0" * 60, "done")
    fake_job(tmp_path, "a.second", "abc2" + "0" * 60, "failed")
    result = invoke("jobs", "path", "--workdir", tmp_path, "abc")
    assert result.exit_code == 2
    assert "'abc' matches 2 jobs; give a longer prefix" in result.output
    assert f"a.first/abc1{'0' * 60}" in result.output
    assert f"a.second/abc2{'0' * 60}" in result.output
    assert ok("jobs", "path", "--workdir", tmp_path, "abc2").strip().endswith("abc2" + "0" * 60)
    assert ok("jobs", "path", "--workdir", tmp_path, "a.first/abc").strip().endswith(
        "abc1" + "0" * 60
    )
    result = invoke("jobs", "path", "--workdir", tmp_path, "fff")
    assert result.exit_code == 2 and "no job 'fff' in" in result.output
    result = invoke("jobs", "log", "--workdir", tmp_path, "abc1")
    assert result.exit_code == 1 and "has no stderr log yet" in result.output


def test_log(workspace: Path) -> None:
    entries = by_type(listing(workspace))
    broken = entries[BROKEN, -1]["identifier"][:8]
    learn = entries[LEARN, 3]["identifier"][:8]
    stderr = ok("jobs", "log", "--workdir", workspace, broken)
    assert "ValueError: broken on purpose" in stderr
    stdout = ok("jobs", "log", "--workdir", workspace, learn, "--stdout")
    assert "learning 3" in stdout and "Traceback" not in stdout
    # On an ended job, --follow prints the log and returns.
    assert ok("jobs", "log", "--workdir", workspace, learn, "--stdout", "--follow") == stdout


# --- experiments list ----------------------------------------------------------------------------


def test_experiments_list(workspace: Path) -> None:
    data = json.loads(ok("experiments", "list", "--workdir", workspace, "--json"))
    zero = {"done": 0, "failed": 0, "running": 0, "unscheduled": 0, "missing": 0}
    assert data == [
        {"name": "alpha", "jobs": 2, "states": {**zero, "done": 1, "failed": 1}},
        {"name": "beta", "jobs": 2, "states": {**zero, "done": 2}},
    ]
    lines = ok("experiments", "list", "--workdir", workspace).splitlines()
    assert lines[0].split() == [
        "NAME", "JOBS", "DONE", "FAILED", "RUNNING", "UNSCHEDULED", "MISSING"
    ]
    assert lines[1].split() == ["alpha", "2", "1", "1", "0", "0", "0"]
    assert lines[2].split() == ["beta", "2", "2", "0", "0", "0", "0"]


# --- jobs clean ----------------------------------------------------------------------------------


def test_clean_dry_run_then_perform(tmp_path: Path) -> None:
    workdir = build_workspace(tmp_path)
    broken = by_type(listing(workdir))[BROKEN, -1]
    broken_path = Path(broken["path"])
    broken_link = workdir / "experiments" / "alpha" / "jobs" / BROKEN / broken["identifier"]
    dangling = workdir / "experiments" / "beta" / "jobs" / "gone.task" / ("9" * 64)
    dangling.parent.mkdir(parents=True)
    dangling.symlink_to(workdir / "jobs" / "gone.task" / ("9" * 64))
    # A failed job whose runner holds its lock again (a rerun starting): never removed.
    busy = fake_job(workdir, "other.task", "b" * 64, "failed")
    lock_fd = os.open(busy / "task.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        dry = ok("jobs", "clean", "--workdir", workdir)
        assert "Would remove 2 failed job folder(s):" in dry
        assert f"  {broken_path}\n" in dry and f"  {busy}\n" in dry
        assert "Would remove 2 experiment link(s)" in dry
        assert f"  {broken_link}\n" in dry and f"  {dangling}\n" in dry
        assert "dry run: add --perform" in dry
        assert broken_path.is_dir() and broken_link.is_symlink() and dangling.is_symlink()

        result = invoke("jobs", "clean", "--workdir", workdir, "--perform")
        assert result.exit_code == 0, result.output
        assert f"Kept {busy}: it is running (again)." in result.output
        assert "Removed 1 failed job folder(s) and 2 experiment link(s)" in result.output
    finally:
        os.close(lock_fd)
    assert not broken_path.exists() and not broken_path.parent.exists()
    assert not broken_link.is_symlink() and not dangling.is_symlink()
    assert busy.is_dir()
    assert {(e["typeid"], e["state"]) for e in listing(workdir)} == {
        (LEARN, "done"), ("other.task", "failed")
    }
    assert ok("jobs", "clean", "--workdir", workdir, "--state", "done").startswith(
        "Would remove 2 done job folder(s):"
    )


# --- jobs kill -----------------------------------------------------------------------------------


def test_kill_running_job(tmp_path: Path) -> None:
    script = write_programs(tmp_path)
    workdir = tmp_path / "ws"
    flag = tmp_path / "never"
    controller = subprocess.Popen(
        [sys.executable, str(script), str(workdir), "waiting", str(flag)],
        env=env_for(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        running = wait_until(
            lambda: (workdir / "jobs").is_dir() and listing(workdir, "--state", "running"),
            timeout=30, interval=0.05, what="the job to run",
        )
        (entry,) = running
        assert entry["typeid"] == "xpmcli_tasks.waiter"
        job_id = entry["identifier"][:8]
        # Kill once execute() runs: a SIGTERM during the runner's start-up ends as "killed".
        stdout = Path(entry["path"]) / "waiter.out"
        wait_until(
            lambda: stdout.exists() and "waiting for" in stdout.read_text(), timeout=30,
            what="the task to start"
        )
        killed = ok("jobs", "kill", "--workdir", workdir, job_id)
        assert "Sent SIGTERM to process" in killed and "it will end as failed" in killed
        failed = Path(entry["path"]) / "waiter.failed"
        wait_until(failed.exists, timeout=20, what="the failure marker")
        assert FailureRecord.parse(failed.read_text()).reason == "cancelled"
        _, stderr = controller.communicate(timeout=30)
        assert controller.returncode == 3, stderr
    finally:
        flag.touch()  # lets the task end if the test failed before the kill
        if controller.poll() is None:
            controller.kill()
            controller.wait()
    (entry,) = listing(workdir)
    assert entry["state"] == "failed" and entry["failure"]["reason"] == "cancelled"
    assert "failed (cancelled)" in ok("jobs", "list", "--workdir", workdir)
    again = ok("jobs", "kill", "--workdir", workdir, job_id)
    assert "is not running (failed (cancelled)): nothing to do." in again
