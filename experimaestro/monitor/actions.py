"""What the page may do to a job: stop it (the only action, a POST checked against the token)."""

from __future__ import annotations

import shutil
import subprocess

from ..launchers.jobfiles import JobFiles
from .records import read_pid_document


class ActionError(Exception):
    """An action that cannot be done; the message says why (shown on the page)."""


def kill_job(files: JobFiles) -> str:
    """Stop a running job: SIGTERM to its process (it then ends as failed, reason ``cancelled``),
    or ``scancel`` for a Slurm job. Returns what was done.

    :raises ActionError: when the job does not run, or its process cannot be signalled
    """
    import psutil

    if files.marker_state() is not None:
        raise ActionError("the job has ended already")
    record = files.read_pid()
    if record is not None:  # run over SSH, or by another host: its pid or job id is not ours
        from ..cli.remote_jobs import runs_elsewhere

        elsewhere = runs_elsewhere(files.path, f"{files.path.parent.name}/{files.path.name}", record)
        if elsewhere is not None:
            raise ActionError(elsewhere)
    pid = read_pid_document(files.pidfile)
    if pid.get("type") == "slurm" and pid.get("jobid") is not None:
        scancel = shutil.which("scancel")
        if scancel is None:
            raise ActionError(f"scancel is not on this machine: run `scancel {pid['jobid']}` on the cluster")
        result = subprocess.run(
            [scancel, str(pid["jobid"])], capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0:
            raise ActionError(f"scancel {pid['jobid']} failed: {result.stderr.strip()}")
        return f"cancelled Slurm job {pid['jobid']}"
    if record is None:
        raise ActionError("the job has no process yet (not started, or starting): try again")
    try:
        # Bound to this very process: psutil refuses to signal a pid reused since.
        process = psutil.Process(record.pid)
        if files.marker_state() is not None or not files.process_alive(record):
            raise ActionError("the job is not running")
        process.terminate()
    except psutil.NoSuchProcess:
        raise ActionError("the job ended meanwhile") from None
    except psutil.AccessDenied:
        raise ActionError(f"not allowed to signal process {record.pid}") from None
    return f"sent SIGTERM to process {record.pid}"


__all__ = ["ActionError", "kill_job"]
