"""Jobs on another host: their folders and their launcher, through a remote connector's agent.

A launcher given a remote connector (``DirectLauncher(connector=host)``,
``SlurmLauncher(connector=host)``) keeps its options here and runs the **same** launcher on the
host: the agent (``experimaestro/agent.py``) builds it from its :meth:`Launcher.spec`, starts the
jobs with it (the fork server there, or ``sbatch`` on the login node), watches them as it does
locally, and pushes a ``job_ended`` event when each one ends. The controller never polls.

* :class:`RemoteJobFiles` is the job-folder protocol of ``jobfiles.py`` with each operation done by
  the agent on the host (one round trip each; the controller's scheduler calls the same methods on
  local folders).
* :func:`launch` and :func:`reattach` start and find again jobs; :class:`JobEvents` routes the
  agent's ``job_ended`` events to the scheduler, and after a lost connection asks the new agent to
  find every job again (one that ended meanwhile is reported at once).
"""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..connectors.base import PerConnector
from ..connectors.process import PidRecord, wait_gone
from .base import Ending, Launched, Launcher, Markers
from .jobfiles import EXIT_LOCKED, FailureRecord, JobFiles, JobState

logger = logging.getLogger("experimaestro.launchers.remote")


class RemoteJobFiles(JobFiles):
    """A job folder on the host of ``connector``: every operation is one request to its agent."""

    __slots__ = ("connector",)
    local = False

    def __init__(self, connector: Any, path: Path, name: str) -> None:
        super().__init__(path, name)
        self.connector = connector

    @property
    def location(self) -> str:
        """``host:path``, as ``scp`` writes it."""
        return f"{self.connector.host}:{self.path}"

    def _op(self, method: str, **args: Any) -> Any:
        return self.connector.call("job_files", folder=str(self.path), name=self.name,
                                   method=method, args=args)

    def missing_paths(self, paths: list[str]) -> list[str]:
        return self.connector.missing_paths(paths) if paths else []

    def exists(self) -> bool:
        return self._op("exists")

    def make(self) -> bool:
        return self._op("make")

    def remove_tree(self) -> None:
        self._op("remove_tree")

    def launch_lock(self) -> Any:
        return self.connector.lock(str(self.path / ".launch.lock"))

    def is_done(self) -> bool:
        return self._op("is_done")

    def mtime_ns(self, which: str) -> Optional[int]:
        return self._op("mtime_ns", which=which)

    def read_params(self) -> str:
        return self._op("read_params")

    def write_params(self, text: str) -> None:
        self._op("write_params", text=text)

    def read_pid(self) -> Optional[PidRecord]:
        data = self._op("read_pid")
        return None if data is None else PidRecord.from_dict(data)

    def write_pid(self, record: PidRecord) -> None:
        self._op("write_pid", record=record.to_dict())

    def remove(self, which: str) -> None:
        self._op("remove", which=which)

    def read_failure(self) -> Optional[FailureRecord]:
        data = self._op("read_failure")
        return None if data is None else FailureRecord.parse(data)

    def write_failure(self, code: int, reason: str, message: str = "") -> None:
        self._op("write_failure", code=code, reason=reason, message=message)

    def marker_state(self) -> Optional[JobState]:
        value = self._op("marker_state")
        return None if value is None else JobState(value)

    def disk_state(self) -> JobState:
        return JobState(self._op("disk_state"))

    def process_alive(self, record: PidRecord) -> bool:
        return self._op("process_alive", record=record.to_dict())

    def runner_alive(self) -> bool:
        return self._op("runner_alive")

    def start_local_copy(self, local_path: Path, record: PidRecord, params: Optional[str]) -> None:
        """Write into ``local_path`` (the job's folder in the local workspace) what shows the job
        while it runs on the host, without a connection: its params.json (``params``, else read
        on the host), ``.remote.json`` (not synchronised yet) and a copy of its pid ``record``
        (a record of another host: ``JobFiles.disk_state`` reads it as running). Markers and
        progress of an earlier run, copied back then, are removed: they are not this run's.
        The job runs whatever happens here: a failure is logged, and the copy at its end
        (:meth:`fetch`) writes the folder anyway."""
        from ..connectors.remote_record import write_remote_record

        local = JobFiles(local_path, self.name)
        try:
            local.make()
            for stale in (local.done, local.failed, local.progress):
                stale.unlink(missing_ok=True)
            local.write_params(params if params is not None else self.read_params())
            write_remote_record(local_path, self.connector.remote_copy(self.path))
            local.write_pid(record)  # last: a reader that sees it finds everything else
            progress_mirrors(self.connector).follow(self.path, local.progress)
        except Exception as exc:
            logger.warning("%s runs on %s, but its local folder %s could not be written: %s",
                           self.path.name, self.connector.host, local_path, exc)

    def record_alive(self, record: PidRecord) -> Optional[bool]:
        """Whether the job of a record of another launcher (Slurm) still runs, as that launcher
        says on the host (``launchers.base.record_alive``); None when no one can tell."""
        return self._op("record_alive", record=record.to_dict())

    def fetch(self, local_path: Path) -> None:
        """Copy this folder into ``local_path`` (see ``SshConnector.fetch_job``)."""
        progress_mirrors(self.connector).forget(self.path)
        self.connector.fetch_job(self.path, local_path)


def _by_connector(files: Sequence[Any]) -> Dict[int, List[int]]:
    """The indices of ``files`` (remote job folders), grouped by connector."""
    groups: Dict[int, List[int]] = {}
    for i, f in enumerate(files):
        groups.setdefault(id(f.connector), []).append(i)
    return groups


def read_states(files: Sequence[Any]) -> List[JobState]:
    """The state of each remote job folder (:class:`RemoteJobFiles`: ``JobFiles.disk_state`` read
    on its host), in one round trip per host."""
    states: List[JobState] = [JobState.UNSCHEDULED] * len(files)
    for indices in _by_connector(files).values():
        connector = files[indices[0]].connector
        values = connector.job_states([(files[i].path, files[i].name) for i in indices])
        for i, value in zip(indices, values):
            states[i] = JobState(value)
    return states


def fetch_folders(folders: Sequence[Tuple[Any, Path]]) -> None:
    """Copy remote job folders into local ones (``RemoteJobFiles.fetch`` for many: small folders
    many per round trip, see ``SshConnector.fetch_jobs``)."""
    files = [f for f, _ in folders]
    for indices in _by_connector(files).values():
        connector = files[indices[0]].connector
        connector.fetch_jobs([(files[i].path, folders[i][1]) for i in indices])


def serve_job_files(folder: str, name: str, method: str, args: Dict[str, Any]) -> Any:
    """The host's side of :class:`RemoteJobFiles`: the same method on the local folder, its
    result as JSON (the agent's ``job_files`` operation)."""
    files = JobFiles(Path(folder), name)
    if method in ("exists", "make", "is_done", "runner_alive"):
        return getattr(files, method)()
    if method == "remove_tree":
        return files.remove_tree()
    if method == "mtime_ns":
        return files.mtime_ns(args["which"])
    if method == "read_params":
        return files.read_params()
    if method == "write_params":
        return files.write_params(args["text"])
    if method == "read_pid":
        record = files.read_pid()
        return None if record is None else record.to_dict()
    if method == "write_pid":
        return files.write_pid(PidRecord.from_dict(args["record"]))
    if method == "remove":
        return files.remove(args["which"])
    if method == "read_failure":
        failure = files.read_failure()
        return None if failure is None else failure.to_json()
    if method == "write_failure":
        return files.write_failure(int(args["code"]), str(args["reason"]), str(args.get("message", "")))
    if method == "marker_state":
        state = files.marker_state()
        return None if state is None else state.value
    if method == "disk_state":
        return files.disk_state().value
    if method == "process_alive":
        return files.process_alive(PidRecord.from_dict(args["record"]))
    if method == "record_alive":
        from .base import record_alive

        return record_alive(PidRecord.from_dict(args["record"]))
    raise ValueError(f"job_files: unknown method {method!r}")


# -- launching through the agent --------------------------------------------------------------


def ending_to_json(ending: Ending) -> Dict[str, Any]:
    data: Dict[str, Any] = {"code": ending.code, "overrides": ending.overrides, "lost": ending.lost,
                            "failure": None if ending.failure is None else ending.failure.to_json()}
    markers = ending.markers
    if markers is not None:
        data["markers"] = {"state": None if markers.state is None else markers.state.value,
                           "failure": None if markers.failure is None else markers.failure.to_json()}
    return data


def ending_from_json(data: Dict[str, Any]) -> Ending:
    failure = data.get("failure")
    markers = data.get("markers")
    return Ending(code=data.get("code"), overrides=bool(data.get("overrides")),
                  lost=bool(data.get("lost")),
                  failure=None if failure is None else FailureRecord.parse(failure),
                  markers=None if markers is None else Markers(
                      None if markers.get("state") is None else JobState(markers["state"]),
                      None if markers.get("failure") is None else FailureRecord.parse(markers["failure"])))


_Key = Tuple[str, str]  # (folder, the record as JSON)


class JobEvents:
    """The jobs one connector's agent watches for this controller: ``job_ended`` events go to the
    callback of their job; after a reconnection the new agent is asked to find each job again."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector
        self._lock = threading.Lock()
        #: key -> (callback, the launcher's spec, the job's name)
        self._followed: Dict[_Key, Tuple[Callable[[Ending], None], Dict[str, Any], str]] = {}
        #: endings that arrived before their job was followed (a job that ended at once)
        self._early: Dict[_Key, Ending] = {}
        #: How many times every followed job was found again after a reconnection.
        self.resyncs = 0
        connector.subscribe(self._event)

    @staticmethod
    def key(folder: Any, record: Dict[str, Any]) -> _Key:
        return str(folder), PidRecord.from_dict(record).to_json()

    def follow(self, key: _Key, spec: Dict[str, Any], name: str,
               callback: Callable[[Ending], None]) -> None:
        with self._lock:
            early = self._early.pop(key, None)
            if early is None:
                self._followed[key] = (callback, spec, name)
        if early is not None:
            callback(early)

    def following(self) -> List[str]:
        """The folders of the jobs whose end this host will push (diagnostics, tests)."""
        with self._lock:
            return [folder for folder, _ in self._followed]

    def forget(self, key: _Key) -> None:
        with self._lock:
            self._followed.pop(key, None)

    def _event(self, event: Dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "job_ended":
            key = self.key(event["folder"], event["record"])
            ending = ending_from_json(event.get("ending") or {})
            with self._lock:
                entry = self._followed.pop(key, None)
                if entry is None:
                    self._early[key] = ending
            if entry is not None:
                entry[0](ending)
        elif kind == "resync":
            threading.Thread(target=self._resync, daemon=True, name="xpm-remote-resync").start()

    def _resync(self) -> None:
        """The agent was restarted (the connection dropped): the new one watches nothing yet, and
        the endings of the jobs that ended meanwhile were not pushed. Each job is found again: one
        that ended is reported by the agent (its marker), one whose process is gone without a
        marker is reported here (its folder says it was lost), the others are watched again."""
        with self._lock:
            followed = list(self._followed.items())
        for key, (_, spec, name) in followed:
            folder, record = key
            try:
                found = self.connector.call("reattach", spec=spec, folder=folder, name=name,
                                            record=PidRecord.from_json(record).to_dict())
            except Exception as exc:  # the next resync tries again
                logger.warning("cannot watch %s again on %s: %s", folder, self.connector.host, exc)
                continue
            if not found:
                with self._lock:
                    entry = self._followed.pop(key, None)
                if entry is not None:
                    entry[0](Ending())
        self.resyncs += 1


#: The :class:`JobEvents` of a connector (one per connector object).
job_events: "PerConnector[JobEvents]" = PerConnector(JobEvents)


class ProgressMirror:
    """Copies the progress file of each running remote job (what ``progress()`` writes in the
    task, ``<name>.progress``) into its local folder, so that ``experimaestro jobs list`` and the
    monitor on the laptop show it while the job runs. The agent watches that file for every job it
    launched or found again (``HostLaunchers``) and pushes a ``file`` event at each write: one
    request per report, nothing for a job that reports nothing."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector
        self._lock = threading.Lock()
        #: remote folder -> the local progress file
        self._followed: Dict[str, Path] = {}
        #: remote folder -> a progress file written before its job was followed here (a job that
        #: reports at once: its first report can arrive before the answer to its launch)
        self._early: Dict[str, str] = {}
        connector.subscribe(self._event)

    def follow(self, folder: Path, local: Path) -> None:
        with self._lock:
            self._followed[str(folder)] = local
            early = self._early.pop(str(folder), None)
        if early is not None:
            self._copy(early, local)

    def forget(self, folder: Path) -> None:
        with self._lock:
            self._followed.pop(str(folder), None)
            self._early.pop(str(folder), None)

    def _event(self, event: Dict[str, Any]) -> None:
        if event.get("event") != "file":
            return
        folder, path = str(event.get("folder")), str(event.get("path"))
        if not path.endswith(".progress"):
            return
        with self._lock:
            local = self._followed.get(folder)
            if local is None:
                self._early[folder] = path
                return
        self._copy(path, local)

    def _copy(self, path: str, local: Path) -> None:
        from ..connectors.files import atomic_write

        if Path(path).name != local.name:
            return
        try:
            atomic_write(local, self.connector.read_text(path))
        except FileNotFoundError:
            pass
        except Exception as exc:  # shown late is better than a failed job: the end copies it
            logger.debug("cannot copy the progress of %s: %s", path, exc)


progress_mirrors: "PerConnector[ProgressMirror]" = PerConnector(ProgressMirror)


def _launched(launcher: Launcher, files: JobFiles, record: Dict[str, Any]) -> Launched:
    connector = launcher.connector
    spec = launcher.spec()
    key = JobEvents.key(files.path, record)

    def subscribe(callback: Callable[[Ending], None]) -> None:
        job_events(connector).follow(key, spec, files.name, callback)

    def cancel() -> None:
        connector.call("cancel_job", spec=spec, folder=str(files.path), name=files.name,
                       record=record)
        job_events(connector).forget(key)  # its ending no longer matters to anyone

    return Launched(record=PidRecord.from_dict(record), subscribe=subscribe, cancel=cancel,
                    connector=connector)


def _listen(connector: Any) -> None:
    """Route the host's pushed events (job ends, progress reports) before a job can send any."""
    job_events(connector)
    progress_mirrors(connector)


def launch(launcher: Launcher, files: Sequence[JobFiles], after: Sequence[Launched] = ()
           ) -> List[Launched]:
    """Start jobs on the launcher's host with the same launcher there (one round trip)."""
    _listen(launcher.connector)
    records = launcher.connector.call(
        "launch", spec=launcher.spec(), jobs=[[str(f.path), f.name] for f in files],
        after=[a.record.to_dict() for a in after])
    return [_launched(launcher, f, r) for f, r in zip(files, records)]


def start(launcher: Launcher, files: JobFiles, params: str) -> Tuple[str, Optional[Launched]]:
    """The scheduler's launch of one job on the launcher's host, in one round trip: the host
    makes the job's folder and, under its launch lock, finds the job running (``"attached"``:
    watched again) or done (``"done"``), or writes its params.json and launches it
    (``"launched"``), as the scheduler does for a local folder (``Scheduler._start``)."""
    _listen(launcher.connector)
    outcome = launcher.connector.call("start_job", spec=launcher.spec(), folder=str(files.path),
                                      name=files.name, params=params)
    kind, record = outcome["outcome"], outcome.get("record")
    return kind, None if record is None else _launched(launcher, files, record)


def reattach(launcher: Launcher, files: JobFiles, record: PidRecord) -> Optional[Launched]:
    """Watch again a job started earlier on the host (None: it no longer runs there)."""
    _listen(launcher.connector)
    found = launcher.connector.call("reattach", spec=launcher.spec(), folder=str(files.path),
                                    name=files.name, record=record.to_dict())
    return _launched(launcher, files, record.to_dict()) if found else None


def recover(launcher: Launcher, files: Sequence[JobFiles]) -> List[Optional[Launched]]:
    """Jobs submitted on the host by a controller that died before it wrote their ``.pid``
    (their launcher's ``recover``, run there on the host's folders; one round trip): each found
    one is watched there, None for the others."""
    _listen(launcher.connector)
    records = launcher.connector.call(
        "host_launcher", spec=launcher.spec(), method="recover",
        jobs=[[str(f.path), f.name] for f in files])
    return [None if r is None else _launched(launcher, f, r) for f, r in zip(files, records)]


def host_call(launcher: Launcher, method: str) -> Any:
    """``check`` (the launcher's checks, run on the host: what it found there, e.g. the cluster's
    configuration) or ``summary`` (its closing line, with the host's counts) of the launcher's twin
    on its host."""
    return launcher.connector.call("host_launcher", spec=launcher.spec(), method=method, jobs=[])


# -- the host's side (the agent) ----------------------------------------------------------------


def launcher_from_spec(spec: Dict[str, Any]) -> Launcher:
    """The launcher a :meth:`Launcher.spec` describes, on this host (the module
    ``experimaestro.launchers.<type>`` builds it with its ``from_spec``)."""
    module = importlib.import_module(f"{__package__}.{spec['type']}")
    return module.from_spec(spec)


class HostLaunchers:
    """The agent's launchers, one per spec, and what they started: each job's end is pushed with
    ``send({"event": "job_ended", "folder", "record", "ending"})``.

    ``follow(files)``, given by the agent, watches a job's progress file while it runs (its writes
    are pushed as ``file`` events) and returns what stops it when the job ends."""

    def __init__(self, send: Callable[[Dict[str, Any]], None],
                 follow: Optional[Callable[[JobFiles], Callable[[], None]]] = None) -> None:
        self._send = send
        self._follow = follow
        self._launchers: Dict[str, Launcher] = {}
        self._lock = threading.Lock()

    def get(self, spec: Dict[str, Any]) -> Launcher:
        import json

        key = json.dumps(spec, sort_keys=True)
        with self._lock:
            launcher = self._launchers.get(key)
            if launcher is None:
                launcher = self._launchers[key] = launcher_from_spec(spec)
            return launcher

    def _ended(self, files: JobFiles, record: PidRecord, ending: Ending) -> None:
        if ending.markers is None:  # read here once: the controller needs them at once
            ending = Ending(ending.code, ending.failure, ending.overrides, ending.lost,
                            Markers.read(files))
        self._send({"event": "job_ended", "folder": str(files.path), "record": record.to_dict(),
                    "ending": ending_to_json(ending)})

    def _watch(self, files: JobFiles, launched: Launched) -> None:
        record = launched.record
        unfollow = self._follow(files) if self._follow is not None else None

        def end(ending: Ending) -> None:
            if unfollow is not None:
                unfollow()
            self._ended(files, record, ending)

        if launched.subscribe is not None:
            launched.subscribe(end)
            return
        wait = launched.wait

        def reap() -> None:
            code = wait() if wait is not None else _wait_gone(record)
            if code == EXIT_LOCKED and files.marker_state() is None:
                # Another runner works on the job (started by a launch whose answer a dropped
                # connection lost, or by another controller): this job ends when that one does.
                files.wait_runner()
                code = None  # its marker says how
            end(Ending(code=code))

        threading.Thread(target=reap, daemon=True, name=f"xpm-agent-job-{files.path.name[:8]}").start()

    def launch(self, spec: Dict[str, Any], jobs: List[List[str]], after: List[Dict[str, Any]]
               ) -> List[Dict[str, Any]]:
        launcher = self.get(spec)
        files = [JobFiles(Path(folder), name) for folder, name in jobs]
        upstream = [Launched(record=PidRecord.from_dict(r)) for r in after]
        launched = launcher.launch_many(files, upstream) if (after or len(files) > 1) else (
            [launcher.launch(files[0])] if files else [])
        for f, one in zip(files, launched):
            self._watch(f, one)
        return [one.record.to_dict() for one in launched]

    def start(self, spec: Dict[str, Any], folder: str, name: str, params: str) -> Dict[str, Any]:
        """The host's side of :func:`start`: ``{"outcome": "launched" | "attached" | "done",
        "record": pid record (not with "done")}``."""
        files = JobFiles(Path(folder), name)
        files.make()
        with files.launch_lock():
            # Order matters: a dead process has written its marker before it died.
            record = files.read_pid()
            if record is not None and files.marker_state() is None and self.reattach(
                    spec, folder, name, record.to_dict()):
                return {"outcome": "attached", "record": record.to_dict()}
            if files.is_done():
                return {"outcome": "done"}
            files.remove("failed")
            files.write_params(params)
            launched = self.launch(spec, [[folder, name]], [])[0]
            files.write_pid(PidRecord.from_dict(launched))
        return {"outcome": "launched", "record": launched}

    def call(self, spec: Dict[str, Any], method: str, jobs: List[List[str]]) -> Any:
        """The agent's ``host_launcher`` operation (see :func:`host_call` and :func:`recover`)."""
        launcher = self.get(spec)
        if method == "check":  # the launcher's host_check() says what it found, else check()
            host_check = getattr(launcher, "host_check", None)
            if host_check is not None:
                return host_check()
            launcher.check()
            return {}
        if method == "summary":
            return launcher.summary()
        if method == "recover":
            files = [JobFiles(Path(folder), name) for folder, name in jobs]
            recover = getattr(launcher, "recover", None)
            found = recover(files) if recover is not None else [None] * len(files)
            records: List[Optional[Dict[str, Any]]] = []
            for f, one in zip(files, found):
                if one is not None:
                    self._watch(f, one)
                records.append(None if one is None else one.record.to_dict())
            return records
        raise ValueError(f"host_launcher: unknown method {method!r}")

    def reattach(self, spec: Dict[str, Any], folder: str, name: str, record: Dict[str, Any]) -> bool:
        """Watch a job again; False when it no longer runs (and has not ended since: its folder
        says how it ended). A job that ended is reported at once."""
        from .base import attach_record

        files = JobFiles(Path(folder), name)
        pid = PidRecord.from_dict(record)
        if files.marker_state() is not None:
            self._ended(files, pid, Ending())
            return True
        if pid.type == "local":
            if files.process_alive(pid):
                self._watch(files, Launched(record=pid))
                return True
            if files.runner_alive():  # the recorded process is gone, another runner works on it
                self._watch_runner(files, pid)
                return True
            return False
        launched = attach_record(pid, files, self.get(spec))
        if launched is None:
            return False
        self._watch(files, launched)
        return True

    def _watch_runner(self, files: JobFiles, record: PidRecord) -> None:
        """Report the job's end when its runner (whatever its process) releases its lock."""

        def wait() -> None:
            files.wait_runner()
            self._ended(files, record, Ending())

        threading.Thread(target=wait, daemon=True, name=f"xpm-agent-runner-{files.path.name[:8]}").start()

    def cancel(self, spec: Dict[str, Any], folder: str, name: str, record: Dict[str, Any]) -> None:
        from .base import attach_record

        pid = PidRecord.from_dict(record)
        files = JobFiles(Path(folder), name)
        if pid.type == "local":
            import os
            import signal

            if files.process_alive(pid):
                os.killpg(pid.pid, signal.SIGTERM)
            return
        launched = attach_record(pid, files, self.get(spec))
        if launched is not None and launched.cancel is not None:
            launched.cancel()


def _wait_gone(record: PidRecord) -> Optional[int]:
    """Block until a job process that is not our child ends; its exit code is unknown (None):
    its marker says how it ended."""
    wait_gone(record.pid, record.create_time)
    return None
