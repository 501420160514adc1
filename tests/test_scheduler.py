"""The scheduler with real job processes (local launcher): running, reusing, dependencies,
failures, callbacks. Controllers run in the test process here; crash and race cases are in
test_crash.py and test_race.py."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from xpm_tasks import ChainReader, Consumer, Producer, Step, count, executions

from conftest import run_controller, wait_until
from experimaestro import FailedExperiment, JobState, RunMode, experiment
from experimaestro.launchers.direct import DirectLauncher


def test_run_then_reuse(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "xp") as xp:
        step = Step.C(name="a", log=log).submit()
    job = step.__xpm__.job
    assert job.state is JobState.DONE
    assert job.path == tmp_path / "ws" / "jobs" / "xpm_tasks.step" / job.identifier
    assert (job.path / "step.done").exists()
    assert (job.path / "output.txt").read_text() == "a"
    assert (xp.jobspath / "xpm_tasks.step" / job.identifier).resolve() == job.path
    assert xp.resultspath.is_dir()
    pid = json.loads((job.path / "step.pid").read_text())
    assert {"pid", "create_time", "host", "started", "type"} <= set(pid)

    # A rerun reuses the done job: nothing starts.
    with experiment(tmp_path / "ws", "xp2"):
        again = Step.C(name="a", log=log).submit()
    assert again.__xpm__.job.state is JobState.DONE
    assert count(log, "start", "a") == 1


def test_output_dependency_and_explicit_dependency(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "xp"):
        result = Producer.C(value=42, log=log).submit()
        consumer = Consumer.C(result=result, log=log).submit()
        first = Step.C(name="first", log=log).submit()
        second = Step.C(name="second", log=log)
        second.add_dependencies(first)
        second.submit()
    rows = executions(log)
    times = {(e, n): t for e, n, t, _ in rows}
    assert times[("start", "consumer")] >= times[("end", "producer42")]
    assert times[("start", "second")] >= times[("end", "first")]
    assert (consumer.jobpath / "seen.txt").read_text() == "42"
    assert result.jobpath == result.producer.jobpath


def test_upstream_tasks_are_references_read_when_used(tmp_path: Path) -> None:
    """A job's params.json refers to upstream jobs instead of copying their graphs (a chain of n
    tasks writes O(n) bytes, not O(n^2)), and the job process still reads their values."""
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "xp"):
        step = None
        for i in range(5):
            step = Step.C(name=f"s{i}", log=log, after=step).submit()
        reader = ChainReader.C(last=step).submit()
    assert (reader.jobpath / "chain.txt").read_text() == " ".join(
        f"s{i}:s{i}" for i in reversed(range(5))
    )
    document = json.loads((reader.jobpath / "params.json").read_text())
    assert len(document["objects"]) == 2  # the reader, and a reference to the last step
    reference = document["objects"][0]
    assert reference["job"] == str(step.__xpm__.job.relpath) and reference["fields"] == {}

    # In a job process, a reference is read only when one of its values is used.
    from experimaestro.runner import _load

    loaded = _load(reader.jobpath / "params.json")
    last = loaded.__dict__["last"]
    assert last.__xpm__.loader is not None and "name" not in last.__dict__
    assert last.jobpath == step.jobpath  # known without reading it
    assert last.name == "s4" and last.__xpm__.loader is None
    assert last.after.__xpm__.loader is not None  # its own upstream is still not read


def test_failure_propagates_to_dependents(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    log = tmp_path / "log"
    with pytest.raises(FailedExperiment) as info:
        with experiment(tmp_path / "ws", "xp"):
            bad = Step.C(name="bad", log=log, fail=True).submit()
            child = Step.C(name="child", log=log, after=bad).submit()
            grandchild = Step.C(name="grandchild", log=log, after=child).submit()
            ok = Step.C(name="ok", log=log).submit()
    assert {j.task.name for j in info.value.jobs} == {"bad", "child", "grandchild"}
    assert ok.__xpm__.job.state is JobState.DONE
    assert bad.__xpm__.job.failure.reason == "failed"
    for dependent in (child, grandchild):
        job = dependent.__xpm__.job
        assert job.state is JobState.ERROR
        assert job.failure.reason == "dependency"
        assert json.loads((job.path / "step.failed").read_text())["reason"] == "dependency"
    assert count(log, "start", "child") == 0 and count(log, "start", "grandchild") == 0
    summary = capsys.readouterr().err
    assert str(bad.jobpath) in summary
    assert "step bad fails on purpose" in summary  # the tail of its stderr


def test_runner_that_never_starts_fails_then_reruns(tmp_path: Path) -> None:
    log = tmp_path / "log"
    launcher = DirectLauncher(python="/bin/false")  # the runner never starts
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "xp1"):
            step = Step.C(name="flaky", log=log).submit(launcher=launcher)
    job = step.__xpm__.job
    failure = json.loads((job.path / "step.failed").read_text())
    assert failure["reason"] == "failed" and "before writing a marker" in failure["message"]

    # Submitted again by a later experiment, a failed job runs again.
    with experiment(tmp_path / "ws", "xp2"):
        again = Step.C(name="flaky", log=log).submit()
    assert again.__xpm__.job.state is JobState.DONE
    assert not (job.path / "step.failed").exists()
    assert count(log, "end", "flaky") == 1


def test_retry_appends_logs(tmp_path: Path) -> None:
    log = tmp_path / "log"
    flag = tmp_path / "flag"

    def make() -> Step:
        return Step.C(name="retry", log=log, gate=flag)

    # First attempt killed: the gate never appears, so we kill the job process.
    with pytest.raises(FailedExperiment) as info:
        with experiment(tmp_path / "ws", "xp1") as xp:
            step = make().submit()
            job = step.__xpm__.job
            wait_until(lambda: count(log, "start", "retry") == 1, what="job start")
            os.kill(json.loads((job.path / "step.pid").read_text())["pid"], signal.SIGKILL)
            xp.wait()
    assert info.value.jobs[0].failure.reason == "killed"
    flag.touch()
    with experiment(tmp_path / "ws", "xp2"):
        make().submit()
    err = (job.path / "step.err").read_text()
    assert err.count("job started") == 2, err
    assert "job done" in err


def test_on_completed_callbacks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "log"
    seen: list[str] = []
    with experiment(tmp_path / "ws", "xp"):
        step = Step.C(name="cb", log=log)
        step.on_completed(lambda: 1 / 0)  # reported, does not stop the scheduler
        step.on_completed(lambda: seen.append("cb"))
        step.submit()
        later = Step.C(name="later", log=log, after=step).submit()
    assert seen == ["cb"]
    assert later.__xpm__.job.state is JobState.DONE
    assert "on_completed callback" in caplog.text


def test_task_wait_and_log_paths(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "xp"):
        step = Step.C(name="w", log=log).submit()
        assert step.wait() is True
        assert step.__xpm__.job.state is JobState.DONE
        assert step.stdout() == step.jobpath / "step.out"
        assert "job done" in step.stderr().read_text()


def test_exception_in_block_drops_unstarted_jobs(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    with pytest.raises(KeyError):
        with experiment(tmp_path / "ws", "xp"):
            first = Step.C(name="first", log=log, gate=gate).submit()
            second = Step.C(name="second", log=log, after=first).submit()
            wait_until(lambda: count(log, "start", "first") == 1, what="the first job to run")
            raise KeyError("user error")
    assert second.__xpm__.job.state is JobState.ERROR
    assert second.__xpm__.job.failure.reason == "cancelled"
    # The running job is left to finish: it is still running, and ends well once its gate opens.
    assert first.__xpm__.job.state is JobState.RUNNING
    assert count(log, "end", "first") == 0
    gate.touch()
    assert first.__xpm__.job.wait(timeout=30) is True
    assert first.__xpm__.job.state is JobState.DONE
    assert count(log, "end", "first") == 1
    assert (first.jobpath / "step.done").exists()
    assert count(log, "start", "second") == 0


def test_submit_outside_experiment_is_explained() -> None:
    with pytest.raises(RuntimeError, match="with experiment"):
        Step.C(name="x", log=Path("/nonexistent")).submit()


def test_dry_run_experiment_writes_nothing(tmp_path: Path) -> None:
    with experiment(tmp_path / "ws", "xp", run_mode=RunMode.DRY_RUN):
        step = Step.C(name="dry", log=tmp_path / "log").submit()
    assert step.jobpath == tmp_path / "ws" / "jobs" / "xpm_tasks.step" / step.__xpm__.identifier.hex()
    assert not (tmp_path / "ws").exists()


def test_generate_only_writes_params(tmp_path: Path) -> None:
    with experiment(tmp_path / "ws", "xp", run_mode=RunMode.GENERATE_ONLY):
        step = Step.C(name="gen", log=tmp_path / "log").submit()
    assert (step.jobpath / "params.json").exists()
    assert not (tmp_path / "log").exists()


def test_failed_experiment_exit_code(tmp_path: Path) -> None:
    code, out = run_controller(
        f"""
        from pathlib import Path
        from experimaestro import experiment
        from xpm_tasks import Step
        with experiment({str(tmp_path / "ws")!r}, "xp"):
            Step.C(name="bad", log=Path({str(tmp_path / "log")!r}), fail=True).submit()
        """,
        tmp_path,
    )
    assert code != 0
    assert "FailedExperiment" in out and "1 job(s) failed" in out


def test_submit_error_leaves_no_ghost_job(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "xp"):
        with pytest.raises(TypeError, match="unsupported dependency"):
            Step.C(name="ghost", log=log).add_dependencies("not a task").submit()
        again = Step.C(name="ghost", log=log).submit()
    assert again.__xpm__.job.state is JobState.DONE


def test_value_that_params_json_cannot_hold_fails_at_submit(tmp_path: Path) -> None:
    import datetime

    from xpm_tasks import Anything

    with experiment(tmp_path / "ws", "xp"):
        with pytest.raises(Exception, match="params.json"):
            Anything.C(value=datetime.date(2026, 1, 1)).submit()


def test_resubmitted_failed_dependency_is_waited_for(tmp_path: Path) -> None:
    """A dependent failed by a failed dependency, submitted again with it, waits for it again
    (and for its other dependency), however the first attempt went."""
    log, gate = tmp_path / "log", tmp_path / "gate"
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "xp1"):
            bad = Step.C(name="a", log=log, fail=True).submit()
            other = Step.C(name="b", log=log, gate=gate).submit()
            join = Step.C(name="join", log=log, after=bad)
            join.add_dependencies(other)
            join.submit()
            bad.__xpm__.job.wait(timeout=30)
            gate.touch()
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "xp2"):
            again = Step.C(name="a", log=log, fail=True).submit()
            join = Step.C(name="join", log=log, after=again)
            join.add_dependencies(Step.C(name="b", log=log, gate=gate).submit())
            join.submit()
    assert count(log, "start", "join") == 0
    assert join.__xpm__.job.failure.reason == "dependency"


def test_aborted_experiment_keeps_jobs_another_experiment_needs(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    with experiment(tmp_path / "ws", "outer"):
        first = Step.C(name="a", log=log, gate=gate).submit()
        after = Step.C(name="b", log=log, after=first).submit()
        with pytest.raises(KeyError):
            with experiment(tmp_path / "ws", "inner"):
                Step.C(name="a", log=log, gate=gate).submit()
                raise KeyError("inner fails")
        gate.touch()
    assert after.__xpm__.job.state is JobState.DONE


def test_script_without_main_guard_is_refused_in_the_job(tmp_path: Path) -> None:
    """Classes defined in the experiment script itself work (the job process loads the script
    under another name); a script that would start its experiment again there is stopped."""
    good = f"""
from pathlib import Path
from experimaestro import Param, Task, experiment

class Hello(Task):
    who: Param[str]

    def execute(self):
        Path("hello.txt").write_text("hello " + self.who)

if __name__ == "__main__":
    with experiment({str(tmp_path / "ws")!r}, "main") as xp:
        Hello.C(who="world").submit()
"""
    code, out = run_controller(good, tmp_path, name="good.py")
    assert code == 0, out
    (hello,) = (tmp_path / "ws" / "jobs").glob("__main__.hello/*/hello.txt")
    assert hello.read_text() == "hello world"

    unguarded = good.replace('if __name__ == "__main__":\n    with', 'if True:\n    with').replace(
        '"world"', '"again"'
    )
    code, out = run_controller(unguarded, tmp_path, name="unguarded.py")
    assert code != 0
    (err,) = [p for p in (tmp_path / "ws" / "jobs").glob("__main__.hello/*/hello.err")
              if not (p.parent / "hello.done").exists()]
    assert 'if __name__ == "__main__":' in err.read_text()


def test_path_generator_gives_a_path_in_the_job_folder(tmp_path: Path) -> None:
    from xpm_tasks import Saver

    saver = Saver.C(value=3)
    with pytest.raises(RuntimeError, match="known once the task is submitted"):
        os.fspath(saver.model)
    with experiment(tmp_path / "ws", "xp"):
        saver.submit()
        assert saver.model == saver.jobpath / "model" / "weights.txt"
    assert saver.model.read_text() == "3"
    assert saver.__xpm__.identifier == Saver.C(value=3).__xpm__.identifier


def test_forked_jobs_are_independent_processes(tmp_path: Path) -> None:
    from xpm_tasks import Forked

    with experiment(tmp_path / "ws", "xp"):
        jobs = [Forked.C(name=str(i)).submit() for i in range(3)]
    reports = [(job.jobpath / "report.txt").read_text().split() for job in jobs]
    assert len({r[0] for r in reports}) == 3  # random is reseeded in each job
    assert all(r[1:] == ["0", "True"] for r in reports)  # subprocesses work; own session
    # Non-daemon threads are joined before the job process exits (after its marker is written).
    threads = [job.jobpath / "thread.txt" for job in jobs]
    wait_until(lambda: all(path.exists() for path in threads), what="the jobs' threads")


def test_jobs_survive_the_fork_server(tmp_path: Path) -> None:
    """If the fork server dies, the jobs it started go on and are still followed."""
    from xpm_tasks import Forked

    from experimaestro.launchers import forkserver

    gate = tmp_path / "gate"
    with experiment(tmp_path / "ws", "xp"):
        job = Forked.C(name="survivor", gate=gate).submit().__xpm__.job
        wait_until(lambda: job.state is JobState.RUNNING, what="the job to start")
        pid = json.loads(job.files.pidfile.read_text())["pid"]
        (server,) = [s for s in forkserver.servers.running() if pid in s.jobs]
        server.process.popen.kill()
        wait_until(lambda: not server.alive, what="the fork server to die")
        gate.touch()
    assert job.state is JobState.DONE


def test_chain_longer_than_270_limit(tmp_path: Path) -> None:
    """A chain of 320 dependent tasks (experimaestro 2.7.0 fails beyond about 300) runs end to end,
    each after the previous one, and its last task reads the whole chain back."""
    n = 320
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "chain"):
        step = None
        for i in range(n):
            step = Step.C(name=f"c{i}", log=log, after=step).submit()
        reader = ChainReader.C(last=step).submit()
    assert reader.__xpm__.job.state is JobState.DONE
    times = {(event, name): stamp for event, name, stamp, _ in executions(log)}
    assert len(times) == 2 * n
    for i in range(1, n):
        assert times[("start", f"c{i}")] >= times[("end", f"c{i - 1}")]
    names = (reader.jobpath / "chain.txt").read_text().split()
    assert names == [f"c{i}:c{i}" for i in reversed(range(n))]


def test_watchdog_stopped_emitter_noise_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    """Unwatching a finished job's folder races with watchdog's reader thread, which then logs an
    error line on the user's terminal; that line (and only that one) is dropped."""
    import logging

    import experimaestro.scheduler.watcher  # noqa: F401  (installs the filter)

    inotify_logger = logging.getLogger("watchdog.observers.inotify")
    with caplog.at_level(logging.ERROR, logger="watchdog.observers.inotify"):
        inotify_logger.error("InotifyEmitter.queue_events() called when the thread is inactive")
        inotify_logger.error("a real inotify error")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["a real inotify error"]
