"""The Slurm launcher against a real Slurm (slurm-test/): arrays, dependencies without the
controller, tokens, failures told apart, bad input, the CLI, and watching without file events.

Crash, re-attach and racing controllers are in test_slurm_crash.py; the time limit in
test_slurm_timeout.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import wait_until
from xpm_tasks import Step, count, executions

from experimaestro import FailedExperiment, experiment
from experimaestro.launchers.direct import DirectLauncher
from experimaestro.launchers.jobfiles import JobState
from experimaestro.launchers.slurm import SlurmLauncherError, SlurmOptions


def _jobid(job) -> str:  # type: ignore[no-untyped-def]
    return json.loads(job.files.pidfile.read_text())["jobid"]


def test_jobs_ready_together_go_as_one_array(tmp_path: Path, slurm_launcher) -> None:
    """Six jobs that become ready together (their local dependency ends): one sbatch, six array
    tasks, each in its own job folder with its own record."""
    launcher = slurm_launcher()
    log, gate = tmp_path / "log", tmp_path / "gate"
    sbatch = launcher.cluster.commands.counts["sbatch"]
    with experiment(tmp_path / "ws", "array") as xp:
        first = Step.C(name="gate", log=log, gate=gate).submit(launcher=DirectLauncher())
        steps = [Step.C(name=f"s{i}", log=log, after=first).submit(launcher=launcher)
                 for i in range(6)]
        gate.touch()
    assert launcher.cluster.commands.counts["sbatch"] - sbatch == 1
    ids = [_jobid(s.__xpm__.job) for s in steps]
    assert len({i.split("_")[0] for i in ids}) == 1
    assert sorted(int(i.split("_")[1]) for i in ids) == list(range(6))
    for i, step in enumerate(steps):
        job = step.__xpm__.job
        assert job.state is JobState.DONE
        assert (job.path / "output.txt").read_text() == f"s{i}"
        assert (job.path / "step.sh").exists()
    assert all(count(log, "end", f"s{i}") == 1 for i in range(6))
    assert xp.workspace.path.joinpath(".experimaestro", "slurm").is_dir()


def test_arrays_are_split_at_the_array_size(tmp_path: Path, plain_slurm_launcher) -> None:
    launcher = plain_slurm_launcher(max_array_size=4)
    assert launcher.cluster.max_array_size() == int(launcher.cluster.config()["MaxArraySize"]) - 1
    log, gate = tmp_path / "log", tmp_path / "gate"
    sbatch = launcher.cluster.commands.counts["sbatch"]
    with experiment(tmp_path / "ws", "split"):
        first = Step.C(name="gate", log=log, gate=gate).submit(launcher=DirectLauncher())
        steps = [Step.C(name=f"s{i}", log=log, after=first).submit(launcher=launcher)
                 for i in range(10)]
        gate.touch()
    assert launcher.cluster.commands.counts["sbatch"] - sbatch == 3  # 4 + 4 + 2
    arrays = {_jobid(s.__xpm__.job).split("_")[0] for s in steps}
    assert len(arrays) == 3


def test_dependents_are_queued_at_once_with_afterok(tmp_path: Path, slurm_launcher) -> None:
    """A chain is submitted while its head still runs: each link waits in Slurm's queue."""
    launcher = slurm_launcher()
    log, gate = tmp_path / "log", tmp_path / "gate"
    with experiment(tmp_path / "ws", "chain"):
        a = Step.C(name="a", log=log, gate=gate).submit(launcher=launcher)
        b = Step.C(name="b", log=log, after=a).submit(launcher=launcher)
        c = Step.C(name="c", log=log, after=b).submit(launcher=launcher)
        jobs = [x.__xpm__.job for x in (a, b, c)]
        wait_until(lambda: all(j.files.pidfile.exists() for j in jobs), what="all submitted")
        assert count(log, "start", "a") <= 1 and count(log, "end", "a") == 0
        squeue = launcher.cluster.commands.squeue([_jobid(j) for j in jobs[1:]])
        assert {squeue[_jobid(j)].state for j in jobs[1:]} == {"PENDING"}
        assert squeue[_jobid(jobs[1])].reason == "Dependency"
        gate.touch()
    assert [e[1] for e in executions(log) if e[0] == "end"] == ["a", "b", "c"]


def test_failed_upstream_cancels_its_queued_dependents(tmp_path: Path, slurm_launcher) -> None:
    """None is left PENDING forever: the controller cancels them and says which job failed."""
    launcher = slurm_launcher()
    log, gate = tmp_path / "log", tmp_path / "gate"
    with pytest.raises(FailedExperiment) as info:
        with experiment(tmp_path / "ws", "fail"):
            a = Step.C(name="a", log=log, gate=gate, fail=True).submit(launcher=launcher)
            b = Step.C(name="b", log=log, after=a).submit(launcher=launcher)
            c = Step.C(name="c", log=log, after=b).submit(launcher=launcher)
            jobs = [x.__xpm__.job for x in (a, b, c)]
            wait_until(lambda: all(j.files.pidfile.exists() for j in jobs), what="all submitted")
            gate.touch()
    ja, jb, jc = jobs
    assert ja.failure.reason == "failed"
    assert jb.failure.reason == "dependency" and ja.identifier in jb.failure.message
    assert jc.failure.reason == "dependency" and jb.identifier in jc.failure.message
    assert len(info.value.jobs) == 3
    states = launcher.cluster.commands.squeue([_jobid(j) for j in (jb, jc)])
    for job in (jb, jc):
        assert states[_jobid(job)].state == "CANCELLED"
        assert json.loads(job.files.failed.read_text())["reason"] == "dependency"
    assert count(log, "start", "b") == 0 and count(log, "start", "c") == 0


def test_token_held_from_submission_to_the_end(tmp_path: Path, plain_slurm_launcher) -> None:
    """A token of 1: a job is submitted only once the one holding the token has ended."""
    launcher = plain_slurm_launcher()
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "tokens") as xp:
        token = xp.token("slurm-gpu", 1)
        steps = [Step.C(name=f"t{i}", log=log, duration=0.3) for i in range(3)]
        for step in steps:
            step.add_dependencies(token.dependency(1))
            step.submit(launcher=launcher)
    rows = sorted((t, e, n) for e, n, t, _ in executions(log))
    running = 0
    for _, event, _ in rows:
        running += 1 if event == "start" else -1
        assert running <= 1, rows
    # Each submission came after the previous job's end (its record is written at submission).
    ends = {n: t for e, n, t, _ in executions(log) if e == "end"}
    submitted = {s.name: json.loads(s.__xpm__.job.files.pidfile.read_text())["started"]
                 for s in steps}
    order = sorted(submitted, key=submitted.get)
    for before, after in zip(order, order[1:]):
        assert submitted[after] >= ends[before]


def test_failures_are_told_apart(tmp_path: Path, slurm_launcher) -> None:
    """An exception, a bad setup line (the runner never starts), and a job cancelled by scancel."""
    log, gate = tmp_path / "log", tmp_path / "gate"
    plain = slurm_launcher()
    bad_setup = slurm_launcher(setup=["echo preparing", "module load cuda/12"])
    with pytest.raises(FailedExperiment) as info:
        with experiment(tmp_path / "ws", "failures"):
            Step.C(name="raises", log=log, fail=True).submit(launcher=plain)
            Step.C(name="setup", log=log).submit(launcher=bad_setup)
            cancelled = Step.C(name="cancelled", log=log, gate=gate).submit(launcher=plain)
            job = cancelled.__xpm__.job
            wait_until(lambda: count(log, "start", "cancelled") == 1, what="job running")
            subprocess.run(["scancel", _jobid(job)], check=True)
    by_name = {j.task.name: j for j in info.value.jobs}
    assert by_name["raises"].failure.reason == "failed"
    assert "fails on purpose" in by_name["raises"].failure.message
    failure = by_name["setup"].failure
    assert failure.reason == "failed"
    assert "FAILED" in failure.message and "module" in failure.message, failure.message
    assert count(log, "start", "setup") == 0
    assert by_name["cancelled"].failure.reason == "cancelled"
    summary = json.loads(by_name["setup"].files.failed.read_text())
    assert summary["reason"] == "failed" and "module" in summary["message"]


def test_no_file_events_needed(tmp_path: Path, slurm_launcher, monkeypatch: pytest.MonkeyPatch
                               ) -> None:
    """Markers written by another host are invisible to inotify: the poller decides."""
    monkeypatch.setenv("XPM_FILE_EVENTS", "0")
    monkeypatch.setenv("XPM_SWEEP_INTERVAL", "3600")
    launcher = slurm_launcher()
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "noevents"):
        a = Step.C(name="a", log=log).submit(launcher=launcher)
        b = Step.C(name="b", log=log, after=a).submit(launcher=launcher)
        job = b.__xpm__.job
        assert job.wait(timeout=60)


def test_queries_are_batched_and_counted(tmp_path: Path, slurm_launcher, slurmctld_rpcs) -> None:
    """12 jobs running together: one squeue per poll for all of them, counted in the log, and
    slurmctld's own RPC count agrees (one job query per poll, whatever the number of jobs)."""
    launcher = slurm_launcher()
    commands = launcher.cluster.commands
    log, gate = tmp_path / "log", tmp_path / "gate"
    before = dict(commands.counts)
    polls = launcher.cluster.watcher.polls
    with experiment(tmp_path / "ws", "count") as xp:
        first = Step.C(name="gate0", log=log, gate=gate).submit(launcher=DirectLauncher())
        for i in range(12):
            Step.C(name=f"q{i}", log=log, after=first, duration=0.5).submit(launcher=launcher)
        gate.touch()
    squeue = commands.counts["squeue"] - before.get("squeue", 0)
    polled = launcher.cluster.watcher.polls - polls
    assert squeue == polled and squeue >= 1
    assert slurmctld_rpcs.job_queries() <= polled
    assert slurmctld_rpcs.counts().get("REQUEST_SUBMIT_BATCH_JOB", 0) == 1
    assert commands.counts.get("sacct", 0) - before.get("sacct", 0) <= polled
    assert commands.counts["sbatch"] - before.get("sbatch", 0) == 1
    text = (xp.path / "experiment.log").read_text()
    assert "Slurm commands run" in text and "squeue" in text


def test_unknown_partition_is_an_error_at_submit(tmp_path: Path, plain_slurm_launcher) -> None:
    launcher = plain_slurm_launcher(options=SlurmOptions(partition="nope"))
    with experiment(tmp_path / "ws", "bad"):
        step = Step.C(name="x", log=tmp_path / "log")
        with pytest.raises(SlurmLauncherError, match=r"no partition 'nope'.*partitions: debug"):
            step.submit(launcher=launcher)
    assert not (tmp_path / "ws" / "jobs").exists() or not any((tmp_path / "ws" / "jobs").iterdir())


def test_sbatch_not_on_path_is_an_error_at_submit(tmp_path: Path, plain_slurm_launcher,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = plain_slurm_launcher()
    monkeypatch.setenv("PATH", str(tmp_path))
    with experiment(tmp_path / "ws", "nopath"):
        with pytest.raises(SlurmLauncherError, match="sbatch is not on PATH"):
            Step.C(name="x", log=tmp_path / "log").submit(launcher=launcher)


def test_impossible_request_shows_sbatch_error_and_leaves_no_folder(tmp_path: Path,
                                                                    plain_slurm_launcher) -> None:
    launcher = plain_slurm_launcher(options=SlurmOptions(mem="900G"))
    with pytest.raises(FailedExperiment) as info:
        with experiment(tmp_path / "ws", "impossible"):
            step = Step.C(name="x", log=tmp_path / "log").submit(launcher=launcher)
    job = step.__xpm__.job
    assert job.failure.reason == "launch"
    assert "sbatch: error: Memory specification can not be satisfied" in job.failure.message
    assert "Batch job submission failed" in job.failure.message
    assert not job.path.exists()
    assert info.value.jobs == [job]


def _count_calls_of_this_thread(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The Slurm commands run from this thread from now on (the poller runs in its own)."""
    import threading

    from experimaestro.launchers.slurm.commands import SlurmCommands

    calls: list[list[str]] = []
    me = threading.current_thread()
    run = SlurmCommands.run

    def counted(self, args, **kwargs):  # type: ignore[no-untyped-def]
        if threading.current_thread() is me:
            calls.append(list(args))
        return run(self, args, **kwargs)

    monkeypatch.setattr(SlurmCommands, "run", counted)
    return calls


def test_cli_lists_and_kills_slurm_jobs(tmp_path: Path, slurm_launcher,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from experimaestro.cli import main

    launcher = slurm_launcher()
    log, gate = tmp_path / "log", tmp_path / "gate"
    runner = CliRunner()
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "cli"):
            a = Step.C(name="a", log=log, gate=gate).submit(launcher=launcher)
            b = Step.C(name="b", log=log, after=a).submit(launcher=launcher)
            wait_until(lambda: count(log, "start", "a") == 1, what="a running")
            wait_until(lambda: b.__xpm__.job.files.pidfile.exists(), what="b submitted")
            calls = _count_calls_of_this_thread(monkeypatch)
            result = runner.invoke(main, ["jobs", "list", "--workdir", str(tmp_path / "ws")])
            assert result.exit_code == 0, result.output
            assert [c[0] for c in calls] == ["squeue"]  # one call for both jobs
            rows = {line.split()[4]: line for line in result.output.splitlines()[1:]}
            assert rows[a.__xpm__.job.identifier[:12]].startswith("running (slurm RUNNING)")
            assert rows[b.__xpm__.job.identifier[:12]].startswith("running (slurm PENDING)")
            result = runner.invoke(main, ["jobs", "kill", "--workdir", str(tmp_path / "ws"),
                                          a.__xpm__.job.identifier[:12]])
            assert result.exit_code == 0, result.output
            assert "scancel" in result.output
    assert a.__xpm__.job.failure.reason == "cancelled"
    assert b.__xpm__.job.failure.reason == "dependency"


def test_interval_backs_off_and_resets(tmp_path: Path, slurm_launcher) -> None:
    """While nothing changes the poller waits longer and longer; a change brings it back."""
    launcher = slurm_launcher(poll_interval=0.05, max_poll_interval=0.4)
    watcher = launcher.cluster.watcher
    log, gate = tmp_path / "log", tmp_path / "gate"
    with experiment(tmp_path / "ws", "backoff"):
        step = Step.C(name="w", log=log, gate=gate).submit(launcher=launcher)
        wait_until(lambda: count(log, "start", "w") == 1, what="running")
        wait_until(lambda: watcher.interval == 0.4, what="the interval at its maximum")
        polls = watcher.polls
        gate.touch()
        assert step.__xpm__.job.wait(timeout=60)
    assert watcher.polls > polls and watcher.interval == 0.05


def test_sbatch_transient_errors_are_retried(tmp_path: Path, plain_slurm_launcher, fake_slurm
                                             ) -> None:
    launcher = plain_slurm_launcher()
    fake_slurm.socket_timeout("sbatch", times=2)
    with experiment(tmp_path / "ws", "transient"):
        step = Step.C(name="x", log=tmp_path / "log").submit(launcher=launcher)
    assert step.__xpm__.job.state is JobState.DONE
    assert [c["fault"] is not None for c in fake_slurm.calls("sbatch")] == [True, True, False]


def test_any_sbatch_error_is_shown_in_full(tmp_path: Path, plain_slurm_launcher, fake_slurm
                                           ) -> None:
    launcher = plain_slurm_launcher()
    message = ("sbatch: error: QOSMaxSubmitJobPerUserLimit\n"
               "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
               "(job submit limit, user's size and/or time limits)\n")
    fake_slurm.fail("sbatch", message)
    with pytest.raises(FailedExperiment) as info:
        with experiment(tmp_path / "ws", "sbatch-error"):
            step = Step.C(name="x", log=tmp_path / "log").submit(launcher=launcher)
    job = step.__xpm__.job
    assert message.strip() in job.failure.message
    assert not job.path.exists()
    assert "QOSMaxSubmitJobPerUserLimit" in str(info.value.jobs[0].failure.message)


def test_jobs_that_left_squeue_are_read_from_sacct_or_markers(tmp_path: Path, slurm_launcher,
                                                               fake_slurm, slurm_env) -> None:
    """squeue forgets ended jobs after MinJobAge (300 s on most sites); a squeue that shows
    nothing stands for it: with accounting sacct answers, without it the markers do. (The fake
    hides running jobs too, which a real squeue never does: lost_after is long enough for them.)"""
    launcher = slurm_launcher(lost_after=300.0)
    fake_slurm.fail("squeue", stderr="", code=0, times=10000)
    sacct = launcher.cluster.commands.counts["sacct"]
    log = tmp_path / "log"
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "forgotten"):
            ok = Step.C(name="ok", log=log).submit(launcher=launcher)
            bad = Step.C(name="bad", log=log, fail=True).submit(launcher=launcher)
    assert ok.__xpm__.job.state is JobState.DONE
    assert bad.__xpm__.job.failure.reason == "failed"
    assert "fails on purpose" in bad.__xpm__.job.failure.message
    asked = launcher.cluster.commands.counts["sacct"] - sacct
    if slurm_env.accounting:
        assert asked >= 1 and launcher.cluster.watcher.accounting is True
    else:
        assert launcher.cluster.watcher.accounting is False


def test_sbatch_answer_lost_but_job_queued_is_not_submitted_twice(tmp_path: Path,
                                                                  plain_slurm_launcher,
                                                                  fake_slurm) -> None:
    """sbatch timed out, yet slurmctld queued the job: found by its tag, never submitted again."""
    launcher = plain_slurm_launcher()
    fake_slurm.socket_timeout("sbatch", after_real=True)
    with experiment(tmp_path / "ws", "lost-answer"):
        step = Step.C(name="x", log=tmp_path / "log").submit(launcher=launcher)
    job = step.__xpm__.job
    assert job.state is JobState.DONE
    assert len(fake_slurm.calls("sbatch")) == 1
    assert count(tmp_path / "log", "start", "x") == 1
    assert job.stderr.read_text().count("batch script of slurm job") == 1


def test_marker_seen_late_still_decides(tmp_path: Path, slurm_launcher) -> None:
    """Over NFS a marker written on the node may show here after Slurm says the job ended: the
    poller waits for it (``marker_grace``) instead of concluding that the job left none. Here the
    batch script ends before its runner, and the marker is written after Slurm's end."""
    launcher = slurm_launcher(setup=["exit 0"], marker_grace=30.0)
    with experiment(tmp_path / "ws", "late-marker"):
        step = Step.C(name="late", log=tmp_path / "log").submit(launcher=launcher)
        job = step.__xpm__.job
        wait_until(lambda: job.files.pidfile.exists(), what="submitted")
        key = _jobid(job)
        watcher = launcher.cluster.watcher
        # The poller itself has seen the end (and, finding no marker, keeps asking).
        wait_until(lambda: job.finished or watcher.state(key) == "COMPLETED", timeout=60,
                   what="the poller to see the end")
        assert not job.finished
        job.files.write_done()
    assert job.state is JobState.DONE
