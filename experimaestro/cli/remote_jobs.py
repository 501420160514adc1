"""``experimaestro jobs sync ID`` and ``jobs log -f ID`` for a job that ran on a remote host.

Such a job's local folder holds ``.remote.json`` (:mod:`experimaestro.connectors.remote_record`):
the host (an ``~/.ssh/config`` alias), the remote job folder, the remote Python and the
``sync_exclude`` patterns. That is all these commands need: no experiment script, no connector
arguments. Every failure is a :class:`click.ClickException` that names the job and the cause: no
record (the job ran here), a damaged record, a host that cannot be reached, a remote folder gone.
"""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import click

from ..connectors.remote_record import RECORD_NAME, RemoteCopy, RemoteRecordError, read_remote_record
from ..connectors.process import PidRecord
from ..launchers.jobfiles import JobFiles

if TYPE_CHECKING:  # pragma: no cover
    from ..connectors.ssh import SshConnector

#: Seconds one ``read_from`` request of ``jobs log -f`` may wait on the host for the log to grow
#: (it returns at once when the log grows or the job ends; then the next request is sent).
FOLLOW_WAIT = 30.0


def remote_copy(jobpath: Path, full_id: str) -> Optional[RemoteCopy]:
    """The job's ``.remote.json``, None for a job that ran on this machine."""
    try:
        return read_remote_record(jobpath)
    except RemoteRecordError as exc:
        raise click.ClickException(f"job {full_id}: {exc}") from None


@contextlib.contextmanager
def connected(record: RemoteCopy, full_id: str) -> Iterator["SshConnector"]:
    """A connector to the record's host; connection and remote failures become ClickExceptions."""
    from ..connectors.agentclient import close_agents
    from ..connectors.ssh import SshConnector
    from ..connectors.sshconnection import ConnectionLost, SshConnectError, close_all
    from ..connectors.streams import RemoteCommandError
    from ..connectors.sync import SyncError

    where = f"job {full_id} ran on {record.host} (in {record.path})"
    try:
        try:
            connector = SshConnector.of_record(record)
        except SshConnectError as exc:
            raise click.ClickException(f"{where}, which cannot be reached: {exc}") from None
        try:
            yield connector
        except (ConnectionLost, SshConnectError, SyncError, RemoteCommandError) as exc:
            raise click.ClickException(f"{where}: {exc}") from None
        except FileNotFoundError as exc:
            raise click.ClickException(f"{where}: {exc}") from None
    finally:
        close_agents()
        close_all()


def sync_job(jobpath: Path, full_id: str, all_files: bool) -> str:
    """Fetch the job's remote folder into ``jobpath`` again (only what changed; the excluded files
    too with ``all_files``); what was done, as a sentence."""
    from ..connectors.sync import pull_job

    record = remote_copy(jobpath, full_id)
    if record is None:
        raise click.ClickException(
            f"job {full_id} ran on this machine (no {RECORD_NAME} in {jobpath}): there is no remote "
            f"copy to sync; `jobs sync` is for jobs run through an SshConnector")
    with connected(record, full_id) as connector:
        stats = pull_job(jobpath, connector, include_excluded=all_files)
    deleted = f", removed {stats.deleted} the remote folder no longer has" if stats.deleted else ""
    return (f"Synced job {full_id} from {record.location()}: {stats.files} file(s) "
            f"({stats.bytes} bytes) fetched{deleted}.")


def is_remote_copy(jobpath: Path, pid: PidRecord) -> bool:
    """Whether ``jobpath`` is the local copy of a job run over SSH, ``pid`` being its record on the
    host (its pid or Slurm job id names nothing of this machine)."""
    return pid.elsewhere and (jobpath / RECORD_NAME).exists()


def runs_elsewhere(jobpath: Path, full_id: str, pid: PidRecord) -> Optional[str]:
    """Why job ``full_id``, recorded by ``pid`` and without a marker, cannot be stopped from this
    machine, and how to stop it where it runs; None when it can be stopped here.

    Its folder here is the copy of a job run over SSH (``.remote.json``: its pid, or its Slurm job,
    is the host's), or its pid names a process of another host: signalling that pid here, or
    cancelling that Slurm job id on this machine's cluster, would hit another process or job.
    """
    if not pid.elsewhere:
        return None  # this host's process, or a job of its cluster
    try:
        record = read_remote_record(jobpath)
    except RemoteRecordError:
        record = None
    if record is None and pid.type != "local":
        return None  # a job of a cluster shared with this machine (submitted from another node)
    if record is None:
        return (f"job {full_id} runs on {pid.host}, not on this machine: stop it there "
                f"(`experimaestro jobs kill {full_id}` in its workspace), or stop its experiment")
    workspace = str(Path(record.path).parents[2])
    command = " ".join(shlex.quote(part) for part in (
        record.python or "python3", "-m", "experimaestro", "jobs", "kill", "--workdir", workspace,
        full_id))
    return (f"job {full_id} runs on {record.host} (in {record.path}), not on this machine: stop it "
            f"there with `ssh {shlex.quote(record.host)} {shlex.quote(command)}`, or stop its experiment")


def follows_remotely(files: JobFiles, full_id: str) -> Optional[RemoteCopy]:
    """The remote copy to follow the log of, for a job that ran remotely and whose local copy
    has no marker yet (a finished, synced job's log is read locally, without a connection)."""
    record = remote_copy(files.path, full_id)
    if record is None or files.marker_state() is not None:
        return None
    return record


def follow_log(files: JobFiles, record: RemoteCopy, full_id: str, stderr: bool) -> None:
    """Print the job's log on the remote host and what is appended to it, until the job ends
    (its marker appears, or its process is gone). Each request waits on the host for the log to
    grow (the agent watches the folder): there is no polling over SSH."""
    remote = JobFiles(Path(record.path), files.name)
    path = remote.stderr if stderr else remote.stdout
    with connected(record, full_id) as connector:
        chunk = connector.read_from(path, 0, job=(remote.path, remote.name))
        if not chunk.exists:
            which = "stderr" if stderr else "stdout"
            raise click.ClickException(f"job {full_id} has no {which} log yet on {record.host} ({path})")
        while True:
            if chunk.data:
                click.echo(chunk.data, nl=False)
            if chunk.ended:
                return
            chunk = connector.read_from(path, chunk.offset, job=(remote.path, remote.name),
                                        wait=FOLLOW_WAIT)
