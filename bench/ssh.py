"""SSH benchmark against the separate ssh-test host: prints ONE JSON object.

    .venv/bin/python bench/ssh.py                       # every measurement (as root: starts a host)
    .venv/bin/python bench/ssh.py --only sync_small     # some of them (comma-separated names)
    .venv/bin/python bench/ssh.py --tiny                # small sizes, seconds (checks the script works)
    .venv/bin/python bench/ssh.py --host-dir DIR        # use the host running in DIR (its DIR/env)

Each measurement is an independent function in ``MEASUREMENTS`` (name -> function(Bench) -> dict of
figures), run on one paramiko connection to a host started with ``ssh-test/start`` (stopped at the
end, unless ``--host-dir`` named a running one); the remote Python has this checkout installed.

- ``sync_small``: sync-back of 1,000 small files (a fresh local folder), then again with nothing
  changed; target <= 2 s.
- ``sync_large``: sync-back of one 100 MB file; target >= 50 MB/s on loopback.
- ``stage``: staging a project of 200 Python files, then again with nothing changed.
- ``connector``: the SSH connector (``SshConnector``, its own connection and agent): ``connect_ms``
  (resolve the ssh config, connect, authenticate, start the agent); ``round_trip_ms_median`` and
  ``_p95``: one remote operation (``ping``) on the open connection (target <= 5 ms on loopback);
  ``stat_1_ms_median``; ``exists_batch_ms`` and ``job_states_batch_ms``: the ``.done`` markers and
  the states of ``folders`` (10,000) job folders, each in one round trip; ``exec_command_ms_median``:
  paramiko's ``exec_command("true")`` on the same connection, for comparison.
- ``jobs``: 100 trivial jobs (``bench/benchtasks.py``), end to end (first ``submit()`` to the end of
  the experiment, every remote job's folder copied back), on the local launcher and on
  ``DirectLauncher(connector=SshConnector(...))``, alternated over ``--rounds`` rounds in this
  process; the agent's requests by operation (target: remote <= 1.5x local).
- ``reuse``: 10,000 done remote jobs (``--reuse-jobs``) submitted again: from a fresh local
  workspace (another laptop: their states read on the host, their folders copied back), the same
  with every file excluded from the copy (the reuse check alone), then a rerun in the first
  workspace (the local copies answer); side by side, the same jobs done in a local workspace
  (target <= 5 s); ``local_file_creation_ms``: what creating one small file costs in the local
  folder, which bounds the copy (about 10 files per job folder).

Sync figures are end to end, as ``experimaestro jobs sync`` would pay them: open a channel, start
``python -m experimaestro sync-send`` on the remote (``sync_command_start_s`` says how much of it
that start is), transfer, extract.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from collections import Counter
from typing import Callable, Optional

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from remote_host import RemoteHost  # noqa: E402
from ssh_streams import ExecStreams  # noqa: E402

from experimaestro.connectors.staging import stage, take_snapshot  # noqa: E402
from experimaestro.connectors.sync import pull  # noqa: E402


@dataclass
class Bench:
    """What every measurement gets: the host, an open connection, a local scratch folder, sizes."""

    host: RemoteHost
    streams: ExecStreams
    local: Path
    small_files: int
    large_mb: int
    folders: int = 10_000
    jobs: int = 100
    rounds: int = 2
    reuse: int = 10_000

    def remote_python(self, code: str) -> str:
        return self.host.run(f"{shlex.quote(self.host.python)} -c {shlex.quote(code)}", timeout=600).stdout

    def remote_folder(self, name: str) -> str:
        path = f"{self.host.home}/bench/{name}"
        self.host.run(f"rm -rf {shlex.quote(path)} && mkdir -p {shlex.quote(path)}")
        return path

    def sync(self, remote: str, local: Path) -> tuple[float, object]:
        start = time.perf_counter()
        with self.streams.sync_streams(remote) as (to_sender, from_sender):
            stats = pull(local, to_sender, from_sender)
        return time.perf_counter() - start, stats


def measure_sync_small(bench: Bench) -> dict:
    remote = bench.remote_folder("small")
    bench.remote_python(f"""
import os
for i in range({bench.small_files}):
    open(f"{remote}/{{i:04}}.txt", "w").write("x" * (i % 200))
""")
    empty = bench.remote_folder("empty")
    command, _ = bench.sync(empty, bench.local / "empty")
    first, stats = bench.sync(remote, bench.local / "small")
    assert stats.files == bench.small_files, stats
    again, stats = bench.sync(remote, bench.local / "small")
    assert stats.files == 0, stats
    return {f"sync_{bench.small_files}_files_s": round(first, 3),
            f"sync_{bench.small_files}_files_unchanged_s": round(again, 3),
            "sync_command_start_s": round(command, 3)}


def measure_sync_large(bench: Bench) -> dict:
    remote = bench.remote_folder("large")
    bench.remote_python(f"""
import os
with open("{remote}/big.bin", "wb") as f:
    for _ in range({bench.large_mb}):
        f.write(os.urandom(2**20))
""")
    seconds, stats = bench.sync(remote, bench.local / "large")
    assert stats.bytes == bench.large_mb * 2**20, stats
    return {f"sync_{bench.large_mb}mb_s": round(seconds, 3),
            f"sync_{bench.large_mb}mb_mb_per_s": round(bench.large_mb / seconds, 1)}


def measure_stage(bench: Bench) -> dict:
    project = bench.local / "project"
    for i in range(200):
        package = project / f"pkg{i // 20}"
        package.mkdir(parents=True, exist_ok=True)
        (package / f"m{i}.py").write_text(f"VALUE = {i}\n" + "# padding\n" * 100)
    workspace = bench.remote_folder("workspace")
    figures = {}
    for label in ("stage_200_files_s", "stage_unchanged_s"):
        start = time.perf_counter()
        with bench.streams.stage_streams(workspace) as (to_remote, from_remote):
            stage(take_snapshot([project]), to_remote, from_remote)
        figures[label] = round(time.perf_counter() - start, 3)
    return figures


def _timed_ms(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def measure_connector(bench: Bench) -> dict:
    from experimaestro.connectors.agentclient import close_agents
    from experimaestro.connectors.ssh import SshConnector
    from experimaestro.connectors.sshconnection import close_all

    host, folders = bench.host, bench.folders
    repeat = 50 if folders < 10_000 else 2000
    start = time.perf_counter()
    connector = SshConnector(host.alias, python=host.python, ssh_config=str(host.ssh_config))
    connect_ms = (time.perf_counter() - start) * 1000
    try:
        for _ in range(20):  # warm up
            connector.agent.request("ping")
        rtt = sorted(_timed_ms(lambda: connector.agent.request("ping"), repeat))
        stat1 = _timed_ms(lambda: connector.stat_many(["/"]), repeat)
        root = bench.remote_folder("connector")
        host.run(f"cd {shlex.quote(root)} && seq 0 {folders - 1} | xargs mkdir && "
                 f"seq 0 2 {folders - 1} | sed 's|$|/job.done|' | xargs touch", timeout=300)
        before = connector.agent.requests
        start = time.perf_counter()
        exists = connector.exists_many([f"{root}/{i}/job.done" for i in range(folders)])
        exists_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        states = connector.job_states([(f"{root}/{i}", "job") for i in range(folders)])
        states_ms = (time.perf_counter() - start) * 1000
        assert connector.agent.requests == before + 2, "each batch is one round trip"
        assert sum(exists) == states.count("done") == (folders + 1) // 2
        transport = connector.connection.transport()

        def exec_true() -> None:
            channel = transport.open_session()
            channel.exec_command("true")
            channel.recv_exit_status()
            channel.close()

        execs = _timed_ms(exec_true, 5 if folders < 10_000 else 50)
    finally:
        close_agents()
        close_all()
    return {"folders": folders, "connect_ms": round(connect_ms, 1),
            "round_trip_ms_median": round(statistics.median(rtt), 3),
            "round_trip_ms_p95": round(rtt[int(len(rtt) * 0.95)], 3),
            "stat_1_ms_median": round(statistics.median(stat1), 3),
            "exists_batch_ms": round(exists_ms, 1), "job_states_batch_ms": round(states_ms, 1),
            "exec_command_ms_median": round(statistics.median(execs), 1)}


def _run_jobs(workdir: Path, launcher: object, n: int, offset: int, name: str = "jobs") -> dict:
    """One experiment of ``n`` trivial jobs with ``launcher`` (run, or found done): from the first
    ``submit()`` to the end of the ``with`` block (every job ended, a remote job's folder copied
    back); ``copied``: the jobs whose result is in their local folder."""
    from benchtasks import Trivial

    from experimaestro import experiment

    start = time.perf_counter()
    with experiment(workdir, name, launcher=launcher):
        tasks = [Trivial.C(i=offset + i).submit() for i in range(n)]
        submitted = time.perf_counter() - start
    seconds = time.perf_counter() - start
    jobs = [t.__xpm__.job for t in tasks]
    return {"s": round(seconds, 3), "submit_s": round(submitted, 3),
            "done": sum(j.state.value == "done" for j in jobs),
            "copied": sum((j.path / "out.txt").exists() for j in jobs)}


class _OpCounter:
    """Counts the agent's requests by operation (``job_files`` by method) while installed."""

    def __init__(self, agent: object) -> None:
        self.agent, self.counts = agent, Counter()
        self._request = agent.request

        def request(op: str, args: Optional[dict] = None, *rest, **kw):
            key = op if op != "job_files" else f"job_files.{(args or {}).get('method')}"
            self.counts[key] += 1
            return self._request(op, args, *rest, **kw)

        agent.request = request

    def take(self) -> dict:
        counts, self.counts = dict(self.counts), Counter()
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _remote_connector(bench: Bench, workspace: str, **options: object):
    from experimaestro.connectors.ssh import SshConnector

    return SshConnector(bench.host.alias, workspace=workspace, python=bench.host.python,
                        ssh_config=str(bench.host.ssh_config), code=[str(BENCH)], **options)


def _file_creation_ms(folder: Path, count: int = 1000) -> float:
    """Milliseconds to create one small file in ``folder`` as the sync-back does (a temporary
    name, mode, time, rename): what copying many job folders back costs at least, per file."""
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i in range(count):
        tmp, path = folder / f".{i}.tmp", folder / f"{i}.txt"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x" * 100)
        os.close(fd)
        os.chmod(tmp, 0o644)
        os.utime(tmp, ns=(0, 0))
        os.replace(tmp, path)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder)
    return round(seconds * 1000 / count, 3)


def measure_jobs(bench: Bench) -> dict:
    """``jobs`` trivial jobs end to end on the local launcher and on the remote host (the same
    launcher through the SSH connector: jobs run there, each folder copied back when it ends),
    alternated, in this process (one scheduler), each round in fresh workspaces."""
    from experimaestro.connectors.agentclient import close_agents
    from experimaestro.connectors.sshconnection import close_all
    from experimaestro.launchers.direct import DirectLauncher

    n, rounds = bench.jobs, bench.rounds
    local_launcher = DirectLauncher()
    connector = _remote_connector(bench, bench.remote_folder("jobs"))
    counter = _OpCounter(connector.agent)
    remote_launcher = DirectLauncher(connector=connector)
    assert local_launcher.max_jobs == remote_launcher.max_jobs, "the same number of jobs at once"
    figures: dict = {"jobs": n, "max_jobs": local_launcher.max_jobs, "local_s": [], "remote_s": []}
    try:
        # Warm up both (fork servers, staging): not what is measured.
        _run_jobs(bench.local / "warm-local", local_launcher, 2, -10)
        _run_jobs(bench.local / "warm-remote", remote_launcher, 2, -10)
        counter.take()
        for r in range(rounds):
            for side, launcher in (("local", local_launcher), ("remote", remote_launcher)):
                result = _run_jobs(bench.local / f"{side}-{r}", launcher, n, r * n)
                assert result["done"] == n and result["copied"] == n, (side, result)
                figures[f"{side}_s"].append(round(result["s"], 3))
            figures["remote_requests"] = counter.take()
    finally:
        close_agents()
        close_all()
    local, remote = statistics.median(figures["local_s"]), statistics.median(figures["remote_s"])
    figures.update({f"jobs_{n}_local_s": local, f"jobs_{n}_remote_s": remote,
                    "remote_over_local": round(remote / local, 2),
                    "remote_requests_per_job": round(sum(figures["remote_requests"].values()) / n, 1)})
    return figures


def _rerun_child(spec: dict) -> dict:
    """A controller process of its own (``--rerun-child SPEC``): :func:`_run_jobs` with the local
    launcher, or the remote one (``remote_ws``), counting the agent's requests."""
    from experimaestro.connectors.ssh import SshConnector
    from experimaestro.launchers.direct import DirectLauncher

    start = time.perf_counter()
    if spec.get("remote_ws") is None:
        return _run_jobs(Path(spec["workdir"]), DirectLauncher(), spec["n"], spec["offset"], "reuse")
    host = RemoteHost.from_exports(Path(spec["host_dir"]), (Path(spec["host_dir"]) / "env").read_text())
    connector = SshConnector(host.alias, workspace=spec["remote_ws"], python=spec["python"],
                             ssh_config=str(host.ssh_config), code=[str(BENCH)],
                             sync_exclude=spec.get("sync_exclude") or ())
    counter = _OpCounter(connector.agent)
    connected = time.perf_counter() - start
    result = _run_jobs(Path(spec["workdir"]), DirectLauncher(connector=connector), spec["n"],
                      spec["offset"], "reuse")
    result.update(connect_s=round(connected, 3), requests=counter.take())
    return result


def _rerun_in_child(bench: Bench, workdir: Path, n: int, offset: int, remote_ws: Optional[str] = None,
                    **options: object) -> dict:
    """:func:`_run_jobs` in a new controller process (a rerun of the script): what this process's
    scheduler knows plays no part."""
    spec = dict(workdir=str(workdir), n=n, offset=offset, remote_ws=remote_ws, python=bench.host.python,
                host_dir=str(bench.host.directory), **options)
    done = subprocess.run([sys.executable, __file__, "--rerun-child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=3600, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"the rerun's controller failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_reuse(bench: Bench) -> dict:
    """Reuse of ``reuse`` done remote jobs: (b) ``fresh``: a fresh local workspace against the
    remote workspace (another laptop: their states read on the host, their folders copied back);
    (a) ``rerun``: the same again in that workspace (the local copies answer, without the host).
    Side by side: the same jobs rerun on the local launcher, done in a local workspace.

    The done folders are made by the jobs themselves (one real remote job, then its folder copied
    on the host for each of the other identifiers, with each one's own params.json)."""
    from benchtasks import Trivial

    from experimaestro import RunMode, experiment
    from experimaestro.connectors.agentclient import close_agents
    from experimaestro.connectors.sshconnection import close_all
    from experimaestro.launchers.direct import DirectLauncher

    n, offset = bench.reuse, 1_000_000
    remote_ws = bench.remote_folder("reuse")
    connector = _remote_connector(bench, remote_ws)
    remote_launcher = DirectLauncher(connector=connector)
    figures: dict = {"reuse_jobs": n}
    try:
        # One real job on the host: the template of every done folder.
        result = _run_jobs(bench.local / "template", remote_launcher, 1, offset)
        assert result["done"] == 1, result
        # The other jobs' params.json, generated here (the local launcher, a local workspace)...
        local_ws = bench.local / "local-reuse"
        start = time.perf_counter()
        with experiment(local_ws, "gen", run_mode=RunMode.GENERATE_ONLY):
            jobs = [Trivial.C(i=offset + i).submit().__xpm__.job for i in range(n)]
        for job in jobs:
            job.files.done.write_text("")
        figures["setup_local_s"] = round(time.perf_counter() - start, 1)
        template = f"{remote_ws}/{jobs[0].relpath}"
        listing = {str(job.relpath): job.files.params.read_text() for job in jobs[1:]}
        connector.write_atomic(f"{remote_ws}/bench-params.json", json.dumps(listing))
        start = time.perf_counter()
        bench.remote_python(f"""
import json, os, shutil
listing = json.load(open("{remote_ws}/bench-params.json"))
for relpath, params in listing.items():
    folder = os.path.join("{remote_ws}", relpath)
    shutil.copytree("{template}", folder)
    with open(os.path.join(folder, "params.json"), "w") as f:
        f.write(params)
""")
        figures["setup_remote_s"] = round(time.perf_counter() - start, 1)
        copy = bench.local / "template" / jobs[0].relpath
        figures["files_per_job_folder"] = sum(len(f) for _, _, f in os.walk(copy))
        # Each rerun is a controller process of its own, as when the script is run again.
        figures["local_rerun"] = _rerun_in_child(bench, local_ws, n, offset)
        figures["fresh"] = _rerun_in_child(bench, bench.local / "fresh", n, offset, remote_ws)
        # The same without copying the folders back (every file excluded): the reuse check alone.
        figures["fresh_not_copied"] = _rerun_in_child(bench, bench.local / "bare", n, offset, remote_ws,
                                                      sync_exclude=["*"])
        figures["rerun"] = _rerun_in_child(bench, bench.local / "fresh", n, offset, remote_ws)
        for key in ("fresh", "fresh_not_copied", "rerun"):
            figures[f"{key}_requests"] = figures[key].pop("requests")
    finally:
        close_agents()
        close_all()
    figures["local_file_creation_ms"] = _file_creation_ms(bench.local / "files")
    for key in ("local_rerun", "fresh", "fresh_not_copied", "rerun"):
        assert figures[key]["done"] == n, (key, figures[key])
    assert figures["fresh"]["copied"] == n, figures["fresh"]
    assert "start_job" not in figures["fresh_requests"], "nothing was launched"
    figures.update({f"reuse_{n}_local_s": figures["local_rerun"]["s"],
                    f"reuse_{n}_remote_fresh_s": figures["fresh"]["s"],
                    f"reuse_{n}_remote_fresh_not_copied_s": figures["fresh_not_copied"]["s"],
                    f"reuse_{n}_remote_rerun_s": figures["rerun"]["s"]})
    return figures


#: name -> measurement (each independent: its own remote and local folders).
MEASUREMENTS: dict[str, Callable[[Bench], dict]] = {
    "sync_small": measure_sync_small,
    "sync_large": measure_sync_large,
    "stage": measure_stage,
    "connector": measure_connector,
    "jobs": measure_jobs,
    "reuse": measure_reuse,
}


def start_host(directory: Path) -> RemoteHost:
    proc = subprocess.run([str(ROOT / "ssh-test" / "start"), str(directory), "--no-install",
                           f"--owner-pid={os.getpid()}"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        sys.exit(f"bench/ssh.py: ssh-test/start failed (run as root; see ssh-test/README.md): {proc.stderr}")
    return RemoteHost.from_exports(directory, proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(MEASUREMENTS),
                        help=f"comma-separated measurements among {', '.join(MEASUREMENTS)}")
    parser.add_argument("--tiny", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--host-dir", type=Path, help="an ssh-test host already started in this folder")
    parser.add_argument("--local-dir", type=Path, help="where the local copies go (default: a temporary "
                        "folder; file creation costs differ between file systems)")
    parser.add_argument("--rerun-child", help=argparse.SUPPRESS)  # see _rerun_in_child
    parser.add_argument("--reuse-jobs", type=int, help="done remote jobs to reuse (10,000; tiny: 20)")
    parser.add_argument("--rounds", type=int, help="alternated rounds of the jobs measurement (3)")
    args = parser.parse_args()
    if args.rerun_child:
        print(json.dumps(_rerun_child(json.loads(args.rerun_child))))
        return
    only = [name for name in args.only.split(",") if name]
    unknown = [name for name in only if name not in MEASUREMENTS]
    if unknown:
        parser.error(f"unknown measurement(s) {unknown}: choose among {', '.join(MEASUREMENTS)}")

    out: dict = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                             "python": platform.python_version(),
                             "load_average_start": [round(x, 2) for x in os.getloadavg()]},
                 "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    scratch = Path(tempfile.mkdtemp(prefix="xpm-bench-ssh-"))
    local = Path(tempfile.mkdtemp(prefix="xpm-bench-ssh-", dir=args.local_dir))
    out["local_dir"] = str(local)
    own_host = args.host_dir is None
    try:
        if own_host:
            host = start_host(scratch / "host")
        else:
            host = RemoteHost.from_exports(args.host_dir, (args.host_dir / "env").read_text())
        python = host.python
        with host.connect() as client:
            bench = Bench(host, ExecStreams(client, python), local,
                          small_files=20 if args.tiny else 1000, large_mb=2 if args.tiny else 100,
                          folders=200 if args.tiny else 10_000,
                          jobs=4 if args.tiny else 100,
                          rounds=args.rounds or (1 if args.tiny else 3),
                          reuse=args.reuse_jobs or (20 if args.tiny else 10_000))
            for name in only:
                out.update(MEASUREMENTS[name](bench))
            host.run(f"rm -rf {shlex.quote(host.home)}/bench")
    finally:
        if own_host and (scratch / "host").exists():
            subprocess.run([str(ROOT / "ssh-test" / "stop"), str(scratch / "host")], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)
    out["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
