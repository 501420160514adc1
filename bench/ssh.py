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
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

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


#: name -> measurement (each independent: its own remote and local folders).
MEASUREMENTS: dict[str, Callable[[Bench], dict]] = {
    "sync_small": measure_sync_small,
    "sync_large": measure_sync_large,
    "stage": measure_stage,
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
    args = parser.parse_args()
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
                          small_files=20 if args.tiny else 1000, large_mb=2 if args.tiny else 100)
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
