"""The web monitor: a page that shows a workspace's experiments and jobs, live.

Two ways to open it:

* ``experiment(workdir, name, port=N)`` serves it from a thread of the controller while the
  experiment runs (:func:`serve_experiment`, which ``run-experiment --port`` also calls);
* ``experimaestro monitor --workdir W [--port N] [--host H]`` serves a whole workspace from its job
  folders alone (:func:`serve_workspace`).

Everything shown is read from the job folders (docs/architecture.md, section 3), so jobs of any
controller, run locally, over SSH or on Slurm, are shown alike. See docs/monitor.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from ..scheduler.workspace import Workspace
from .server import DEFAULT_PORT, MonitorError, MonitorServer


def serve_workspace(
    workdir: Union[str, Path],
    *,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    token: Optional[str] = None,
) -> MonitorServer:
    """Start serving the monitor of a workspace (in a daemon thread) and return it.

    :raises MonitorError: when the port is taken or the host cannot be bound
    """
    return MonitorServer(Workspace(workdir), host=host, port=port, token=token).start()


def serve_experiment(
    xp: Any, port: int, host: str = "127.0.0.1", token: Optional[str] = None
) -> MonitorServer:
    """Start serving the monitor for a running experiment (its page opens on that experiment).

    The states the controller knows and the folders do not (waiting, ready) are shown too. The
    caller stops it with ``.stop()``; ``experiment(..., port=N)`` does both by itself.

    :raises MonitorError: when the port is taken or the host cannot be bound
    """
    from ..launchers.jobfiles import JobState

    names = {
        JobState.WAITING: "waiting",
        JobState.READY: "ready",
        JobState.RUNNING: "running",
    }

    def controller_state(key: str) -> Optional[dict[str, Any]]:
        job = xp._jobs.get(key.rpartition("/")[2])
        if job is None:
            return None
        tags = {k: v for k, v in sorted(job.tags().items()) if isinstance(v, (str, int, float, bool))}
        dependencies = [f"{d.typeid}/{d.identifier}" for d in job.dependencies]
        return {"state": names.get(job.state), "tags": tags, "dependencies": dependencies}

    return MonitorServer(
        xp.workspace, host=host, port=port, token=token, experiment=xp.name,
        controller_state=controller_state,
    ).start()


__all__ = ["DEFAULT_PORT", "MonitorError", "MonitorServer", "serve_experiment", "serve_workspace"]
