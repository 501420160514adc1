"""The scheduler's side of ``Task.submit()``: registered with the core at import time.

Kept light (no heavy imports) because every ``import experimaestro`` loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from ..core.config import RunMode, Task, resolve_generated_paths, set_submitter


def prepare_job(job: Any, workspace_env: Mapping[str, str]) -> None:
    """Give a new job its environment (the experiment's variables, then the launcher's on top)
    and apply the submit hooks of its task's classes (which may change both the environment and
    the launcher), before anything is written."""
    from ..core.hooks import submit_hooks

    environ = dict(workspace_env)
    environ.update(getattr(job.launcher, "environ", None) or {})
    job.environ = environ
    for hook in submit_hooks(job.task):
        hook.process(job, job.launcher)


def submit_task(
    task: Task, *, launcher: Any = None, run_mode: Optional[RunMode] = None, workspace: Any = None
) -> Any:
    """Turn a sealed task into a job: scheduled in the current experiment, or computed only."""
    from .experiment import current_experiment
    from .job import Job

    xp = current_experiment()
    if run_mode is None:
        run_mode = xp.run_mode if xp is not None else RunMode.NORMAL
    if workspace is None and xp is not None:
        workspace = xp.workspace.path
    if run_mode is RunMode.DRY_RUN:
        job = Job(task, Path(workspace) if workspace is not None else None, launcher=launcher)
        prepare_job(job, xp.workspace.env if xp is not None else {})
        if job.workspace is not None:
            resolve_generated_paths(task, job.path)
        return job
    if xp is None:
        raise RuntimeError(
            f"{type(task).__qualname__}.submit() needs a running experiment: submit inside "
            f"`with experiment(workdir, name) as xp:` (or pass run_mode=RunMode.DRY_RUN)"
        )
    return xp.submit(task, launcher=launcher, run_mode=run_mode)


set_submitter(submit_task)
