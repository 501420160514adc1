"""The monitor's page in headless chromium (tests/test_monitor_browser.py) for a job that runs on
the SSH test host: the controller serving its monitor shows it running (from its local folder,
written when it was launched), its log read on the host through the controller's connection, then
done when it has ended and its folder is copied back."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from remote_host import RemoteHost
from remote_tasks import WaitsForFile
from test_monitor_browser import browser, click, css, until  # noqa: F401 (the browser fixture)
from test_ssh_connector import fresh_connections  # noqa: F401 (autouse: no shared connection left)
from test_ssh_experiment import host  # noqa: F401 (fixture; remote_workspace comes from conftest)

from experimaestro import experiment, tag
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.direct import DirectLauncher


def row_state(driver: Any, key: str) -> str:
    """The state of the job's row (read in the page at once: rows are replaced live)."""
    return driver.execute_script(
        "const tr = document.querySelector(`#jobs tbody tr[data-key=\"${arguments[0]}\"]`);"
        "return tr ? tr.dataset.state : '';", key)


def text_of(driver: Any, selector: str) -> str:
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';", selector)


def test_an_ssh_job_running_then_done_with_its_log_from_the_host(
        browser: Any, host: SshConnector, remote_host: RemoteHost, remote_workspace: str,  # noqa: F811
        tmp_path: Path) -> None:
    flag = f"{remote_workspace}/go"
    with experiment(tmp_path / "ws", "remote", launcher=DirectLauncher(connector=host), port=0) as xp:
        job = WaitsForFile.C(path=flag, tag=tag("slow")).submit().__xpm__.job
        key = f"{job.typeid}/{job.identifier}"
        browser.get(xp.monitor.url)
        until(lambda: row_state(browser, key) == "running", "the remote job's row, running")
        browser.get(f"{xp.monitor.url.split('#')[0]}#/job/{key}")
        until(lambda: css(browser, "#log-stdout"), "the job page")
        assert f"{remote_host.alias}:{remote_workspace}/{job.relpath}" in text_of(browser, "#remote")
        assert not (job.path / f"{job.name}.out").exists(), "the log is only on the host yet"
        click(browser, "#log-stdout")
        until(lambda: f"waiting for {flag}" in text_of(browser, "#log"), "its stdout, read on the host")
        # What the job writes later is tailed live (the page's request waits on the host for it)
        remote_out = f"{remote_workspace}/{job.relpath}/{job.name}.out"
        remote_host.run(f"echo 'a line written later' >> {shlex.quote(remote_out)}")
        until(lambda: "a line written later" in text_of(browser, "#log"), "the live tail from the host")
        remote_host.run(f"touch {shlex.quote(flag)}")
        until(lambda: "done" in text_of(browser, ".toolbar .badge"), "the job page showing it done")
        assert (job.path / f"{job.name}.out").exists(), "copied back before it was shown done"
        until(lambda: f"waiting for {flag}" in text_of(browser, "#log"), "its stdout, the local copy")
        browser.get(xp.monitor.url)
        until(lambda: row_state(browser, key) == "done", "the row, done")
