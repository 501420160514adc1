"""SlurmLauncher: jobs as Slurm batch jobs, submitted together as arrays, watched by one poller.

See docs/slurm.md for the design. In short:

* ``launch_many`` writes each job's ``<name>.sh`` and submits the jobs as one ``sbatch --array``
  (split at the cluster's ``MaxArraySize``); a lone job is submitted as its own script;
* a job after upstream jobs of the same cluster is submitted at once with
  ``--dependency=afterok:...`` and ``--kill-on-invalid-dep=yes``;
* the ``.pid`` record says ``{"type": "slurm", "jobid": "123_4", "slurm_conf": ...}``;
* the end of a job is learned from the cluster's poller (``watcher.py``), then the markers are read;
* with a remote connector (``SlurmLauncher(connector=SshConnector(...))``) the same launcher runs on
  the host (its login node), built by the SSH agent from :meth:`SlurmLauncher.spec`
  (``launchers/remote.py``): sbatch, squeue and scancel run there, never on this machine.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ...connectors.base import Connector
from ...connectors.files import atomic_write
from ...connectors.local import LocalConnector
from ...connectors.process import PidRecord
from ..base import Ending, Launched, Launcher
from ..jobfiles import JobFiles
from .commands import SlurmCommandError, SlurmCommands, SlurmJobInfo, new_token
from .endings import classify
from .options import SlurmOptions
from .script import array_script, job_script
from .watcher import LOST_AFTER, MARKER_GRACE, SlurmEnd, SlurmWatcher

logger = logging.getLogger("experimaestro.slurm")


#: Test hook: after sbatch returns, write ``<path>.reached`` (the job id) and wait for ``<path>``.
HOLD_AFTER_SBATCH = "XPM_SLURM_TEST_HOLD_AFTER_SBATCH"


def _hold_after_sbatch(jobid: str) -> None:
    path = os.environ.get(HOLD_AFTER_SBATCH)
    if not path:
        return
    Path(f"{path}.reached").write_text(jobid)
    while not os.path.exists(path):  # the test kills this controller here
        time.sleep(0.05)


class SlurmLauncherError(RuntimeError):
    """The launcher cannot submit to this cluster (no sbatch, unknown partition...)."""


#: Poller and command settings of a cluster, unless a launcher gives them.
DEFAULTS = {"poll_interval": 1.0, "max_poll_interval": 30.0, "lost_after": LOST_AFTER,
            "marker_grace": MARKER_GRACE,
            "command_timeout": 60.0}


class Cluster:
    """The commands and the one poller of a cluster (one per ``SLURM_CONF`` in a process)."""

    _clusters: dict[str, "Cluster"] = {}
    _clusters_lock = threading.Lock()

    def __init__(self, env: Mapping[str, str], poll_interval: float, max_poll_interval: float,
                 lost_after: float, marker_grace: float, command_timeout: float) -> None:
        self.commands = SlurmCommands(env, timeout=command_timeout)
        self.watcher = SlurmWatcher(self.commands, poll_interval, max_poll_interval,
                                    lost_after=lost_after, marker_grace=marker_grace)
        self._config: Optional[dict[str, str]] = None
        self._partitions: Optional[list[str]] = None

    @classmethod
    def get(cls, conf: str, **settings: Any) -> "Cluster":
        """The cluster of ``conf``; settings given (not None) apply to it (one poller per
        cluster: the last launcher that sets them wins)."""
        with cls._clusters_lock:
            return cls._get(conf, settings)

    @classmethod
    def _get(cls, conf: str, settings: dict[str, Any]) -> "Cluster":
        cluster = cls._clusters.get(conf)
        if cluster is None:
            values = dict(DEFAULTS)
            values.update({k: v for k, v in settings.items() if v is not None})
            env = {"SLURM_CONF": conf} if conf else {}
            cluster = cls._clusters[conf] = Cluster(env, **values)
        elif any(v is not None for v in settings.values()):
            watcher = cluster.watcher
            given = {k: v for k, v in settings.items() if v is not None}
            watcher.configure(given.get("poll_interval", watcher.min_interval),
                              given.get("max_poll_interval", watcher.max_interval),
                              given.get("lost_after", watcher.lost_after),
                              given.get("marker_grace", watcher.marker_grace))
            cluster.commands.timeout = given.get("command_timeout", cluster.commands.timeout)
        return cluster

    def config(self) -> dict[str, str]:
        if self._config is None:
            self._config = self.commands.config()
        return self._config

    def max_array_size(self) -> int:
        """Slurm's MaxArraySize: an array holds task ids 0 to MaxArraySize - 1."""
        try:
            return max(1, int(self.config().get("MaxArraySize", "1001")) - 1)
        except ValueError:
            return 1000

    def partitions(self) -> list[str]:
        if self._partitions is None:
            out = self.commands.run(["scontrol", "-o", "show", "partition"]).stdout
            self._partitions = [
                part.split("=", 1)[1]
                for line in out.splitlines()
                for part in line.split()[:1]
                if part.startswith("PartitionName=")
            ]
        return self._partitions


class SlurmLauncher(Launcher):
    """Runs jobs as Slurm batch jobs (see docs/slurm.md).

    :param options: sbatch resources (:class:`SlurmOptions`)
    :param setup: shell lines run before the job in its batch script (``module load``, venvs);
        a failing line ends the job before its runner starts
    :param python: the Python of the compute nodes (default: this interpreter)
    :param slurm_conf: the cluster's ``SLURM_CONF`` (default: the environment's)
    :param max_jobs: at most this many jobs submitted and not ended at once (default: no limit)
    :param timeout_retries: how many times a resumable task's job that hit its time limit is
        submitted again (other tasks fail with reason ``timeout``)
    :param preempt_retries: how many times a preempted job is submitted again
    :param poll_interval: the poller's shortest interval (default 1 s); it backs off to
        ``max_poll_interval`` (default 30 s) while nothing changes. One poller serves a cluster:
        the last launcher that gives these settings sets them.
    :param lost_after: seconds a job may be unknown to Slurm, without a marker, before it is lost
        (default 30 s)
    :param marker_grace: seconds to wait for the marker of a job that Slurm says completed or
        failed, before concluding without it (over NFS a new file may be invisible for a while;
        default 30 s)
    :param max_array_size: split arrays at this size (default: the cluster's MaxArraySize)
    :param connector: where the jobs are submitted: this machine (default), or a remote host
        (``SshConnector(...)``, a login node of the cluster) whose SSH agent runs this same
        launcher there (``python``, ``slurm_conf`` and ``setup`` are then the host's; ``python``
        defaults to the connector's)
    """

    batches = True

    def __init__(
        self,
        options: Optional[SlurmOptions] = None,
        *,
        setup: Sequence[str] = (),
        python: Optional[str] = None,
        slurm_conf: Optional[str] = None,
        max_jobs: Optional[int] = None,
        timeout_retries: int = 0,
        preempt_retries: int = 3,
        poll_interval: Optional[float] = None,
        max_poll_interval: Optional[float] = None,
        lost_after: Optional[float] = None,
        marker_grace: Optional[float] = None,
        max_array_size: Optional[int] = None,
        command_timeout: Optional[float] = None,
        connector: Optional[Connector] = None,
    ) -> None:
        if connector is not None and not isinstance(connector, Connector):
            raise TypeError(
                f"SlurmLauncher(connector={connector!r}): give a remote connector "
                f"(SshConnector(...), a login node of the cluster) or leave it out (this machine)"
            )
        if options is not None and not isinstance(options, SlurmOptions):
            raise TypeError(
                f"SlurmLauncher(options={options!r}): give SlurmOptions(...), e.g. "
                f"SlurmOptions(time=\"4h\", mem=\"16G\")"
            )
        if isinstance(setup, str):
            setup = [setup]
        for line in setup:
            if not isinstance(line, str) or "\n" in line.strip("\n"):
                raise ValueError(f"SlurmLauncher(setup=...): give shell lines, one per item: {line!r}")
        if max_jobs is not None and max_jobs < 1:
            raise ValueError(f"SlurmLauncher(max_jobs={max_jobs}): give at least 1")
        self.connector = connector or LocalConnector.instance()
        self.options = options or SlurmOptions()
        self.setup = list(setup)
        self.max_jobs = max_jobs
        self.timeout_retries = timeout_retries
        self.preempt_retries = preempt_retries
        self.max_array_size = max_array_size
        #: The poller and command settings given (None: the cluster's defaults).
        self.settings = {"poll_interval": poll_interval, "max_poll_interval": max_poll_interval,
                         "lost_after": lost_after, "marker_grace": marker_grace,
                         "command_timeout": command_timeout}
        self._cluster: Optional[Cluster] = None
        self._given_conf = slurm_conf
        if self.remote:
            self.python = python or self.connector.python
            #: Given: a path on the host; None until the host said which (its SLURM_CONF).
            self.slurm_conf: Optional[str] = slurm_conf
        else:
            self.python = python or sys.executable
            self.slurm_conf = slurm_conf if slurm_conf is not None else os.environ.get(
                "SLURM_CONF", "")
            self._cluster = Cluster.get(self.slurm_conf, **self.settings)
        self._checked = False
        #: Tag submissions with --comment (to find a queued job whose sbatch answer was lost),
        #: unless the user gives a comment of their own.
        self._tag = not any(flag.startswith("--comment") for flag in self.options.extra)
        self._arrays = itertools.count()

    @property
    def cluster(self) -> Cluster:
        """The commands and the poller of this launcher's cluster, on this machine (a remote
        launcher has none here: they run on its host)."""
        if self._cluster is None:
            raise SlurmLauncherError(
                f"{self.describe()}: Slurm's commands run on {self.connector.host} (through its "
                f"agent), never on this machine")
        return self._cluster

    # -- checks ----------------------------------------------------------------------------------

    def check(self) -> None:
        """sbatch is on PATH, ``slurm_conf`` exists and the partitions exist (one ``scontrol``
        call, once); for a remote host, the same checks run there, and the user's code is staged
        there."""
        if self._checked:
            return
        if self.remote:
            self._check_remote()
            self._checked = True
            return
        if shutil.which("sbatch") is None:
            raise SlurmLauncherError(
                f"sbatch is not on PATH ({os.environ.get('PATH', '')}): run the experiment on a "
                f"machine with Slurm's client commands (a login node), or add their folder to PATH"
            )
        self._check_cluster()
        self._checked = True

    def _check_cluster(self) -> None:
        if self.slurm_conf and not os.path.isfile(self.slurm_conf):
            raise SlurmLauncherError(
                f"SlurmLauncher(slurm_conf={self.slurm_conf!r}): no such file on "
                f"{socket.gethostname()}: give the path of the cluster's slurm.conf"
            )
        if self.options.partition:
            try:
                known = self.cluster.partitions()
            except SlurmCommandError as exc:
                raise SlurmLauncherError(f"cannot list the cluster's partitions: {exc}") from None
            unknown = [p for p in self.options.partition.split(",") if p not in known]
            if unknown:
                raise SlurmLauncherError(
                    f"SlurmOptions(partition={self.options.partition!r}): no partition "
                    f"{', '.join(map(repr, unknown))} on this cluster (partitions: "
                    f"{', '.join(known) or 'none'})"
                )

    def host_check(self) -> dict[str, Any]:
        """The checks of :meth:`check` on the host of a remote controller (the agent's side),
        and what it learns there: ``sbatch`` (its path; None when it is not on PATH, and then
        ``path`` is PATH), the cluster's ``slurm_conf``, and that the cluster answers
        (``scontrol show config``, cached: its MaxArraySize)."""
        sbatch = shutil.which("sbatch")
        if sbatch is None:
            return {"sbatch": None, "path": os.environ.get("PATH", "")}
        self._check_cluster()
        self._checked = True
        return {"sbatch": sbatch, "slurm_conf": self.slurm_conf,
                "max_array_size": self.cluster.max_array_size()}

    def _check_remote(self) -> None:
        from ...connectors.agentprotocol import RemoteError
        from .. import remote

        self.check_host()
        host = self.connector.host
        where = f"SlurmLauncher(connector=<{host}>)"
        try:
            facts = remote.host_call(self, "check")
        except RemoteError as exc:
            if exc.type_name == "SlurmLauncherError":
                raise SlurmLauncherError(f"{where}: {exc.message}") from None
            if exc.type_name == "SlurmCommandError":
                raise SlurmLauncherError(
                    f"{where}: the cluster does not answer on {host}: {exc.message}. Connect to a "
                    f"login node of the cluster; give slurm_conf=, the path of the cluster's "
                    f"slurm.conf on {host}, if its SSH sessions do not have SLURM_CONF"
                ) from None
            raise
        if facts.get("sbatch") is None:
            raise SlurmLauncherError(
                f"{where}: sbatch is not on the PATH of SSH commands on {host} "
                f"({facts.get('path', '')}). The SSH agent runs Slurm's commands there: connect "
                f"to a login node of the cluster, and put the folder of sbatch on that PATH "
                f"(`ssh {host} which sbatch` must print it), e.g. export PATH at the top of "
                f"~/.bashrc on {host}, before its return for non-interactive shells"
            )
        self.slurm_conf = str(facts.get("slurm_conf", ""))

    # -- remote hosts -----------------------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """The options that rebuild this launcher on its host (:func:`from_spec`): the staged
        code's environment, and the cluster's default ``SLURM_CONF`` there unless given."""
        conf = self._given_conf if self.remote else self.slurm_conf
        options = asdict(self.options)
        options["extra"] = list(options["extra"])
        return {"type": "slurm", "options": options, "setup": list(self.setup),
                "python": self.python, "slurm_conf": conf, "max_array_size": self.max_array_size,
                "settings": dict(self.settings), "env": self.code_environment()}

    # -- scripts ---------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {name: value for name, value in self.code_environment().items() if value}

    def script(self, files: JobFiles) -> str:
        """The batch script of a job (``<name>.sh``)."""
        return job_script(job_dir=files.path, name=files.name, python=self.python,
                          flags=self.options.sbatch_flags(), setup=self.setup, env=self._env())

    # -- launching -------------------------------------------------------------------------------

    def launch(self, files: JobFiles) -> Launched:
        return self.launch_many([files])[0]

    def launch_many(self, files: Sequence[JobFiles], after: Sequence[Launched] = ()
                    ) -> list[Launched]:
        """Submit jobs: one ``sbatch`` for a lone job, else one array per ``MaxArraySize`` jobs
        (on the launcher's host for a remote connector)."""
        if self.remote:
            from .. import remote

            self.check()
            return remote.launch(self, files, after)
        self.check()
        args: list[str] = []
        if after:
            ids = sorted({a.record.extra["jobid"] for a in after})
            args = [f"--dependency=afterok:{':'.join(ids)}", "--kill-on-invalid-dep=yes"]
        scripts = []
        for f in files:
            script = f.path / f"{f.name}.sh"
            atomic_write(script, self.script(f), mode=0o755)
            scripts.append(script)
        if len(files) == 1:
            token = self._intend(files, None)
            keys = [self.cluster.commands.sbatch(scripts[0], args, tag=self._tag, token=token)]
            _hold_after_sbatch(keys[0])
        else:
            size = self.max_array_size or self.cluster.max_array_size()
            keys = []
            for start in range(0, len(files), size):
                chunk = scripts[start:start + size]
                keys.extend(self._submit_array(files[start:start + size], chunk, args))
        self.cluster.watcher.reset()
        return [self._launched(key, f) for key, f in zip(keys, files)]

    def _intend(self, files: Sequence[JobFiles], task: Optional[int]) -> Optional[str]:
        """Before sbatch: record in each job folder the ``--comment`` of the submission (and the
        job's task in the array). None (no record) when the user gives a comment of their own.

        A plain write: a crash in the middle leaves an unreadable intent, read as none, and
        no job was submitted yet then."""
        if not self._tag:
            return None
        token = new_token()
        for index, f in enumerate(files):
            intent = {"comment": token, "task": None if task is None else index,
                      "slurm_conf": self.slurm_conf}
            with open(f.submit_intent, "w") as out:
                out.write(json.dumps(intent))
        return token

    def recover(self, files: Sequence[JobFiles]) -> list[Optional[Launched]]:
        """Jobs submitted by a controller that died before writing their ``.pid``: found by the
        ``--comment`` of their intent in one ``squeue`` call, and watched (None: not submitted,
        or Slurm no longer knows it; such a job is submitted, as it would be anyway). For a
        remote connector, this runs on its host (one round trip)."""
        if self.remote:
            from .. import remote

            return remote.recover(self, files)
        intents: dict[int, dict] = {}
        for i, f in enumerate(files):
            try:
                intent = json.loads(f.submit_intent.read_text())
            except (FileNotFoundError, ValueError):
                continue
            if isinstance(intent, dict) and intent.get("slurm_conf", "") == self.slurm_conf \
                    and isinstance(intent.get("comment"), str):
                intents[i] = intent
        result: list[Optional[Launched]] = [None] * len(files)
        if not intents:
            return result
        try:
            found = self.cluster.commands.find_submissions([i["comment"] for i in intents.values()])
        except SlurmCommandError as exc:
            raise SlurmLauncherError(
                f"cannot tell whether jobs were submitted before a crash (their folders hold a "
                f".submit-intent.json but no .pid): {exc}; rerun once squeue answers"
            ) from None
        for i, intent in intents.items():
            jobid = found.get(intent["comment"])
            if jobid is not None:
                task = intent.get("task")
                key = jobid if task is None else f"{jobid}_{int(task)}"
                result[i] = self._launched(key, files[i])
        return result

    def _submit_array(self, files: Sequence[JobFiles], scripts: list[Path], args: list[str]
                      ) -> list[str]:
        first = files[0]
        folder = first.path.parents[2] / ".experimaestro" / "slurm"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"array-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(self._arrays)}"
        path = folder / f"{name}.sh"
        text = array_script(scripts=scripts, flags=self.options.sbatch_flags(),
                            output=folder / f"{name}-%A.out", job_name=first.name)
        atomic_write(path, text)
        token = self._intend(files, 0)
        jobid = self.cluster.commands.sbatch(path, [f"--array=0-{len(scripts) - 1}", *args],
                                             tag=self._tag, token=token)
        _hold_after_sbatch(jobid)
        return [f"{jobid}_{i}" for i in range(len(scripts))]

    def record(self, key: str) -> PidRecord:
        extra = {"jobid": key}
        if self.slurm_conf:
            extra["slurm_conf"] = self.slurm_conf
        return PidRecord(0, 0.0, socket.gethostname(), time.time(), "slurm", extra)

    def _launched(self, key: str, files: JobFiles, record: Optional[PidRecord] = None) -> Launched:
        watcher = self.cluster.watcher

        def subscribe(callback: Callable[[Ending], None]) -> None:
            def ended(end: SlurmEnd) -> None:
                callback(classify(end.key, end.info, files, end.lost))

            watcher.track(key, files, ended)

        def cancel() -> None:
            watcher.untrack(key)
            self.cluster.commands.scancel([key])

        return Launched(record=record or self.record(key), subscribe=subscribe, cancel=cancel)

    def can_depend_on(self, launched: Launched) -> bool:
        """A job queued on the same cluster: submitted from here for a local launcher, through
        the same host's agent for a remote one."""
        record = launched.record
        if record.type != "slurm":
            return False
        if self.remote:
            host = launched.connector
            if host is None or getattr(host, "host", None) != self.connector.host:
                return False
            if not self._checked:  # the host's SLURM_CONF is not known yet: wait for the job
                return False
        elif launched.connector is not None:
            return False
        return record.extra.get("slurm_conf", "") == self.slurm_conf

    def attach(self, record: PidRecord, files: JobFiles) -> Launched:
        """Watch a job submitted earlier (by this controller before a crash, or another one)."""
        return self._launched(str(record.extra["jobid"]), files, record)

    def alive(self, record: PidRecord) -> bool:
        """Whether Slurm still has the job queued or running (one ``squeue`` call)."""
        key = str(record.extra["jobid"])
        info = self.cluster.commands.squeue([key.split("_", 1)[0]]).get(key)
        return info is not None and info.active

    def summary(self) -> str:
        if self.remote:
            from .. import remote

            try:
                return f"on {self.connector.host}: {remote.host_call(self, 'summary')}"
            except Exception as exc:  # the closing line of an experiment never makes it fail
                return f"on {self.connector.host}: the Slurm counts could not be read ({exc})"
        counts = self.cluster.commands.counts
        shown = ", ".join(f"{name} {counts[name]}" for name in sorted(counts)) or "none"
        return (f"Slurm commands run ({self.slurm_conf or 'default cluster'}): {shown}; "
                f"{self.cluster.watcher.polls} polls")

    def describe(self) -> str:
        flags = " ".join(self.options.sbatch_flags())
        where = f" on {self.connector.host}" if self.remote else ""
        return f"slurm{where} ({flags or 'default options'})"


def from_spec(spec: dict[str, Any]) -> SlurmLauncher:
    """The launcher of :meth:`SlurmLauncher.spec`, on this host (the SSH agent's side): it
    submits here, and its poller tells the agent when each job ends."""
    settings = spec.get("settings") or {}
    launcher = SlurmLauncher(
        SlurmOptions(**(spec.get("options") or {})), setup=spec.get("setup") or (),
        python=spec.get("python") or sys.executable, slurm_conf=spec.get("slurm_conf"),
        max_array_size=spec.get("max_array_size"),
        **{k: settings.get(k) for k in DEFAULTS},
    )
    launcher.__dict__["_code_env"] = dict(spec.get("env") or {})
    return launcher


def _for_record(record: PidRecord, launcher: Optional[Launcher]) -> SlurmLauncher:
    conf = str(record.extra.get("slurm_conf", ""))
    if isinstance(launcher, SlurmLauncher) and launcher.slurm_conf == conf:
        return launcher
    return SlurmLauncher(slurm_conf=conf)


def attach_record(record: PidRecord, files: JobFiles, launcher: Optional[Launcher] = None
                  ) -> Launched:
    """``launchers.base.attach_record`` for Slurm records."""
    return _for_record(record, launcher).attach(record, files)


def record_alive(record: PidRecord) -> bool:
    """``launchers.base.record_alive`` for Slurm records."""
    return _for_record(record, None).alive(record)


def _by_cluster(records: Sequence[PidRecord]) -> dict[str, list[PidRecord]]:
    clusters: dict[str, list[PidRecord]] = {}
    for record in records:
        clusters.setdefault(str(record.extra.get("slurm_conf", "")), []).append(record)
    return clusters


def _commands(conf: str) -> SlurmCommands:
    return SlurmCommands({"SLURM_CONF": conf} if conf else {})


def states_of(records: Sequence[PidRecord]) -> dict[str, SlurmJobInfo]:
    """What Slurm says of recorded jobs: one ``squeue`` call per cluster (``experimaestro jobs
    list``), plus one ``sacct`` for those it forgot when the cluster keeps accounting."""
    from .commands import AccountingDisabled

    infos: dict[str, SlurmJobInfo] = {}
    for conf, group in _by_cluster(records).items():
        commands = _commands(conf)
        keys = [str(r.extra.get("jobid")) for r in group]
        found = commands.squeue([k.split("_", 1)[0] for k in keys])
        missing = [k for k in keys if k not in found]
        if missing:
            try:
                found.update(commands.sacct([k.split("_", 1)[0] for k in missing]))
            except AccountingDisabled:
                pass
        infos.update(found)
    return infos


def cancel_records(records: Sequence[PidRecord]) -> None:
    """``scancel`` recorded jobs (``experimaestro jobs kill``)."""
    for conf, group in _by_cluster(records).items():
        _commands(conf).run(["scancel", *(str(r.extra.get("jobid")) for r in group)])
