"""Local scheduler benchmark: prints ONE JSON object (see the keys in ``main``).

    .venv/bin/python bench/local.py [--only jobs_500,runner,reuse,gap,chain,idle] [--chain N]
    .venv/bin/python bench/local.py --tiny                  # every measurement, small (seconds)
    .venv/bin/python bench/local.py --only none --compare-python /tmp/xpm270/bin/python

Every measurement runs its controller as a child process (``bench/local.py --scenario ...``), in a
fresh temporary workspace, bounded by a timeout. Jobs are the tasks of ``bench/benchtasks.py``.

``--compare-python PY`` adds a ``side_by_side`` object: the measurements that only need the public
API shared with experimaestro 2.x (``experiment``, ``Task.C(...).submit()``, ``__xpm__.job``,
``task_outputs``) run with this repository and with the experimaestro installed for ``PY``, one
after the other in the same run: N trivial jobs end to end and the CPU of each job process, a rerun
finding those N done jobs, the gap in a chain of dependent tasks, and ``bench/identifier.py``.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


# ------------------------------------------------------------------------------------------------
# Scenarios (each runs in its own controller process)
# ------------------------------------------------------------------------------------------------


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _experiment(workdir: Path, name: str):
    """``experiment(workdir, name)`` of whichever experimaestro is imported (2.x: without its
    banner about carbon tracking, which is not installed)."""
    import inspect

    from experimaestro import experiment

    kwargs = {}
    if "no_environmental_impact" in inspect.signature(experiment).parameters:
        kwargs["no_environmental_impact"] = True
    return experiment(workdir, name, **kwargs)


def _state(job) -> str:
    """The job's state as a lower-case word ("done", "error"...), with either version's API."""
    value = getattr(job.state, "value", None)
    return value if isinstance(value, str) else str(getattr(job.state, "name", job.state)).lower()


def scenario_jobs(workdir: Path, n: int) -> dict:
    import experimaestro
    from benchtasks import Trivial

    cpu0 = _cpu_s()
    with _experiment(workdir, "jobs"):
        t0 = time.perf_counter()
        tasks = [Trivial.C(i=i).submit() for i in range(n)]
        t_submit = time.perf_counter() - t0
    wall = time.perf_counter() - t0
    jobs = [t.__xpm__.job for t in tasks]
    cpu = []
    for job in jobs:
        try:
            cpu.append(json.loads((job.path / "cpu.json").read_text())["cpu_ms"])
        except (OSError, ValueError):
            pass
    starts = sorted(j.started_at for j in jobs if getattr(j, "started_at", None))
    ends = sorted(j.ended_at for j in jobs if getattr(j, "ended_at", None))
    return {
        "wall_s": wall,
        "submit_s": t_submit,
        "done": sum(1 for j in jobs if _state(j) == "done"),
        "cpu_per_job_ms": statistics.mean(cpu) if cpu else None,
        "cpu_per_job_ms_median": statistics.median(cpu) if cpu else None,
        "controller_cpu_s": _cpu_s() - cpu0,
        "first_start_to_last_end_s": (ends[-1] - starts[0]) if starts and ends else None,
        "experimaestro_imported_from": str(Path(experimaestro.__file__).parent),
    }


def scenario_runner(workdir: Path, n: int) -> dict:
    """One generated job dir, then ``python -m experimaestro run`` N times as a direct child."""
    from experimaestro import RunMode, experiment
    from benchtasks import Trivial

    with experiment(workdir, "gen", run_mode=RunMode.GENERATE_ONLY):
        job = Trivial.C(i=0).submit().__xpm__.job
    params = job.path / "params.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)

    def measure(cmd: list[str], reps: int, before=None) -> tuple[float, float]:
        cpus, walls = [], []
        for _ in range(reps):
            if before:
                before()
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            w0 = time.perf_counter()
            subprocess.run(cmd, cwd=job.path, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60, check=True)
            walls.append(time.perf_counter() - w0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000)
        return statistics.mean(cpus), statistics.mean(walls) * 1000

    def reset() -> None:
        for name in (job.files.done, job.files.failed):
            try:
                name.unlink()
            except FileNotFoundError:
                pass

    py = sys.executable
    runner_cpu, runner_wall = measure([py, "-m", "experimaestro", "run", str(params)], n, reset)
    assert job.files.done.exists(), "the runner did not write the done marker"
    # The same without any bytecode cache for experimaestro's editable sources (the sandbox's
    # PYTHONDONTWRITEBYTECODE=1 with no __pycache__): every module compiled in every job.
    saved = dict(env)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONPYCACHEPREFIX", None)
    nopyc_cpu, nopyc_wall = measure([py, "-m", "experimaestro", "run", str(params)],
                                    max(1, n // 4), reset)
    env.clear()
    env.update(saved)
    reps = min(10, n)
    bare_cpu, bare_wall = measure([py, "-c", "pass"], reps)
    site_cpu, site_wall = measure([py, "-S", "-c", "pass"], reps)
    imp_cpu, imp_wall = measure([py, "-c", "import experimaestro"], reps)
    # Where the runner's import time goes (cumulative us of the top-level imports).
    reset()
    proc = subprocess.run([py, "-X", "importtime", "-m", "experimaestro", "run", str(params)],
                          cwd=job.path, env=env, capture_output=True, text=True, timeout=60)
    top = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|")
        top.append((int(cum_us), int(self_us), name.rstrip()))
    # Top-level imports have a single leading space in -X importtime's output.
    roots = sorted(((c, n.strip()) for c, s, n in top if not n.startswith("  ")), reverse=True)[:8]
    heavy = sorted(((c, n.strip()) for c, s, n in top), reverse=True)[:20]
    return {
        "runner_cpu_ms": runner_cpu,
        "runner_wall_ms": runner_wall,
        "runner_cpu_ms_without_bytecode_cache": nopyc_cpu,
        "runner_wall_ms_without_bytecode_cache": nopyc_wall,
        "python_bare_cpu_ms": bare_cpu,
        "python_nosite_cpu_ms": site_cpu,
        "python_import_experimaestro_cpu_ms": imp_cpu,
        "python_import_experimaestro_wall_ms": imp_wall,
        "runner_import_top_ms": {n: round(c / 1000, 1) for c, n in roots},
        "runner_import_heaviest_ms": {n: round(c / 1000, 1) for c, n in heavy},
        "runner_modules_imported": len(top),
    }


def scenario_generate(workdir: Path, n: int) -> dict:
    """Create n job folders with GENERATE_ONLY, then write their .done markers ourselves."""
    from experimaestro import RunMode, experiment
    from benchtasks import Trivial

    t0 = time.perf_counter()
    with experiment(workdir, "gen", run_mode=RunMode.GENERATE_ONLY):
        jobs = [Trivial.C(i=i).submit().__xpm__.job for i in range(n)]
    t_gen = time.perf_counter() - t0
    for job in jobs:
        job.files.done.write_text("")
    return {"generate_s": t_gen, "markers_s": time.perf_counter() - t0 - t_gen}


def scenario_reuse(workdir: Path, n: int) -> dict:
    from benchtasks import Trivial

    cpu0 = _cpu_s()
    with _experiment(workdir, "reuse"):
        t0 = time.perf_counter()
        tasks = [Trivial.C(i=i).submit() for i in range(n)]
        t_submit = time.perf_counter() - t0
    wall = time.perf_counter() - t0
    done = sum(1 for t in tasks if _state(t.__xpm__.job) == "done")
    launched = sum(1 for t in tasks if getattr(t.__xpm__.job, "started_at", None) is not None)
    return {"wall_s": wall, "submit_s": t_submit, "done": done, "launched": launched,
            "controller_cpu_s": _cpu_s() - cpu0}


def scenario_chain(workdir: Path, n: int) -> dict:
    from benchtasks import ChainStep

    result: dict = {"n": n}
    t0 = time.perf_counter()
    jobs = []
    try:
        with _experiment(workdir, "chain"):
            prev = None
            for i in range(n):
                step = ChainStep.C(i=i, prev=prev)
                prev = step.submit()
                jobs.append(step.__xpm__.job)
            result["submit_s"] = time.perf_counter() - t0
            print(json.dumps({"progress": "submitted", "submit_s": result["submit_s"]}),
                  file=sys.stderr, flush=True)
    except RecursionError as exc:
        result["recursion_error"] = str(exc)[:200]
    result["wall_s"] = time.perf_counter() - t0
    times = []
    for job in jobs:
        try:
            times.append(json.loads((job.path / "times.json").read_text()))
        except (OSError, ValueError):
            times.append(None)
    gaps = [
        (times[i]["start"] - times[i - 1]["end"]) * 1000
        for i in range(1, len(times)) if times[i] and times[i - 1]
    ]
    cgaps = [
        (jobs[i].started_at - jobs[i - 1].ended_at) * 1000
        for i in range(1, len(jobs))
        if getattr(jobs[i], "started_at", None) and getattr(jobs[i - 1], "ended_at", None)
    ]
    result["done"] = sum(1 for j in jobs if _state(j) == "done")
    if gaps:
        result["gap_median_ms"] = statistics.median(gaps)
        result["gap_min_ms"] = min(gaps)
        result["gap_max_ms"] = max(gaps)
        result["gap_first_ms"] = gaps[:3]
        result["gap_last_ms"] = gaps[-3:]
    if cgaps:
        result["controller_gap_median_ms"] = statistics.median(cgaps)
    # Breakdown of the gap, per link i-1 -> i (medians, ms):
    #  task_end_to_done_marker: end of execute() (task's clock) -> mtime of <name>.done
    #  done_marker_to_reaped:   <name>.done written -> the controller saw the process end (ended_at)
    #  controller_relaunch:     ended_at(i-1) -> started_at(i) (scheduler hop, params.json, script,
    #                           Popen, pid file: everything the controller does)
    #  runner_startup:          started_at(i) -> first line of execute() in job i
    parts: dict[str, list[float]] = {k: [] for k in (
        "task_end_to_done_marker", "done_marker_to_reaped", "controller_relaunch",
        "runner_startup")}
    for i in range(1, len(jobs)):
        a, b = jobs[i - 1], jobs[i]
        if not (times[i] and times[i - 1] and getattr(a, "ended_at", None)
                and getattr(b, "started_at", None)):
            continue
        try:
            done_mtime = a.files.done.stat().st_mtime
        except OSError:
            continue
        parts["task_end_to_done_marker"].append((done_mtime - times[i - 1]["end"]) * 1000)
        parts["done_marker_to_reaped"].append((a.ended_at - done_mtime) * 1000)
        parts["controller_relaunch"].append((b.started_at - a.ended_at) * 1000)
        parts["runner_startup"].append((times[i]["start"] - b.started_at) * 1000)
    result["gap_breakdown_median_ms"] = {
        k: round(statistics.median(v), 2) for k, v in parts.items() if v}
    return result


def scenario_idle(workdir: Path, n: int, seconds: float = 20.0) -> dict:
    from benchtasks import Sleeper

    with _experiment(workdir, "idle"):
        for i in range(n):
            Sleeper.C(i=i, seconds=seconds).submit()
    return {"ok": True}


SCENARIOS = {
    "jobs": scenario_jobs,
    "runner": scenario_runner,
    "generate": scenario_generate,
    "reuse": scenario_reuse,
    "chain": scenario_chain,
    "idle": scenario_idle,
}


# ------------------------------------------------------------------------------------------------
# Orchestration
# ------------------------------------------------------------------------------------------------


def _cmd(scenario: str, workdir: Path, n: int, profile: str | None = None,
         python: str | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    cmd = [python or sys.executable]
    if profile:
        cmd += ["-m", "cProfile", "-o", profile]
    return cmd + [str(Path(__file__).resolve()), "--scenario", scenario,
                  "--workdir", str(workdir), "--n", str(n), *extra]


def _parse(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise ValueError(f"no JSON in output: {stdout[-500:]!r}")


#: The environment of the controllers (and so of their jobs, which inherit it).
ENV = dict(os.environ)


def setup_bytecode_cache(enabled: bool) -> str:
    """Users' installs have .pyc files; this sandbox sets PYTHONDONTWRITEBYTECODE=1, so every job
    process would compile experimaestro's (editable) sources again. By default the benchmark keeps
    a bytecode cache out of the source tree (PYTHONPYCACHEPREFIX), warmed before measuring."""
    if not enabled:
        return "bytecode cache: environment as is (PYTHONDONTWRITEBYTECODE=%s)" % os.environ.get(
            "PYTHONDONTWRITEBYTECODE")
    prefix = os.path.join(tempfile.gettempdir(), "xpmbench-pycache")
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = prefix
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "experimaestro"),
                    str(BENCH)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=300)
    subprocess.run([sys.executable, "-c", "import experimaestro.runner, "
                    "experimaestro.core.serialization, experimaestro.scheduler.scheduler, "
                    "experimaestro.launchers.direct, benchtasks, psutil, filelock, watchdog"],
                   env=dict(ENV, PYTHONPATH=str(BENCH)), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)
    return (f"bytecode cache: PYTHONPYCACHEPREFIX={prefix} (warmed), PYTHONDONTWRITEBYTECODE "
            "removed, for controllers and jobs (as with a normal install); --no-pyc-cache to "
            "measure the sandbox's environment as is")


def run_scenario(scenario: str, workdir: Path, n: int, timeout: float,
                 python: str | None = None) -> dict:
    """Run one scenario in its own controller process (with ``python``: that interpreter and
    the experimaestro installed for it; its job processes find bench/ through PYTHONPATH)."""
    profile = os.environ.get("BENCH_PROFILE_DIR")
    prof = os.path.join(profile, f"{scenario}.prof") if profile and not python else None
    env = ENV
    if python:
        env = dict(ENV, PYTHONPATH=os.pathsep.join(
            p for p in (str(BENCH), ENV.get("PYTHONPATH", "")) if p))
    try:
        proc = subprocess.run(_cmd(scenario, workdir, n, prof, python), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              cwd=tempfile.gettempdir() if python else str(ROOT), env=env)
    except subprocess.TimeoutExpired as exc:
        return {"error": f"timeout after {timeout} s", "timed_out": True,
                "stderr_tail": (exc.stderr or b"")[-800:].decode("utf-8", "replace")
                if isinstance(exc.stderr, bytes) else (exc.stderr or "")[-800:]}
    if proc.returncode != 0:
        return {"error": f"exit code {proc.returncode}", "stderr_tail": proc.stderr[-1500:]}
    return _parse(proc.stdout)


class _Workspace:
    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="xpmbench-"))
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def bench_idle(n_jobs: int = 2, window: float = 15.0, seconds: float = 20.0) -> dict:
    import psutil

    with _Workspace() as ws:
        proc = subprocess.Popen(_cmd("idle", ws, n_jobs, extra=("--seconds", str(seconds))),
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                                cwd=str(ROOT), env=ENV)
        try:
            p = psutil.Process(proc.pid)
            deadline = time.monotonic() + 15
            # Wait until both jobs are running (their pid files exist), then settle a little.
            while time.monotonic() < deadline:
                if len(glob.glob(str(ws / "jobs" / "*" / "*" / "*.pid"))) >= n_jobs:
                    break
                time.sleep(0.05)
            time.sleep(min(1.0, window))
            c0 = p.cpu_times()
            w0 = time.monotonic()
            threads = p.num_threads()
            time.sleep(window)
            c1 = p.cpu_times()
            w1 = time.monotonic()
            cpu = (c1.user - c0.user) + (c1.system - c0.system)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return {
            "idle_controller_cpu_pct": 100.0 * cpu / (w1 - w0),
            "idle_window_s": w1 - w0,
            "idle_controller_threads": threads,
            "idle_exit_code": proc.returncode,
        }


def _version_and_warm_up(python: str | None, jobs: int, gap: int, tiny: bool) -> dict:
    """Which experimaestro ``python`` imports, and a warm-up run (bytecode of everything the
    controller and its jobs import)."""
    label = python or sys.executable
    version = subprocess.run(
        [label, "-c", "import importlib.metadata as m; print(m.version('experimaestro'))"],
        capture_output=True, text=True, timeout=60, env=ENV, cwd=tempfile.gettempdir())
    res = {"python_path": label,
           "experimaestro": version.stdout.strip() or version.stderr.strip()[-200:]}
    with _Workspace() as ws:
        warm = run_scenario("jobs", ws, 2, timeout=300, python=python)
    if "error" in warm:
        res["error"] = f"warm-up failed: {warm['error']}"
        res["stderr_tail"] = warm.get("stderr_tail")
    return res


def _jobs_and_rerun(python: str | None, jobs: int, gap: int, tiny: bool) -> dict:
    """N trivial jobs end to end (and the CPU of each job process), then a rerun finding them."""
    res: dict = {}
    with _Workspace() as ws:
        r = run_scenario("jobs", ws, jobs, timeout=1200, python=python)
        res[f"jobs_{jobs}_s"] = r.get("wall_s")
        res["jobs_done"] = r.get("done")
        res["cpu_per_job_ms"] = r.get("cpu_per_job_ms")
        res["cpu_per_job_ms_median"] = r.get("cpu_per_job_ms_median")
        res["details_jobs"] = r
        if "error" not in r:
            again = run_scenario("reuse", ws, jobs, timeout=600, python=python)
            res[f"rerun_{jobs}_s"] = again.get("wall_s")
            res["rerun_launched"] = again.get("launched")
            res["details_rerun"] = again
    return res


def _gap(python: str | None, jobs: int, gap: int, tiny: bool) -> dict:
    """The median gap from a job's end to its dependent's start, in a chain of ``gap`` tasks."""
    with _Workspace() as ws:
        r = run_scenario("chain", ws, gap, timeout=600, python=python)
    return {"gap_median_ms": r.get("gap_median_ms"), "gap_done": r.get("done"),
            "details_gap": {k: v for k, v in r.items() if k != "gap_breakdown_median_ms"}}


def _identifier(python: str | None, jobs: int, gap: int, tiny: bool) -> dict:
    """bench/identifier.py with ``python`` (and the experimaestro installed for it)."""
    cmd = [python or sys.executable, str(BENCH / "identifier.py")]
    cmd += (["--installed"] if python else []) + (["--tiny"] if tiny else [])
    ident = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV,
                           stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    try:
        return {"identifier": _parse(ident.stdout)}
    except ValueError:
        return {"identifier": {"error": f"exit code {ident.returncode}",
                               "stderr_tail": ident.stderr[-1500:]}}


def side_by_side(python: str, jobs: int, gap: int, tiny: bool) -> dict:
    """This repository and ``python``'s experimaestro, measured the same way in the same run.

    Each measurement runs for both, one right after the other, before the next measurement:
    a change of the machine's load (it is shared) then weighs on both sides alike.
    """
    sides = {"this": None, "compare": python}
    out: dict = {"jobs": jobs, "gap_chain": gap, "this": {}, "compare": {}}
    for step in (_version_and_warm_up, _jobs_and_rerun, _gap, _identifier):
        for name, py in sides.items():
            if "error" in out[name]:
                continue
            out[name].setdefault("load_average", {})[step.__name__.strip("_")] = [
                round(x, 2) for x in os.getloadavg()]
            out[name].update(step(py, jobs, gap, tiny))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario")
    ap.add_argument("--workdir")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--only", default="jobs_500,runner,reuse,gap,chain,idle")
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--reuse", type=int, default=10000)
    ap.add_argument("--chain", type=int, default=2000)
    ap.add_argument("--gap", type=int, default=30)
    ap.add_argument("--runner-reps", type=int, default=20)
    ap.add_argument("--chain-timeout", type=float, default=240.0)
    ap.add_argument("--no-pyc-cache", action="store_true")
    ap.add_argument("--idle-window", type=float, default=15.0)
    ap.add_argument("--seconds", type=float, default=20.0, help=argparse.SUPPRESS)
    ap.add_argument("--tiny", action="store_true",
                    help="every measurement on tiny sizes, in seconds (to check the script works)")
    ap.add_argument("--compare-python", metavar="PYTHON",
                    help="also measure with the experimaestro installed for this Python "
                         "(e.g. a venv with experimaestro 2.7.0), side by side")
    ap.add_argument("--compare-jobs", type=int, default=500,
                    help="number of trivial jobs of the side-by-side run")
    ap.add_argument("--compare-gap", type=int, default=30,
                    help="length of the chain of the side-by-side gap")
    args = ap.parse_args()

    if args.scenario:
        if args.scenario == "idle":
            result = scenario_idle(Path(args.workdir), args.n, args.seconds)
        else:
            result = SCENARIOS[args.scenario](Path(args.workdir), args.n)
        print(json.dumps(result))
        return
    if args.tiny:
        args.jobs, args.reuse, args.chain, args.gap, args.runner_reps = 4, 20, 5, 3, 1
        args.idle_window, args.chain_timeout = 0.3, 60.0
        args.compare_jobs, args.compare_gap = 3, 3

    only = set(args.only.split(","))
    out: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "xpm_max_jobs": os.environ.get("XPM_MAX_JOBS"),
            # Others' load changes the figures: the 1, 5 and 15 min load averages, before and after.
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "notes": [],
    }
    out["notes"].append(setup_bytecode_cache(not args.no_pyc_cache))
    details: dict = {}

    if "jobs_500" in only:
        with _Workspace() as ws:
            r = run_scenario("jobs", ws, args.jobs, timeout=600)
        details["jobs"] = r
        out[f"jobs_{args.jobs}_s"] = r.get("wall_s")
        out["cpu_per_job_ms"] = r.get("cpu_per_job_ms")
        out["notes"].append(
            "cpu_per_job_ms: os.times() user+sys of the job process at the end of execute() "
            "(misses interpreter teardown); see runner_cpu_ms for the whole process")

    if "runner" in only:
        with _Workspace() as ws:
            r = run_scenario("runner", ws, args.runner_reps, timeout=300)
        details["runner"] = r
        out["runner_cpu_ms"] = r.get("runner_cpu_ms")

    if "reuse" in only:
        with _Workspace() as ws:
            g = run_scenario("generate", ws, args.reuse, timeout=900)
            r = run_scenario("reuse", ws, args.reuse, timeout=300) if "error" not in g else g
        details["reuse_generate"] = g
        details["reuse"] = r
        out[f"reuse_{args.reuse}_s"] = r.get("wall_s")
        out["notes"].append(
            f"reuse: the {args.reuse} done jobs were created by a GENERATE_ONLY experiment "
            "(params.json) whose <name>.done markers were then written by the benchmark; a second "
            "controller then submits them all and leaves the block (the timed part)")

    if "gap" in only:
        with _Workspace() as ws:
            r = run_scenario("chain", ws, args.gap, timeout=300)
        details["gap"] = r
        out["gap_median_ms"] = r.get("gap_median_ms")
        out["notes"].append(
            "gap: start(i) - end(i-1), time.time() written by the tasks themselves, over a chain "
            f"of {args.gap} tasks (task i takes task i-1's output as a Param)")

    if "chain" in only:
        with _Workspace() as ws:
            t0 = time.perf_counter()
            r = run_scenario("chain", ws, args.chain, timeout=args.chain_timeout)
            elapsed = time.perf_counter() - t0
            if r.get("timed_out"):
                done = len(glob.glob(str(ws / "jobs" / "*" / "*" / "*.done")))
                # Throughput early and late in the chain (from the tasks' own timestamps).
                stamps = []
                for f in glob.glob(str(ws / "jobs" / "*" / "*" / "times.json")):
                    try:
                        stamps.append(json.loads(Path(f).read_text()))
                    except (OSError, ValueError):
                        pass
                stamps.sort(key=lambda d: d["i"])
                if len(stamps) > 250:
                    def rate(seg):
                        return (seg[-1]["end"] - seg[0]["end"]) / (len(seg) - 1) * 1000
                    r["ms_per_job_first_100"] = rate(stamps[:101])
                    r["ms_per_job_last_100"] = rate(stamps[-101:])
                r["done_at_timeout"] = done
                r["elapsed_s"] = elapsed
                r["submitted"] = '"progress": "submitted"' in (r.get("stderr_tail") or "")
                if "ms_per_job_last_100" in r and done < args.chain:
                    r["estimated_total_s"] = elapsed + (args.chain - done) * r[
                        "ms_per_job_last_100"] / 1000
                out["notes"].append(
                    f"chain: stopped after {args.chain_timeout:.0f} s (budget) with "
                    f"{done}/{args.chain} jobs done (submission of all {args.chain} went through "
                    f"without RecursionError: {r['submitted']}); the per-job cost grows along "
                    f"the chain (params.json of job i holds the whole upstream graph): "
                    f"{r.get('ms_per_job_first_100', 0):.0f} ms/job for the first 100, "
                    f"{r.get('ms_per_job_last_100', 0):.0f} ms/job for the last 100; estimated "
                    f"total {r.get('estimated_total_s', 0):.0f} s")
        details["chain"] = r
        out[f"chain_{args.chain}_s"] = r.get("wall_s")
        out[f"chain_{args.chain}_ok"] = bool(
            not r.get("error") and "recursion_error" not in r and r.get("done") == args.chain)
        out[f"chain_{args.chain}_done"] = r.get("done", r.get("done_at_timeout"))
        if r.get("timed_out"):
            out[f"chain_{args.chain}_partial_s"] = r.get("elapsed_s")
            out[f"chain_{args.chain}_estimated_s"] = r.get("estimated_total_s")

    if "idle" in only:
        # The sleeping jobs outlive the window (the wait for them to start, then 2 windows).
        r = bench_idle(window=args.idle_window,
                       seconds=args.idle_window * 2 + 0.6 if args.tiny else 20.0)
        details["idle"] = r
        out["idle_controller_cpu_pct"] = r.get("idle_controller_cpu_pct")
        out["notes"].append("idle: psutil cpu_times() of the controller over the window; its "
                            "resolution is one clock tick (10 ms), i.e. 0.07 % of 15 s")

    if args.compare_python:
        out["side_by_side"] = side_by_side(args.compare_python, args.compare_jobs,
                                           args.compare_gap, args.tiny)
        out["notes"].append(
            "side_by_side: the same scenarios, one version after the other in this run; "
            "each version runs its jobs with its own local launcher defaults")

    out["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out["targets"] = {"jobs_500_s": 25, "cpu_per_job_ms": 150, "reuse_10000_s": 5,
                      "gap_median_ms": 50, "idle_controller_cpu_pct": 1}
    out["details"] = details
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
