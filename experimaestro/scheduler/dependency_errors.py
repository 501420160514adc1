"""Why a task cannot depend on another one: the message ``Scheduler.submit`` raises.

A dependency must be a task that this experiment runs (or reuses). The message says which
configuration is at fault, where the dependent uses it (its parameter path, or
``add_dependencies``), and how to fix it.
"""

from __future__ import annotations

from typing import Any, Optional

from ..core.config import Config, RunMode, Task
from ..core.graphpath import search_path
from ..launchers.jobfiles import JobState
from .job import Job


def _used_at(task: Task, dep: Config) -> str:
    """Where ``task`` uses ``dep``: ``Learn.data holds``, ``Learn.out is an output of``, or
    ``Learn.add_dependencies() was given``."""
    path = search_path(task, lambda v: v is dep)
    if path is not None:
        return f"{path} holds"
    path = search_path(task, lambda v: isinstance(v, Config) and v.__xpm__.task is dep)
    if path is not None:
        return f"{path} is an output of"
    return f"{type(task).__qualname__}.add_dependencies() was given"


def dependency_problem(task: Task, dep: Config, run_mode: RunMode) -> Optional[str]:
    """Why ``task`` (submitted with ``run_mode``) cannot depend on ``dep``, or None when it can."""
    job: Any = dep.__xpm__.job
    name, dep_name = type(task).__qualname__, type(dep).__qualname__
    if job is None:
        if not isinstance(dep, Task):
            return (
                f"{type(task).__qualname__}.add_dependencies() was given {dep_name}, a "
                f"configuration that no task produces: give tasks, task outputs or "
                f"token.dependency(n)"
            )
        return (
            f"{_used_at(task, dep)} the task {dep_name}, which was never submitted, so it would "
            f"never run. Fix: call submit() on {dep_name} before {name}.submit()"
        )
    if not isinstance(job, Job) or not job.experiments:
        return (
            f"{_used_at(task, dep)} the task {dep_name}, which was submitted in dry run "
            f"(RunMode.DRY_RUN): a dry run runs nothing, so {name} would wait for ever. Fix: "
            f"submit {dep_name} without the dry run, or {name} in dry run too"
        )
    if (
        run_mode is not RunMode.GENERATE_ONLY
        and job.state is JobState.UNSCHEDULED
        and job.finished
    ):
        return (
            f"{_used_at(task, dep)} the task {dep_name}, which was submitted with "
            f"RunMode.GENERATE_ONLY: its folder is written but it does not run, so {name} would "
            f"wait for ever. Fix: submit {dep_name} without run_mode (a done job is reused), or "
            f"{name} with RunMode.GENERATE_ONLY too"
        )
    return None
