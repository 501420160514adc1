"""``experimaestro jobs ...`` and ``experimaestro experiments ...``: inspect and manage a workspace.

Everything here reads the job directory protocol (docs/architecture.md, section 3) and nothing else:
a job's state comes from its markers and pid file (:meth:`JobFiles.disk_state`), its tags from
``params.json`` read as a plain document (no user class is imported), and the experiments it belongs
to from the ``experiments/<name>/jobs/<type id>/<identifier>`` links. So the commands work without
the experiment's Python environment, and stay fast on workspaces of many thousand jobs.

Registered in ``cli/__init__.py`` with ``main.add_command(jobs)`` and ``main.add_command(experiments)``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import click

from ..connectors.remote_record import RemoteRecordError, read_remote_record
from ..core.serialization import ParamsDocument, ParamsFormatError, parse_document
from ..launchers.jobfiles import STATE_NAMES, FailureRecord, JobFiles, JobState
from ..notifications import read_progress
from .remote_jobs import follow_log, follows_remotely, is_remote_copy, runs_elsewhere, sync_job
from ..scheduler.workspace import Workspace

#: The states a job can have on disk, i.e. without a controller's knowledge.
DISK_STATES = ("done", "failed", "running", "unscheduled")
#: How many identifier characters the table shows (any unique prefix is accepted as a job ID).
SHORT_ID = 12


# --- Reading the workspace -----------------------------------------------------------------------


def document_tags(doc: ParamsDocument) -> dict[str, Any]:
    """The tags of the whole graph stored in a params document (``Config.tags()`` of its root,
    recorded when the document was written)."""
    return dict(sorted(doc.tags.items()))


def read_tags(params: Path) -> dict[str, Any]:
    """The tags recorded in a job's params.json; empty when it is missing or unreadable."""
    try:
        text = params.read_text(encoding="utf-8")
    except OSError:
        return {}
    try:
        return document_tags(parse_document(text, source=str(params)))
    except (ParamsFormatError, IndexError, KeyError, TypeError, ValueError):
        return {}


def experiment_links(workspace: Workspace) -> dict[tuple[str, str], list[str]]:
    """``(type id, identifier) -> [experiment names]``, from the experiments' job links."""
    result: dict[tuple[str, str], list[str]] = {}
    for name in workspace.experiment_names():
        for typeid, identifier, _ in _links_of(workspace, name):
            result.setdefault((typeid, identifier), []).append(name)
    return result


def _links_of(workspace: Workspace, experiment: str) -> Iterator[tuple[str, str, Path]]:
    """``(type id, identifier, link path)`` for each job link of an experiment."""
    root = workspace.experiment(experiment) / "jobs"
    for type_dir in _scandir(root):
        if type_dir.is_dir(follow_symlinks=False):
            for link in _scandir(Path(type_dir.path)):
                yield type_dir.name, link.name, Path(link.path)


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return sorted(entries, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


@dataclass
class JobEntry:
    """One job folder, as read from the workspace."""

    path: Path
    typeid: str
    identifier: str
    state: JobState
    failure: Optional[FailureRecord] = None
    experiments: list[str] = field(default_factory=list)
    tags: Optional[dict[str, Any]] = None
    #: What ``progress()`` last reported (levels), for a running job.
    progress: Optional[list[dict[str, Any]]] = None
    #: What the cluster says of a submitted job without a marker (Slurm state), when asked.
    cluster_state: Optional[str] = None

    @staticmethod
    def read(path: Path, experiments: Sequence[str] = ()) -> "JobEntry":
        """Read a job folder's state (tags are read later, only when needed: :meth:`load_tags`)."""
        files = JobFiles.of_directory(path)
        state = files.disk_state()
        failure = files.read_failure() if state is JobState.ERROR else None
        progress = read_progress(files.progress) if state is JobState.RUNNING else None
        return JobEntry(
            path=path,
            typeid=path.parent.name,
            identifier=path.name,
            state=state,
            failure=failure,
            experiments=list(experiments),
            progress=progress,
        )

    @property
    def files(self) -> JobFiles:
        return JobFiles.of_directory(self.path)

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]

    @property
    def full_id(self) -> str:
        return f"{self.typeid}/{self.identifier}"

    def load_tags(self) -> dict[str, Any]:
        if self.tags is None:
            self.tags = read_tags(self.path / "params.json")
        return self.tags

    def state_label(self) -> str:
        """``failed (cancelled)``: the state, with the failure reason when it says more."""
        if self.cluster_state is not None and self.state is JobState.RUNNING:
            return f"{self.state_name} (slurm {self.cluster_state})"
        if self.failure is not None and self.failure.reason != "failed":
            return f"{self.state_name} ({self.failure.reason})"
        if self.progress:
            top = self.progress[0]
            desc = f" ({top['desc']})" if top.get("desc") else ""
            return f"{self.state_name} {top['value']:.0%}{desc}"
        return self.state_name

    def to_json(self) -> dict[str, Any]:
        failure = None
        if self.failure is not None:
            failure = {
                "code": self.failure.code,
                "reason": self.failure.reason,
                "message": self.failure.message,
            }
        return {
            "typeid": self.typeid,
            "identifier": self.identifier,
            "path": str(self.path),
            "state": self.state_name,
            "failure": failure,
            "tags": self.load_tags(),
            "experiments": self.experiments,
            "remote": self.remote_json(),
            "progress": self.progress,
        }

    def remote_json(self) -> Optional[dict[str, Any]]:
        """Where the job's remote copy lives (its ``.remote.json``), None for a local job."""
        try:
            record = read_remote_record(self.path)
        except RemoteRecordError as exc:
            return {"error": str(exc)}
        if record is None:
            return None
        return {"host": record.host, "path": record.path, "synced_at": record.synced_at}


def job_directories(workspace: Workspace, experiment: Optional[str] = None) -> Iterator[Path]:
    """The job folders of the workspace, or those an experiment links to (that still exist)."""
    if experiment is None:
        yield from workspace.job_directories()
        return
    for typeid, identifier, _ in _links_of(workspace, experiment):
        path = workspace.jobs / typeid / identifier
        if path.is_dir():
            yield path


def iter_jobs(
    workspace: Workspace,
    *,
    experiment: Optional[str] = None,
    states: Iterable[str] = (),
    tags: Optional[dict[str, str]] = None,
) -> Iterator[JobEntry]:
    """The jobs matching the filters; cheap filters first, params.json read only for tag filters."""
    wanted = set(states)
    links = experiment_links(workspace)
    entries = [
        JobEntry.read(path, links.get((path.parent.name, path.name), ()))
        for path in job_directories(workspace, experiment)
    ]
    ask_clusters(entries)
    for entry in entries:
        if wanted and entry.state_name not in wanted:
            continue
        if tags and not _tags_match(entry.load_tags(), tags):
            continue
        yield entry


def ask_clusters(entries: Sequence[JobEntry]) -> None:
    """Refine the state of submitted cluster jobs without a marker: one ``squeue`` per cluster
    for all of them (a job that Slurm says ended, without a marker, is shown failed)."""
    submitted = [e for e in entries if e.state is JobState.RUNNING]
    records = [(e, e.files.read_pid()) for e in submitted]
    # (The local copy of a job run over SSH names a job of the host's cluster: not asked here.)
    slurm = [(e, r) for e, r in records
             if r is not None and r.type == "slurm" and not is_remote_copy(e.path, r)]
    if not slurm:
        return
    from ..launchers.slurm.commands import SlurmCommandError
    from ..launchers.slurm.endings import classify
    from ..launchers.slurm.launcher import states_of

    try:
        infos = states_of([r for _, r in slurm])
    except SlurmCommandError as exc:
        click.echo(f"Cannot ask Slurm for the state of its jobs: {exc}", err=True)
        return
    for entry, record in slurm:
        key = str(record.extra.get("jobid"))
        info = infos.get(key)
        if info is None:
            entry.cluster_state = "unknown"
        elif info.active:
            entry.cluster_state = info.state
        elif entry.files.marker_state() is None:
            ending = classify(key, info, entry.files)
            entry.state = JobState.ERROR
            entry.failure = ending.failure or FailureRecord(1, "failed", f"Slurm: {info.state}")


def _tags_match(tags: dict[str, Any], wanted: dict[str, str]) -> bool:
    """Whether every wanted ``key=value`` is a tag (compared as text: ``n=1`` matches ``1``)."""
    return all(key in tags and _tag_text(tags[key]) == value for key, value in wanted.items())


def _tag_text(value: Any) -> str:
    """A tag value as written on the command line (``true``/``false`` for booleans)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def find_job(workspace: Workspace, job_id: str) -> JobEntry:
    """The job named by ``job_id``: a unique prefix of an identifier, or ``<type id>/<prefix>``.

    :raises click.BadParameter: when no job, or more than one, matches
    """
    typeid, _, prefix = job_id.rpartition("/")
    if not prefix:
        raise click.BadParameter(
            "give a job identifier (or a unique prefix of one)", param_hint="ID"
        )
    matches = [
        path
        for path in workspace.job_directories()
        if path.name.startswith(prefix) and (not typeid or path.parent.name == typeid)
    ]
    if not matches:
        raise click.BadParameter(
            f"no job {job_id!r} in {workspace.path} (see `experimaestro jobs list`)",
            param_hint="ID",
        )
    if len(matches) > 1:
        shown = "\n".join(f"  {p.parent.name}/{p.name}" for p in matches[:20])
        more = f"\n  ... and {len(matches) - 20} more" if len(matches) > 20 else ""
        raise click.BadParameter(
            f"{job_id!r} matches {len(matches)} jobs; give a longer prefix:\n{shown}{more}",
            param_hint="ID",
        )
    path = matches[0]
    return JobEntry.read(path, experiment_links(workspace).get((path.parent.name, path.name), ()))


# --- Output ------------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns separated by two spaces (the last column is not padded)."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def format_tags(tags: dict[str, Any]) -> str:
    return " ".join(f"{key}={_tag_text(value)}" for key, value in tags.items())


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


# --- Options -----------------------------------------------------------------------------------


def _workspace_callback(ctx: click.Context, param: click.Parameter, value: Path) -> Workspace:
    workspace = Workspace(value)
    if not workspace.jobs.is_dir():
        raise click.BadParameter(
            f"{workspace.path} is not an experimaestro workspace (it has no jobs/ folder): "
            f"pass the experiment's workdir with --workdir, or set XPM_WORKDIR",
            ctx=ctx,
            param=param,
        )
    return workspace


def workdir_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--workdir``: the workspace (env ``XPM_WORKDIR``, else the current folder)."""
    return click.option(
        "--workdir",
        "workspace",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="XPM_WORKDIR",
        default=".",
        show_envvar=True,
        callback=_workspace_callback,
        help="The workspace (the folder given to experiment(...)). Default: the current folder.",
    )(command)


def _tags_callback(
    ctx: click.Context, param: click.Parameter, value: Sequence[str]
) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in value:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not of the form key=value", ctx=ctx, param=param)
        tags[key] = text
    return tags


def check_experiment(workspace: Workspace, name: Optional[str]) -> None:
    """Fail with a usage error naming the known experiments when ``name`` is not one of them."""
    if name is None:
        return
    names = workspace.experiment_names()
    if name not in names:
        known = ", ".join(names) or "none"
        raise click.BadParameter(
            f"no experiment {name!r} in {workspace.path} (experiments: {known})",
            param_hint="'--experiment'",
        )


# --- jobs ----------------------------------------------------------------------------------------


@click.group()
def jobs() -> None:
    """List, inspect, kill and clean the jobs of a workspace.

    A job ID is a unique prefix of its identifier (or TYPE_ID/PREFIX), as shown by `jobs list`.
    """


@jobs.command("list")
@workdir_option
@click.option("--experiment", help="Only the jobs of this experiment.")
@click.option(
    "--state",
    "states",
    type=click.Choice(DISK_STATES),
    multiple=True,
    help="Only the jobs in this state (repeat for several).",
)
@click.option(
    "--tags",
    "tags",
    metavar="KEY=VALUE",
    multiple=True,
    callback=_tags_callback,
    help="Only the jobs with this tag value (repeat: all must match).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (for scripts).")
def list_jobs(
    workspace: Workspace,
    experiment: Optional[str],
    states: tuple[str, ...],
    tags: dict[str, str],
    as_json: bool,
) -> None:
    """List the jobs: state, type, identifier, experiments and tags."""
    check_experiment(workspace, experiment)
    entries = list(iter_jobs(workspace, experiment=experiment, states=states, tags=tags))
    if as_json:
        echo_json([entry.to_json() for entry in entries])
        return
    if not entries:
        click.echo(f"No job matches in {workspace.path}.", err=True)
        return
    rows = [
        (
            entry.state_label(),
            entry.typeid,
            entry.identifier[:SHORT_ID],
            ",".join(entry.experiments) or "-",
            format_tags(entry.load_tags()),
        )
        for entry in entries
    ]
    click.echo(format_table(("STATE", "TYPE", "ID", "EXPERIMENTS", "TAGS"), rows))


@jobs.command("path")
@workdir_option
@click.argument("job_id", metavar="ID")
@click.option("--remote", is_flag=True, help="Print HOST:PATH of the job's remote folder instead.")
def job_path(workspace: Workspace, job_id: str, remote: bool) -> None:
    """Print the folder of job ID (its local copy, for a job that ran on a remote host)."""
    entry = find_job(workspace, job_id)
    if not remote:
        click.echo(str(entry.path))
        return
    try:
        record = read_remote_record(entry.path)
    except RemoteRecordError as exc:
        raise click.ClickException(str(exc)) from None
    if record is None:
        raise click.ClickException(f"job {entry.full_id} ran on this machine: it has no remote folder")
    click.echo(record.location())


@jobs.command("log")
@workdir_option
@click.argument("job_id", metavar="ID")
@click.option(
    "--stderr/--stdout",
    "stderr",
    default=True,
    help="Which log to print.  [default: stderr]",
)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing what is appended, until the job ends (or Ctrl-C); for a job running on a "
    "remote host, its log there.",
)
def job_log(workspace: Workspace, job_id: str, stderr: bool, follow: bool) -> None:
    """Print the standard error (or output) of job ID."""
    entry = find_job(workspace, job_id)
    files = entry.files
    record = follows_remotely(files, entry.full_id) if follow else None
    if record is not None:  # running on a remote host: follow its log there
        follow_log(files, record, entry.full_id, stderr)
        return
    path = files.stderr if stderr else files.stdout
    remote = follows_remotely(files, entry.full_id) if not path.exists() else None
    if remote is not None:  # running on a remote host: its log is there
        there = JobFiles(Path(remote.path), files.name)
        raise click.ClickException(
            f"job {entry.full_id} runs on {remote.host}: its log is there "
            f"({there.stderr if stderr else there.stdout}) and is copied here when it ends; follow "
            f"it with `experimaestro jobs log -f {entry.full_id}{'' if stderr else ' --stdout'}`")
    if not path.exists():
        raise click.ClickException(
            f"job {entry.full_id} has no {'stderr' if stderr else 'stdout'} log yet ({path})"
        )
    with open(path, "rb") as log:
        _copy_out(log)
        if follow:
            _follow(log, files)


def _copy_out(log: Any) -> bool:
    """Copy what can be read from ``log`` to stdout; True when something was read."""
    read = False
    while True:
        chunk = log.read(1 << 16)
        if not chunk:
            return read
        read = True
        click.echo(chunk, nl=False)


def _follow(log: Any, files: JobFiles, interval: float = 0.5) -> None:
    """Print what is appended to ``log`` until the job no longer runs and nothing more comes."""
    while True:
        ended = files.disk_state() is not JobState.RUNNING
        if not _copy_out(log):
            if ended:
                return
            time.sleep(interval)


@jobs.command("sync")
@workdir_option
@click.argument("job_id", metavar="ID")
@click.option("--all-files", is_flag=True,
              help="Also fetch the files that the connector's sync_exclude leaves on the remote host.")
def job_sync(workspace: Workspace, job_id: str, all_files: bool) -> None:
    """Fetch the folder of job ID again from the remote host it ran on (only what changed)."""
    entry = find_job(workspace, job_id)
    click.echo(sync_job(entry.path, entry.full_id, all_files))


@jobs.command("kill")
@workdir_option
@click.argument("job_id", metavar="ID")
def job_kill(workspace: Workspace, job_id: str) -> None:
    """Stop job ID with SIGTERM (if it runs): the job then ends as failed."""
    import psutil

    entry = find_job(workspace, job_id)
    files = entry.files
    if entry.state is not JobState.RUNNING:
        click.echo(f"Job {entry.full_id} is not running ({entry.state_label()}): nothing to do.")
        return
    record = files.read_pid()
    elsewhere = runs_elsewhere(entry.path, entry.full_id, record) if record is not None else None
    if elsewhere is not None:
        raise click.ClickException(elsewhere)
    if record is not None and record.type == "slurm":
        from ..launchers.slurm.commands import SlurmCommandError
        from ..launchers.slurm.launcher import cancel_records

        try:
            cancel_records([record])
        except SlurmCommandError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"Cancelled Slurm job {record.extra.get('jobid')} of job {entry.full_id} (scancel); "
            f"it will end as failed (cancelled)."
        )
        return
    try:
        if record is None:
            raise psutil.NoSuchProcess(0)
        # Bound to this very process: psutil refuses to signal a pid reused since.
        process = psutil.Process(record.pid)
        if not files.process_alive(record):
            raise psutil.NoSuchProcess(record.pid)
        process.terminate()
    except psutil.NoSuchProcess:
        click.echo(f"Job {entry.full_id} ended meanwhile: nothing to do.")
        return
    except psutil.AccessDenied:
        raise click.ClickException(
            f"not allowed to stop process {record.pid} of job {entry.full_id}"
        ) from None
    click.echo(
        f"Sent SIGTERM to process {record.pid} of job {entry.full_id}; "
        f"it will end as failed."
    )


@jobs.command("clean")
@workdir_option
@click.option(
    "--state",
    type=click.Choice(["failed", "done"]),
    default="failed",
    show_default=True,
    help="Remove the finished jobs in this state.",
)
@click.option(
    "--perform",
    is_flag=True,
    help="Really remove them (without it, only list what would be removed).",
)
def job_clean(workspace: Workspace, state: str, perform: bool) -> None:
    """Remove finished job folders (failed ones by default) and dangling experiment links.

    Without --perform, this is a dry run that lists what would be removed. A running job is never
    removed.
    """
    entries = list(iter_jobs(workspace, states=[state]))
    removed = {(e.typeid, e.identifier) for e in entries}
    links = _dangling_links(workspace, removed)
    if not entries and not links:
        click.echo(f"Nothing to clean in {workspace.path}.")
        return
    if not perform:
        click.echo(f"Would remove {len(entries)} {state} job folder(s):")
        for entry in entries:
            click.echo(f"  {entry.path}")
        click.echo(f"Would remove {len(links)} experiment link(s) to removed or missing jobs:")
        for link in links:
            click.echo(f"  {link}")
        click.echo("This was a dry run: add --perform to remove them.")
        return
    count = 0
    for entry in entries:
        if _remove_job(entry, state):
            count += 1
        else:
            removed.discard((entry.typeid, entry.identifier))
            click.echo(f"Kept {entry.path}: it is running (again).", err=True)
    links = _dangling_links(workspace, removed)
    for link in links:
        link.unlink(missing_ok=True)
        _remove_if_empty(link.parent)
    click.echo(
        f"Removed {count} {state} job folder(s) and {len(links)} experiment link(s) "
        f"to them or to missing jobs."
    )


def _dangling_links(workspace: Workspace, removed: set[tuple[str, str]]) -> list[Path]:
    """Experiment links to jobs that do not exist, or that are about to be removed."""
    result = []
    for name in workspace.experiment_names():
        for typeid, identifier, link in _links_of(workspace, name):
            key = (typeid, identifier)
            if key in removed or not (workspace.jobs / typeid / identifier).is_dir():
                result.append(link)
    return result


def _remove_job(entry: JobEntry, state: str) -> bool:
    """Remove a finished job folder, unless it is (again) running; True when removed.

    The job's launch lock is held while checking and removing, as a controller holds it while
    (re)launching, so a job cannot be started in a folder being removed.
    """
    from filelock import FileLock, Timeout

    files = entry.files
    try:
        with FileLock(str(files.path / ".launch.lock"), timeout=10):
            current = files.disk_state()
            if STATE_NAMES[current] != state or files.runner_alive():
                return False
            shutil.rmtree(files.path)
    except Timeout:
        return False
    _remove_if_empty(files.path.parent)
    return True


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


# --- experiments ---------------------------------------------------------------------------------


@click.group()
def experiments() -> None:
    """List the experiments of a workspace."""


@dataclass
class ExperimentSummary:
    """An experiment's jobs, counted by state (``missing``: links to removed job folders)."""

    name: str
    counts: dict[str, int]

    @property
    def jobs(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "jobs": self.jobs, "states": self.counts}


def summarize_experiment(workspace: Workspace, name: str) -> ExperimentSummary:
    counts = {state: 0 for state in (*DISK_STATES, "missing")}
    for typeid, identifier, _ in _links_of(workspace, name):
        path = workspace.jobs / typeid / identifier
        if path.is_dir():
            counts[STATE_NAMES[JobFiles.of_directory(path).disk_state()]] += 1
        else:
            counts["missing"] += 1
    return ExperimentSummary(name, counts)


@experiments.command("list")
@workdir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (for scripts).")
def list_experiments(workspace: Workspace, as_json: bool) -> None:
    """List the experiments: name, number of jobs, and jobs per state."""
    summaries = [summarize_experiment(workspace, n) for n in workspace.experiment_names()]
    if as_json:
        echo_json([s.to_json() for s in summaries])
        return
    if not summaries:
        click.echo(f"No experiment in {workspace.path}.", err=True)
        return
    states = (*DISK_STATES, "missing")
    headers = ("NAME", "JOBS", *(s.upper() for s in states))
    rows = [(s.name, str(s.jobs), *(str(s.counts[state]) for state in states)) for s in summaries]
    click.echo(format_table(headers, rows))


__all__ = ["experiments", "jobs"]
