"""A job whose token files cannot be written (a full disk, a broken token folder) fails at once,
with the cause, and keeps no unit of any token: it never stays READY for ever."""

from __future__ import annotations

from pathlib import Path

import pytest
from xpm_tasks import Step

from experimaestro import CounterToken, FailedExperiment, JobState, experiment
from experimaestro.scheduler.tokens import TokenStore


def test_partly_taken_tokens_are_given_back(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    step = Step.C(name="s", log=tmp_path / "log")
    a, b = CounterToken("a", 1), CounterToken("b", 1)
    step.add_dependencies(a.dependency(1), b.dependency(1))
    # Both stores are open (this process keeps them); then the holders folder of "b" vanishes
    # behind a dangling link: "a" is taken first (sorted names), then writing "b" fails.
    TokenStore.open(ws, a)
    holders_b = TokenStore.open(ws, b).holders_dir
    holders_b.rmdir()
    holders_b.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FailedExperiment):
        with experiment(ws, "xp"):
            job = step.submit().__xpm__.job
    assert job.state is JobState.ERROR and job.failure.reason == "launch", job.failure
    assert "FileNotFoundError" in job.failure.message, job.failure
    assert list((ws / ".experimaestro" / "tokens" / "a" / "holders").iterdir()) == []
