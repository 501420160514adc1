"""``on_completed`` callbacks: each runs exactly once when the job succeeds, whether it was
registered before or after ``submit()``, and at once when the job is done already."""

from __future__ import annotations

from pathlib import Path

from xpm_tasks import Step

from conftest import wait_until
from experimaestro import JobState, experiment


def test_callbacks_before_and_after_submit_run_once(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    seen: list[str] = []
    with experiment(tmp_path / "ws", "xp"):
        step = Step.C(name="s", log=log, gate=gate)
        step.on_completed(lambda: seen.append("before"))
        step.submit()
        step.on_completed(lambda: seen.append("after"))
        assert seen == []  # the job is gated: nothing has run yet
        gate.touch()
    assert sorted(seen) == ["after", "before"]


def test_callback_registered_once_the_job_is_done_runs_at_once(tmp_path: Path) -> None:
    seen: list[str] = []
    with experiment(tmp_path / "ws", "xp"):
        step = Step.C(name="s", log=tmp_path / "log").submit()
        assert step.wait()
        step.on_completed(lambda: seen.append("late"))
        assert seen == ["late"]
    assert seen == ["late"]


def test_callbacks_of_a_job_shared_by_two_submissions(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    seen: list[str] = []
    with experiment(tmp_path / "ws", "xp"):
        first = Step.C(name="s", log=log, gate=gate)
        second = Step.C(name="s", log=log, gate=gate)
        first.on_completed(lambda: seen.append("first-before"))
        first.submit()
        second.on_completed(lambda: seen.append("second-before"))
        second.submit()
        assert first.__xpm__.job is second.__xpm__.job
        first.on_completed(lambda: seen.append("first-after"))
        second.on_completed(lambda: seen.append("second-after"))
        gate.touch()
    assert sorted(seen) == ["first-after", "first-before", "second-after", "second-before"]
    # A done job reused by a new experiment: its callbacks run once there too.
    again: list[str] = []
    with experiment(tmp_path / "ws", "xp2"):
        reused = Step.C(name="s", log=log, gate=gate)
        reused.on_completed(lambda: again.append("before"))
        reused.submit()
        wait_until(lambda: reused.__xpm__.job.state is JobState.DONE, what="the reuse")
        reused.on_completed(lambda: again.append("after"))
    assert sorted(again) == ["after", "before"]
