"""Slurm launcher benchmark: prints ONE JSON object.

    .venv/bin/python bench/slurm.py [--jobs 1000] [--chain 20] [--slurm-conf PATH]

Without ``--slurm-conf``, a private single-node cluster is started with ``slurm-test/start`` (root,
free ports, a temporary folder) and stopped at the end. Measured, each in a fresh workspace, with a
controller in its own process (jobs are the tasks of ``bench/benchtasks.py``):

* ``floor_array_s``: a bare ``sbatch --array=0-(N-1) --wrap='python3 -c pass'``, until Slurm has
  ended every task (the floor for N Python jobs on this cluster);
* ``jobs_submitted_s``: N trivial jobs, from the first ``submit()`` until every job is submitted
  (its ``.pid`` written); ``jobs_done_s``: until the experiment has seen them all done;
* ``chain_s`` and ``floor_chain_s``: a chain of dependent jobs, and the same chain of bare
  ``--wrap`` jobs with ``afterok`` (``chain_overhead_per_link_s`` is the difference per link);
* the commands run and the polls made (one ``squeue`` per poll, whatever the number of jobs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
from slurm_cluster import make_cluster_dir, start_cluster, stop_cluster  # noqa: E402

CONTROLLER = """
import json, sys, time
sys.path.insert(0, {bench!r})
from benchtasks import ChainStep, Trivial
from experimaestro import experiment
from experimaestro.launchers.slurm import SlurmLauncher, SlurmOptions

launcher = SlurmLauncher(SlurmOptions(mem="100M"), poll_interval=0.5, max_poll_interval=5.0)
if __name__ == "__main__":
    n, chain = {jobs}, {chain}
    t0 = time.time()
    with experiment({workdir!r}, "bench") as xp:
        if n:
            jobs = [Trivial.C(i=i).submit(launcher=launcher).__xpm__.job for i in range(n)]
        else:
            prev = None
            jobs = []
            for i in range(chain):
                out = ChainStep.C(i=i, prev=prev).submit(launcher=launcher)
                prev = out
            jobs = [j for j in xp.jobs]
        # Only the jobs not seen submitted yet are looked at (stat-ing all of them every 10 ms
        # would compete with the controller's thread for the GIL on a 2-core machine).
        pending = [j.files.pidfile for j in jobs]
        while pending:
            pending = [p for p in pending if not p.exists()]
            time.sleep(0.01)
        submitted = time.time() - t0
    done = time.time() - t0
    counts = dict(launcher.cluster.commands.counts)
    print(json.dumps({{"submitted_s": submitted, "done_s": done, "commands": counts,
                      "polls": launcher.cluster.watcher.polls}}))
"""


def wait_ended(env: dict[str, str], jobids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-j", ",".join(jobids), "-t", "PENDING,RUNNING,COMPLETING,CONFIGURING",
             "-o", "%i"], capture_output=True, text=True, env=env,
        ).stdout
        if not out.strip():
            return
        time.sleep(0.2)
    raise TimeoutError(f"Slurm jobs {jobids} did not end within {timeout} s")


def sbatch(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(["sbatch", "--parsable", "--mem=100M", "-o", "/dev/null", *args],
                         capture_output=True, text=True, env=env, check=True).stdout
    return out.strip().split(";")[0]


def floor_array(env: dict[str, str], n: int, timeout: float) -> float:
    t0 = time.time()
    jobid = sbatch(env, f"--array=0-{n - 1}", "--wrap=python3 -c pass")
    wait_ended(env, [jobid], timeout)
    return time.time() - t0


def floor_chain(env: dict[str, str], n: int, timeout: float) -> float:
    t0 = time.time()
    ids: list[str] = []
    for _ in range(n):
        dep = [f"--dependency=afterok:{ids[-1]}"] if ids else []
        ids.append(sbatch(env, *dep, "--wrap=python3 -c pass"))
    wait_ended(env, ids, timeout)
    return time.time() - t0


def controller(env: dict[str, str], jobs: int, chain: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="xpm-bench-slurm-") as tmp:
        script = Path(tmp) / "controller.py"
        script.write_text(CONTROLLER.format(bench=str(BENCH), jobs=jobs, chain=chain,
                                            workdir=str(Path(tmp) / "ws")))
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"controller failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--chain", type=int, default=20)
    ap.add_argument("--slurm-conf", help="an existing cluster (default: start one)")
    ap.add_argument("--timeout", type=float, default=1200)
    args = ap.parse_args()
    folder = None
    conf = args.slurm_conf
    if conf is None:  # the test clusters' own start (free ports, no accounting)
        folder = make_cluster_dir("bench")
        conf = str(start_cluster(folder, accounting=False).conf)
    env = {**os.environ, "SLURM_CONF": conf, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), str(BENCH), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_average_start": list(os.getloadavg())},
        "jobs": args.jobs, "chain": args.chain,
    }
    try:
        result["floor_array_s"] = floor_array(env, args.jobs, args.timeout)
        run = controller(env, args.jobs, 0, args.timeout)
        result.update(jobs_submitted_s=run["submitted_s"], jobs_done_s=run["done_s"],
                      jobs_commands=run["commands"], jobs_polls=run["polls"])
        result["jobs_done_vs_floor"] = run["done_s"] / result["floor_array_s"]
        result["floor_chain_s"] = floor_chain(env, args.chain, args.timeout)
        chain = controller(env, 0, args.chain, args.timeout)
        result.update(chain_s=chain["done_s"], chain_commands=chain["commands"],
                      chain_polls=chain["polls"])
        result["chain_overhead_per_link_s"] = (
            (chain["done_s"] - result["floor_chain_s"]) / max(1, args.chain)
        )
        result["machine"]["load_average_end"] = list(os.getloadavg())
    finally:
        if folder is not None:
            stop_cluster(folder)
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
