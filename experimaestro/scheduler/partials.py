"""Partial folders as tokens: a job holds a one-unit token per partial folder of its task
(core/partial.py) while it runs, so the scheduler starts no two jobs that share a partial folder,
whatever the experiment (tokens live in the workspace, docs/running.md). The job process also locks
the folder itself (runner.py), for jobs started some other way."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..core.config import task_partial_paths
from .tokens import CounterToken, TokenDependency

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def partial_tokens(task: Any, job_path: Path) -> list[TokenDependency]:
    """One unit of the token ``partial-<name>-<partial identifier>`` per partial of ``task``."""
    return [
        CounterToken(_UNSAFE.sub("_", f"partial-{folder.parent.name}-{folder.name}"), 1).dependency(1)
        for folder in task_partial_paths(task, job_path)
    ]
