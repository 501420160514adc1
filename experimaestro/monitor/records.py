"""What the monitor knows of one job, read from its folder alone (no user code is imported).

A :class:`JobRecord` is built from the job directory protocol (docs/architecture.md, section 3):
the state from the markers and the pid record, times from the pid record and the markers' mtimes,
tags and upstream jobs from ``params.json`` read as a plain document, progress from
``<name>.progress``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..launchers.jobfiles import STATE_NAMES, FailureRecord, JobFiles, JobState
from ..notifications import read_progress

#: Every state the page shows, in display order.
STATES = ("running", "ready", "waiting", "unscheduled", "failed", "done")


@dataclass
class ParamsInfo:
    """What ``params.json`` says that the list needs: tags and upstream jobs."""

    mtime: float
    tags: dict[str, Any]
    #: ``type id/identifier`` of each task this one refers to (its dependencies).
    dependencies: list[str]


def read_params_info(path: Path) -> Optional[ParamsInfo]:
    """Tags and upstream jobs of a params.json; None when it is missing or unreadable.

    Read as plain JSON (the two fields needed), not through the full document model: the monitor
    reads thousands of these when it scans a workspace.
    """
    try:
        mtime = path.stat().st_mtime
        data = json.loads(path.read_bytes())
        objects = data["objects"]
        tags = data.get("tags") or {}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(objects, list) or not isinstance(tags, dict):
        return None
    dependencies = []
    for record in objects:
        job = record.get("job") if isinstance(record, dict) else None
        if isinstance(job, str):
            parts = Path(job).parts
            if len(parts) >= 3 and parts[-3] == "jobs":
                dependencies.append(f"{parts[-2]}/{parts[-1]}")
    tags = {k: v for k, v in sorted(tags.items()) if isinstance(v, (str, int, float, bool))}
    return ParamsInfo(mtime=mtime, tags=tags, dependencies=dependencies)


def _mtime(path: Path) -> Optional[float]:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def read_pid_document(path: Path) -> dict[str, Any]:
    """The pid record as a plain document (any launcher's: ``local`` with a pid, ``slurm`` with a
    ``jobid``...); empty when there is none."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class JobRecord:
    """One job as the page shows it."""

    typeid: str
    identifier: str
    path: Path
    state: str = "unscheduled"
    failure: Optional[dict[str, Any]] = None
    tags: dict[str, Any] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)
    progress: Optional[list[dict[str, Any]]] = None
    submitted: Optional[float] = None
    started: Optional[float] = None
    ended: Optional[float] = None
    launcher: str = ""
    host: str = ""
    slurm_jobid: Optional[str] = None
    #: Bumped whenever a shown value changes (the page ignores stale updates).
    version: int = 0

    @property
    def key(self) -> str:
        """``type id/identifier``: the job's name in the monitor's URLs."""
        return f"{self.typeid}/{self.identifier}"

    @property
    def files(self) -> JobFiles:
        return JobFiles.of_directory(self.path)

    def shown(self) -> tuple[Any, ...]:
        """The values the page shows (to tell whether a refresh changed anything)."""
        return (
            self.state, self.failure, self.tags, self.dependencies, self.progress, self.submitted,
            self.started, self.ended, self.launcher, self.host, self.slurm_jobid,
        )

    def refresh(self, params: Optional[ParamsInfo], controller: Optional[dict[str, Any]] = None) -> None:
        """Read the folder again (``params``: the cached params info, re-read by the caller when its
        mtime changed; ``controller``: what a controller says of the job, see ``ControllerState``).

        One listing of the folder says which files exist; only those are read (the monitor scans
        thousands of folders, so plain strings and few system calls).
        """
        controller_state = controller.get("state") if controller else None
        folder = str(self.path)
        name = self.typeid.rsplit(".", 1)[-1]
        try:
            present = set(os.listdir(folder))
        except OSError:  # not created yet (a controller's job not launched), or removed
            present = set()

        def file(ext: str) -> Optional[str]:
            return os.path.join(folder, name + ext) if name + ext in present else None

        done, failed, pidfile = file(".done"), file(".failed"), file(".pid")
        pid = read_pid_document(Path(pidfile)) if pidfile else {}
        if done:
            disk = JobState.DONE
        elif failed:
            disk = JobState.ERROR
        else:
            files = self.files
            record = files.read_pid() if pidfile else None
            # As ``jobs list``: a job of a cluster or of another host (run over SSH) without a
            # marker runs as far as the files tell.
            disk = (
                JobState.RUNNING
                if record is not None and files.record_runs(record)
                else JobState.UNSCHEDULED
            )
        state = STATE_NAMES[disk]
        if state == "unscheduled" and controller_state in ("waiting", "ready", "running"):
            state = controller_state
        self.state = state
        self.failure = None
        if failed and not done:
            try:
                with open(failed) as marker:
                    record_failure = FailureRecord.parse(marker.read())
                self.failure = {"code": record_failure.code, "reason": record_failure.reason,
                                "message": record_failure.message}
            except OSError:
                self.failure = {"code": 1, "reason": "failed", "message": ""}
        if params is None and controller:
            self.tags = controller.get("tags") or self.tags
            self.dependencies = controller.get("dependencies") or self.dependencies
        if params is not None:
            self.tags = params.tags
            self.dependencies = params.dependencies
            self.submitted = params.mtime
        self.launcher = str(pid.get("type", "")) if pid else ""
        self.host = str(pid.get("host", "")) if pid else ""
        jobid = pid.get("jobid")
        self.slurm_jobid = str(jobid) if jobid is not None else None
        started = pid.get("started")
        self.started = float(started) if isinstance(started, (int, float)) and started else None
        marker = done or failed
        self.ended = _mtime(Path(marker)) if marker else None
        progress = file(".progress")
        self.progress = read_progress(Path(progress)) if progress else None

    def summary(self) -> dict[str, Any]:
        """The row of the job list (and of a live update)."""
        top = self.progress[0] if self.progress else None
        return {
            "key": self.key,
            "typeid": self.typeid,
            "identifier": self.identifier,
            "state": self.state,
            "reason": self.failure["reason"] if self.failure else None,
            "tags": self.tags,
            "progress": top["value"] if top else None,
            "progress_desc": top["desc"] if top else None,
            "submitted": self.submitted,
            "started": self.started,
            "ended": self.ended,
            "launcher": self.launcher,
            "host": self.host,
            "slurm_jobid": self.slurm_jobid,
            "version": self.version,
        }


__all__ = ["STATES", "STATE_NAMES", "JobRecord", "ParamsInfo", "read_params_info", "read_pid_document"]
