"""Web monitor benchmark: prints ONE JSON object.

    .venv/bin/python bench/monitor.py [--jobs 10000] [--idle-window 20]
    .venv/bin/python bench/monitor.py --tiny          # small sizes, seconds (tests/test_bench.py)

1. A workspace of N job folders in one experiment is written directly (params.json from real
   configurations, markers, pid records; 70 % done, 10 % failed, 20 % not started, the newest).
2. ``index_scan_s``: building the monitor's index of the workspace (what a first page waits for
   after the monitor slept without a page).
3. With the monitor serving it, in headless chromium (Debian's, through /usr/bin/chromedriver):
   ``first_paint_ms``: from asking for the experiment's page to its first rows shown (median of
   several loads); ``update_ms``: from writing a job's ``.done`` marker to its row showing "done"
   on the open page (median over several jobs). ``api_jobs_ms``: one page of the job list over HTTP.
4. ``idle_controller_cpu_pct``: a controller running ``experiment(..., port=0)`` in that workspace,
   waiting on one job, no page open: its CPU over ``--idle-window`` seconds,
   measured after the monitor's idle grace period (the first page's watches are gone).
   ``startup_cpu_s`` is its CPU before that (imports, submission, the monitor's first scan).
   The same controller without the monitor gives ``idle_controller_cpu_pct_without_monitor``;
   ``idle_controller`` also has both with a job printing 100 lines a second (the scheduler itself
   watches its running job's folder, which such a job keeps writing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for path in (str(BENCH), str(ROOT), str(ROOT / "tests" / "helpers")):
    if path not in sys.path:
        sys.path.insert(0, path)


def build_workspace(root: Path, n: int) -> dict[str, Any]:
    """N job folders of ``benchtasks.Trivial`` linked from experiment ``bench``."""
    from benchtasks import Trivial

    from experimaestro.connectors.process import PidRecord
    from experimaestro.core.serialization import dumps

    start = time.perf_counter()
    links = root / "experiments" / "bench" / "jobs"
    base = time.time() - n - 3600
    keys = []
    for i in range(n):
        task = Trivial.C(i=i)
        info = task.__xpm__
        typeid = info.xpmtype.typeid
        identifier = info.identifier.hex() if hasattr(info, "identifier") else None
        if identifier is None:  # pragma: no cover
            raise RuntimeError("no identifier")
        path = root / "jobs" / typeid / identifier
        path.mkdir(parents=True, exist_ok=True)
        (path / "params.json").write_text(dumps(task, job=path, workspace=root))
        submitted = base + i
        os.utime(path / "params.json", (submitted, submitted))
        name = typeid.rsplit(".", 1)[-1]
        if i < int(n * 0.8):
            record = PidRecord(pid=1, create_time=1.0, host="bench", started=submitted + 1)
            (path / f"{name}.pid").write_text(record.to_json())
            marker = path / (f"{name}.failed" if i % 8 == 0 else f"{name}.done")
            marker.write_text('{"code": 1, "reason": "failed"}' if i % 8 == 0 else "")
            os.utime(marker, (submitted + 30, submitted + 30))
        (links / typeid).mkdir(parents=True, exist_ok=True)
        os.symlink(path, links / typeid / identifier)
        keys.append(f"{typeid}/{identifier}")
    return {"keys": keys, "build_s": time.perf_counter() - start}


def browser() -> Any:
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1300,900"):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait_for(predicate: Any, timeout: float = 60.0) -> Any:
    """The first true value of ``predicate()``, checked every 2 ms (tests/helpers/polling.py)."""
    from polling import poll

    return poll(predicate, timeout, interval=0.002)


def page_figures(root: Path, keys: list[str], loads: int, updates: int) -> dict[str, Any]:
    from experimaestro.monitor import serve_workspace

    result: dict[str, Any] = {}
    server = serve_workspace(root, port=0)
    try:
        base = f"http://127.0.0.1:{server.port}"
        server.index.ensure_fresh()  # the monitor's own first scan, started with it
        start = time.perf_counter()
        server.index.scan()
        result["index_scan_s"] = round(time.perf_counter() - start, 3)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            with urllib.request.urlopen(f"{base}/api/jobs?experiment=bench&limit=100") as response:
                data = json.loads(response.read())
            times.append((time.perf_counter() - start) * 1000)
        assert data["total"] == len(keys), data["total"]
        result["api_jobs_ms"] = round(statistics.median(times), 1)
        driver = browser()
        try:
            paints = []
            for i in range(loads):
                driver.get("about:blank")
                start = time.perf_counter()
                driver.get(f"{base}/?load={i}#/xp/bench")
                wait_for(lambda: driver.execute_script(
                    "return document.querySelectorAll('#jobs tbody tr[data-key]').length >= 100"))
                paints.append((time.perf_counter() - start) * 1000)
            result["first_paint_ms"] = round(statistics.median(paints), 1)
            result["first_paint_all_ms"] = [round(p) for p in paints]
            wait_for(lambda: driver.execute_script(
                "return document.getElementById('live').textContent === 'live'"))
            # The newest jobs (shown first) have not started: give each a .done marker.
            delays = []
            for key in reversed(keys[-updates:]):
                driver.execute_script(
                    """const key = arguments[0];
                    window.doneAt = null;
                    new MutationObserver((changes, observer) => {
                      const row = document.querySelector(`tr[data-key="${key}"]`);
                      if (row && row.dataset.state === 'done') {
                        window.doneAt = Date.now(); observer.disconnect();
                      }
                    }).observe(document.getElementById('jobs'),
                               {subtree: true, childList: true, attributes: true});""",
                    key,
                )
                name = key.split("/")[0].rsplit(".", 1)[-1]
                written = time.time()
                (root / "jobs" / key / f"{name}.done").write_text("")
                seen = wait_for(lambda: driver.execute_script("return window.doneAt"))
                delays.append(seen - written * 1000)
            result["update_ms"] = round(statistics.median(delays), 1)
            result["update_all_ms"] = [round(d) for d in delays]
        finally:
            driver.quit()
    finally:
        server.stop()
    return result


CONTROLLER = """
import sys, time
from experimaestro import Param, Task, experiment


class Chatty(Task):
    gate: Param[str]
    lines: Param[int]

    def execute(self):
        from pathlib import Path
        while not Path(self.gate).exists():
            for _ in range(self.lines):
                print("a line of log", flush=True)
            time.sleep(0.01)


if __name__ == "__main__":
    port = None if sys.argv[4] == "off" else 0
    with experiment(sys.argv[1], "idle-" + sys.argv[4], port=port) as xp:
        if xp.monitor is not None:
            xp.monitor.index.idle_grace = float(sys.argv[3])
        Chatty.C(gate=sys.argv[2], lines=int(sys.argv[5])).submit()
"""


def idle_controller(
    root: Path, window: float, grace: float, monitor: str, lines: int
) -> dict[str, Any]:
    """The CPU of a controller waiting on its job (which prints ``lines`` lines every 10 ms);
    ``monitor``: "on" or "off"."""
    import psutil

    script = root.parent / "idle_controller.py"
    script.write_text(textwrap.dedent(CONTROLLER))
    gate = root.parent / f"gate-{monitor}-{lines}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(root.parent)]))
    process = subprocess.Popen(
        [sys.executable, str(script), str(root), str(gate), str(grace), monitor, str(lines)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        proc = psutil.Process(process.pid)
        out = root / "experiments" / f"idle-{monitor}" / "jobs"
        wait_for(lambda: any(p.resolve().joinpath("chatty.pid").exists() for p in out.glob("*/*")),
                 timeout=120)
        time.sleep(grace + 2)  # the monitor's watches from its start are dropped by then
        cpu = proc.cpu_times()
        before = cpu.user + cpu.system
        start = time.monotonic()
        time.sleep(window)
        cpu = proc.cpu_times()
        after = cpu.user + cpu.system
        elapsed = time.monotonic() - start
        threads = proc.num_threads()
    finally:
        gate.touch()
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
    return {
        "cpu_pct": round(100 * (after - before) / elapsed, 2),
        "startup_cpu_s": round(before, 2),
        "window_s": round(elapsed, 1),
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--idle-window", type=float, default=20.0)
    parser.add_argument("--grace", type=float, default=5.0,
                        help="the monitor's idle grace period in the idle controller (30 s by default "
                             "in a real one; shortened here so the run is short)")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    if args.tiny:
        args.jobs, args.loads, args.updates, args.idle_window, args.grace = 200, 2, 2, 1.0, 0.3
    result: dict[str, Any] = {
        "jobs": args.jobs,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg_start": os.getloadavg()[0]},
    }
    with tempfile.TemporaryDirectory(prefix="xpm-bench-monitor-") as tmp:
        root = Path(tmp) / "ws"
        built = build_workspace(root, args.jobs)
        result["workspace_build_s"] = round(built["build_s"], 2)
        result.update(page_figures(root, built["keys"], args.loads, args.updates))
        idle = {}
        for lines in (0,) if args.tiny else (0, 1):
            for monitor in ("on", "off"):
                idle[f"monitor_{monitor}_{lines * 100}_lines_per_s"] = idle_controller(
                    root, args.idle_window, args.grace, monitor, lines
                )
        result["idle_controller_cpu_pct"] = idle["monitor_on_0_lines_per_s"]["cpu_pct"]
        result["idle_controller_cpu_pct_without_monitor"] = idle["monitor_off_0_lines_per_s"]["cpu_pct"]
        result["idle_controller"] = idle
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
