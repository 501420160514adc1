"""The benchmarks keep working: each script's ``--tiny`` mode runs every measurement on small
sizes and prints one JSON object with the figures the README quotes.

``--compare-python`` is run with this test's own Python (the tests never depend on experimaestro
2.7.0): the side-by-side code path runs, and both sides must give the same keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
from numbers import Real
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench"

IDENTIFIER_KEYS = {"small_config_us", "small_config_build_us", "list_1000_ms", "chain_10000_ms"}


def run_json(*args: str) -> dict:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def figures(result: dict, keys: set[str]) -> None:
    """Every key is there and holds a measured number (not an error message, not None)."""
    assert keys <= result.keys(), keys - result.keys()
    for key in keys:
        assert isinstance(result[key], Real) and result[key] >= 0, (key, result[key])


def test_identifier_tiny_and_side_by_side() -> None:
    result = run_json(str(BENCH / "identifier.py"), "--tiny", "--compare-python", sys.executable)
    figures(result, IDENTIFIER_KEYS)
    assert result["sizes"]["small"] < 1000  # the tiny sizes were used
    other = result["compare"]
    assert other["python_path"] == sys.executable
    figures(other, IDENTIFIER_KEYS)
    assert other["sizes"] == result["sizes"]


def test_local_tiny_and_side_by_side() -> None:
    result = run_json(str(BENCH / "local.py"), "--tiny", "--compare-python", sys.executable)
    errors = {k: v for k, v in result["details"].items() if "error" in v}
    assert not errors, errors
    figures(result, {"jobs_4_s", "cpu_per_job_ms", "runner_cpu_ms", "reuse_20_s",
                     "gap_median_ms", "chain_5_s", "idle_controller_cpu_pct"})
    assert result["chain_5_ok"] is True
    assert result["details"]["jobs"]["done"] == 4
    assert result["details"]["reuse"]["done"] == 20
    assert result["details"]["reuse"]["launched"] == 0

    sides = result["side_by_side"]
    assert sides["compare"]["python_path"] == sys.executable
    for side in (sides["this"], sides["compare"]):
        assert "error" not in side, side
        figures(side, {"jobs_3_s", "cpu_per_job_ms", "rerun_3_s", "gap_median_ms"})
        assert side["jobs_done"] == 3 and side["gap_done"] == 3
        assert side["rerun_launched"] == 0  # the rerun found the 3 jobs done
        figures(side["identifier"], IDENTIFIER_KEYS)


def test_monitor_tiny() -> None:
    """bench/monitor.py on 200 jobs (it needs the headless browser, as the page tests do)."""
    import os

    import pytest

    if not os.path.exists("/usr/bin/chromedriver"):
        reason = "no /usr/bin/chromedriver: bash scripts/install-browser.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    result = run_json(str(BENCH / "monitor.py"), "--tiny")
    figures(result, {"index_scan_s", "api_jobs_ms", "first_paint_ms", "update_ms",
                     "idle_controller_cpu_pct", "idle_controller_cpu_pct_without_monitor"})
    assert result["jobs"] == 200


def test_ssh_connector_tiny(remote_host) -> None:
    # The connector's measurement alone (tests/test_ssh_sync.py runs them all), on the session's host.
    result = run_json(str(BENCH / "ssh.py"), "--tiny", "--only", "connector", "--host-dir",
                      str(remote_host.directory))
    figures(result, {"connect_ms", "round_trip_ms_median", "round_trip_ms_p95", "stat_1_ms_median",
                     "exists_batch_ms", "job_states_batch_ms", "exec_command_ms_median"})
    assert result["folders"] == 200


def test_ssh_jobs_and_reuse_tiny(remote_host) -> None:
    # 4 jobs on the local launcher and on the remote one; 20 done remote jobs reused (a fresh local
    # workspace, then a rerun in it).
    result = run_json(str(BENCH / "ssh.py"), "--tiny", "--only", "jobs,reuse", "--host-dir",
                      str(remote_host.directory))
    figures(result, {"jobs_4_local_s", "jobs_4_remote_s", "remote_over_local", "reuse_20_local_s",
                     "reuse_20_remote_fresh_s", "reuse_20_remote_fresh_not_copied_s",
                     "reuse_20_remote_rerun_s", "local_file_creation_ms"})
    assert result["remote_requests"]["start_job"] == 4
    assert result["rerun_requests"] == {}, "the rerun reads the local copies only"
    assert "start_job" not in result["fresh_requests"]
