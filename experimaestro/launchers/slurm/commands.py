"""Running Slurm's commands (sbatch, squeue, sacct, scontrol, scancel) and reading their output.

Every call has a timeout and is counted (the count is logged at the end of an experiment). A failed
command raises :class:`SlurmCommandError` with the whole command, its exit code and its full output:
``sbatch: error: ...`` lines are the only explanation a user gets, so nothing is cut.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

logger = logging.getLogger("experimaestro.slurm")

#: Slurm states of a job that has not ended yet.
ACTIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
    "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT",
})


#: Errors after which a command may succeed if run again (slurmctld busy or restarting).
TRANSIENT = ("Socket timed out on send/recv operation", "Unable to contact slurm controller",
             "Slurm temporarily unable to accept job")
TRANSIENT_RETRIES = 3


class SlurmCommandError(RuntimeError):
    """A Slurm command failed (or could not run); the message holds its whole output."""

    def __init__(self, message: str, *, command: Sequence[str] = (), code: Optional[int] = None,
                 output: str = "") -> None:
        super().__init__(message)
        self.command = list(command)
        self.code = code
        self.output = output


class AccountingDisabled(SlurmCommandError):
    """``sacct`` cannot answer: the cluster has no accounting storage (no slurmdbd)."""


@dataclass(frozen=True)
class SlurmJobInfo:
    """What Slurm says of one job (an array task is ``<array job id>_<task>``)."""

    key: str
    state: str
    reason: str = ""
    exit_code: Optional[int] = None
    signal: Optional[int] = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def job_key(jobid: str, task: Optional[str] = None) -> str:
    """The key of a job or array task as the launcher records it (``"123"``, ``"123_4"``)."""
    return f"{jobid}_{task}" if task not in (None, "", "N/A") else str(jobid)


def expand_tasks(spec: str) -> list[str]:
    """The task ids of an array range as squeue shows pending tasks (``"0-3,7%2"``)."""
    spec = spec.split("%", 1)[0].strip("[]")
    tasks: list[str] = []
    for part in spec.split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        step = 1
        if ":" in last:
            last, step_text = last.split(":", 1)
            step = int(step_text)
        if last:
            tasks.extend(str(i) for i in range(int(first), int(last) + 1, step))
        else:
            tasks.append(first)
    return tasks


#: ``squeue -O`` fields: JobID, array job id, array task id, state, reason, raw wait status.
SQUEUE_FORMAT = "JobID:|,ArrayJobID:|,ArrayTaskID:|,State:|,Reason:|,exit_code:|"


def parse_squeue(text: str) -> dict[str, SlurmJobInfo]:
    """Jobs by key, from ``squeue -h -O SQUEUE_FORMAT`` (pending array ranges expanded)."""
    result: dict[str, SlurmJobInfo] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 6:
            continue
        jobid, array_jobid, task, state, reason, status = (p.strip() for p in parts[:6])
        state = state.split()[0] if state else "UNKNOWN"
        code = sig = None
        if status.isdigit():
            raw = int(status)
            code, sig = (raw >> 8) & 0xFF, raw & 0x7F
        if task in ("", "N/A"):
            keys = [jobid]
        elif re.fullmatch(r"\d+", task):
            keys = [job_key(array_jobid, task)]
        else:  # a pending range: one line for many tasks
            keys = [job_key(array_jobid, t) for t in expand_tasks(task)]
        for key in keys:
            result[key] = SlurmJobInfo(key, state, reason, code, sig)
    return result


def parse_sacct(text: str) -> dict[str, SlurmJobInfo]:
    """Jobs by key, from ``sacct -n -P -X -o JobID,State,ExitCode``."""
    result: dict[str, SlurmJobInfo] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 3:
            continue
        jobid, state, exit_code = parts[0].strip(), parts[1].strip(), parts[2].strip()
        state = state.split()[0] if state else "UNKNOWN"  # "CANCELLED by 0"
        code = sig = None
        if ":" in exit_code:
            a, b = exit_code.split(":", 1)
            code, sig = int(a), int(b)
        match = re.fullmatch(r"(\d+)_\[(.+)\]", jobid)
        keys = [job_key(match.group(1), t) for t in expand_tasks(match.group(2))] if match else [
            jobid
        ]
        for key in keys:
            result[key] = SlurmJobInfo(key, state, "", code, sig)
    return result


def parse_sbatch(text: str) -> str:
    """The job id printed by ``sbatch --parsable`` (``"123"`` or ``"123;cluster"``)."""
    first = text.strip().splitlines()[-1] if text.strip() else ""
    jobid = first.split(";", 1)[0].strip()
    if not jobid.isdigit():
        raise ValueError(f"sbatch printed no job id: {text!r}")
    return jobid


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config`` as a dict."""
    config = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    return config


def new_token() -> str:
    """A unique ``--comment`` for one submission (``xpm-<uuid>``)."""
    return f"xpm-{uuid.uuid4().hex}"


class SlurmCommands:
    """Runs Slurm's client commands with one environment (``SLURM_CONF`` of a cluster).

    :param env: variables added to the environment of every command (e.g. ``SLURM_CONF``)
    :param timeout: seconds before a command is given up (its process is killed)
    """

    def __init__(self, env: Optional[Mapping[str, str]] = None, timeout: float = 60.0) -> None:
        self.env = dict(env or {})
        self.timeout = timeout
        #: Calls made, by command name (``sbatch``, ``squeue``, ...).
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        return env

    def run(self, args: Sequence[str], *, timeout: Optional[float] = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run a command; raise :class:`SlurmCommandError` (full output) when it fails."""
        with self._lock:
            self.counts[args[0]] += 1
        shown = " ".join(shlex.quote(a) for a in args)
        try:
            proc = subprocess.run(
                list(args), capture_output=True, text=True, env=self._environ(),
                timeout=timeout or self.timeout, stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise SlurmCommandError(
                f"{args[0]} is not on PATH ({os.environ.get('PATH', '')}): run the experiment on a "
                f"machine with Slurm's client commands (a login node), or add their folder to PATH",
                command=args,
            ) from None
        except subprocess.TimeoutExpired as exc:
            raise SlurmCommandError(
                f"`{shown}` did not answer within {exc.timeout:.0f} s (is slurmctld up? "
                f"try `sinfo`)", command=args,
            ) from None
        if check and proc.returncode != 0:
            output = "\n".join(t.strip() for t in (proc.stderr, proc.stdout) if t.strip())
            raise SlurmCommandError(
                f"`{shown}` failed (exit code {proc.returncode}):\n{output or '(no output)'}",
                command=args, code=proc.returncode, output=output,
            )
        return proc

    # -- the commands --------------------------------------------------------------------------

    def sbatch(self, script: Path, args: Sequence[str] = (), tag: bool = True,
               token: Optional[str] = None) -> str:
        """Submit a batch script; returns the job id.

        A transient error (slurmctld too busy to answer in time) is retried a few times, with a
        growing delay; any other error is raised at once, with sbatch's whole output. A timed-out
        sbatch may have queued the job all the same: with ``tag``, each submission carries a
        unique ``--comment`` (``token``, or a new one), looked for in the queue before submitting
        again.
        """
        if token is None and tag:
            token = new_token()
        if token is not None:
            args = [*args, f"--comment={token}"]
        delay = 0.5
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:
                proc = self.run(["sbatch", "--parsable", *args, str(script)])
                break
            except SlurmCommandError as exc:
                if attempt == TRANSIENT_RETRIES or not any(t in exc.output for t in TRANSIENT):
                    raise
                queued = self.find_submission(token) if token is not None else None
                if queued is not None:
                    logger.warning("sbatch: slurmctld's answer was lost, but job %s is queued",
                                   queued)
                    return queued
                logger.warning("sbatch: slurmctld did not answer (%s); trying again in %.1f s",
                               exc.output.strip().splitlines()[-1], delay)
                time.sleep(delay)
                delay *= 2
        try:
            return parse_sbatch(proc.stdout)
        except ValueError as exc:
            raise SlurmCommandError(
                f"sbatch {script} printed no job id:\n{proc.stdout}{proc.stderr}",
                command=["sbatch", str(script)], output=proc.stdout,
            ) from exc

    def find_submission(self, token: str) -> Optional[str]:
        """The job id of the submission tagged ``--comment=token``, if it is in the queue."""
        try:
            return self.find_submissions([token]).get(token)
        except SlurmCommandError:
            return None

    def find_submissions(self, tokens: Sequence[str]) -> dict[str, str]:
        """The job ids (an array's id for an array) of the submissions tagged with ``tokens``
        that Slurm's controller still knows, in one ``squeue`` call over the user's jobs."""
        wanted = set(tokens)
        if not wanted:
            return {}
        proc = self.run(["squeue", "-h", "--me", "-t", "all", "-o", "%F|%k"], check=False)
        if proc.returncode != 0:
            raise SlurmCommandError(f"squeue failed: {proc.stderr.strip()}", command=["squeue"],
                                    code=proc.returncode, output=proc.stderr)
        found: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            jobid, _, comment = line.partition("|")
            if comment.strip() in wanted:
                found[comment.strip()] = jobid.strip()
        return found

    def squeue(self, jobids: Sequence[str]) -> dict[str, SlurmJobInfo]:
        """The jobs Slurm's controller still knows (queued, running, or ended lately), in one call.

        ``jobids`` are job ids (an array's id covers its tasks).
        """
        ids = sorted(set(jobids), key=lambda i: (len(i), i))
        if not ids:
            return {}
        args = ["squeue", "-h", "-t", "all", "-O", SQUEUE_FORMAT]
        if len(ids) <= 2000:
            args += ["-j", ",".join(ids)]
        else:  # a command line of reasonable length: the user's jobs, filtered here
            args += ["--me"]
        proc = self.run(args, check=False)
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:  # a single id that the controller forgot
                return {}
            raise SlurmCommandError(
                f"`{' '.join(args)}` failed (exit code {proc.returncode}):\n{proc.stderr.strip()}",
                command=args, code=proc.returncode, output=proc.stderr,
            )
        return parse_squeue(proc.stdout)

    def sacct(self, jobids: Sequence[str]) -> dict[str, SlurmJobInfo]:
        """Ended jobs as the accounting database has them, in one call.

        :raises AccountingDisabled: when the cluster keeps no accounting
        """
        ids = sorted(set(jobids))
        if not ids:
            return {}
        args = ["sacct", "-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j", ",".join(ids)]
        proc = self.run(args, check=False)
        if proc.returncode != 0:
            text = (proc.stderr + proc.stdout).strip()
            if "accounting storage is disabled" in text.lower():
                raise AccountingDisabled(text, command=args, code=proc.returncode, output=text)
            raise SlurmCommandError(
                f"`{' '.join(args)}` failed (exit code {proc.returncode}):\n{text}",
                command=args, code=proc.returncode, output=text,
            )
        return parse_sacct(proc.stdout)

    def scancel(self, keys: Sequence[str]) -> None:
        """Cancel jobs or array tasks (one call)."""
        if keys:
            self.run(["scancel", *sorted(set(keys))], check=False)

    def config(self) -> dict[str, str]:
        """The cluster's configuration (``scontrol show config``)."""
        return parse_config(self.run(["scontrol", "show", "config"]).stdout)
