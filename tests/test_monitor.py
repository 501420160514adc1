"""The web monitor over HTTP: a real controller serving it (experiment(port=0)), real jobs, and
requests with urllib; the page itself is tested in a browser in test_monitor_browser.py."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import controller_env, wait_until
from monitor_client import Controller, EventStream, get, page_token, running_controller

from experimaestro import experiment
from experimaestro.monitor import MonitorError, MonitorServer, serve_workspace
from experimaestro.scheduler.workspace import Workspace


@pytest.fixture
def controller(tmp_path: Path) -> Any:
    yield from running_controller(tmp_path)


def test_the_controller_serves_its_jobs_live(controller: Controller) -> None:
    stream = EventStream(controller.url)
    try:
        a = wait_until(lambda: (j := controller.job("a")) and j["state"] == "running" and j,
                       what="job a running")
        # Its progress, written by progress() in the job, with the rest of its row.
        wait_until(lambda: controller.job("a")["progress"] == 0.42, what="the progress of a")
        row = controller.job("a")
        assert row["progress_desc"] == "epoch 3/10"
        assert row["launcher"] == "local" and row["host"] == socket.gethostname()
        assert row["tags"] == {"name": "a"} and row["started"] is not None
        failed = wait_until(lambda: controller.job("b")["state"] == "failed" and controller.job("b"))
        assert failed["reason"] == "failed"
        counts = controller.jobs()["counts"]
        assert counts["failed"] == 1 and counts["running"] >= 1
        # The state change reaches an open page by the stream, without asking.
        controller.open("a")
        wait_until(lambda: stream.job_states().get(a["key"]) == "done", what="a done, pushed")
    finally:
        stream.close()
    controller.finish()


def test_job_details_parameters_dependencies_and_logs(controller: Controller) -> None:
    b = wait_until(lambda: (j := controller.job("b")) and j["state"] == "failed" and j)
    _, details = get(f"{controller.url}/api/job/{b['key']}")
    assert details["failure"]["reason"] == "failed"
    assert "fails on purpose" in details["failure"]["message"]
    assert details["params"]["$type"].endswith("gated") and details["params"]["name"] == "b"
    _, log = get(f"{controller.url}/api/job/{b['key']}/log/stdout")
    assert "hello b" in log["text"]
    _, log = get(f"{controller.url}/api/job/{b['key']}/log/stderr")
    assert "RuntimeError: b fails on purpose" in log["text"]
    # A chunk from an offset: what was appended since.
    _, rest = get(f"{controller.url}/api/job/{b['key']}/log/stderr?offset={log['next'] - 10}")
    assert rest["text"] == log["text"][-10:]
    # a <- downstream, both ways, as links between job pages.
    a = controller.job("a")
    down = wait_until(lambda: [j for j in controller.jobs()["jobs"] if j["typeid"].endswith("downstream")])
    _, a_details = get(f"{controller.url}/api/job/{a['key']}")
    assert [d["key"] for d in a_details["dependents"]] == [down[0]["key"]]
    _, down_details = get(f"{controller.url}/api/job/{down[0]['key']}")
    assert [d["key"] for d in down_details["dependencies"]] == [a["key"]]
    # The explain-id view, with the controller's classes.
    _, explained = get(f"{controller.url}/api/job/{a['key']}/explain")
    assert "+ name = " in explained["text"] and "- gate: left out (meta)" in explained["text"]
    # Filters: by state, by tag, by words.
    assert [j["tags"]["name"] for j in controller.jobs(state="failed")["jobs"]] == ["b"]
    assert controller.jobs(q="name=d")["total"] == 1
    assert controller.jobs(q="nothing-like-this")["total"] == 0
    controller.finish()


def test_kill_a_running_job(controller: Controller) -> None:
    d = wait_until(lambda: (j := controller.job("d")) and j["state"] == "running" and j["started"] and j)
    # Its task runs (a SIGTERM before the runner's handler is set ends it as "failed", not
    # "cancelled": the runner's business, not the monitor's).
    wait_until(lambda: "hello d" in get(f"{controller.url}/api/job/{d['key']}/log/stdout")[1]["text"])
    token = page_token(controller.url)
    status, answer = get(f"{controller.url}/api/job/{d['key']}/kill", {"X-XPM-Token": token}, "POST")
    assert status == 200 and "SIGTERM" in answer["message"]
    done = wait_until(lambda: (j := controller.job("d"))["state"] == "failed" and j)
    assert done["reason"] == "cancelled"
    status, answer = get(f"{controller.url}/api/job/{d['key']}/kill", {"X-XPM-Token": token}, "POST")
    assert status == 409 and "ended" in answer["error"]
    controller.finish()


def test_an_action_needs_the_token_header_even_on_localhost(controller: Controller) -> None:
    """A page of another site can send a POST to 127.0.0.1 (CSRF), not read the token."""
    d = wait_until(lambda: (j := controller.job("d")) and j["state"] == "running" and j)
    status, text = get(f"{controller.url}/api/job/{d['key']}/kill", method="POST")
    assert status == 403 and "x-xpm-token" in text
    status, _ = get(f"{controller.url}/api/job/{d['key']}/kill", {"X-XPM-Token": "wrong"}, "POST")
    assert status == 403
    assert controller.job("d")["state"] == "running"
    # DNS rebinding: a name that resolves to 127.0.0.1 but is not a loopback name is refused.
    status, _ = get(f"{controller.url}/api/experiments", {"Host": "evil.example:80"})
    assert status == 403
    controller.finish()


def test_beyond_localhost_every_request_needs_the_token(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    server = serve_workspace(tmp_path, port=0, host="0.0.0.0", token="s3cret-token")
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert "?token=s3cret-token" in server.url
        for path in ("/", "/api/experiments", "/api/jobs", "/api/events", "/static/app.js"):
            status, text = get(base + path)
            assert status == 403 and "access token" in text, path
        assert get(base + "/?token=wrong")[0] == 403
        # The URL printed: a cookie, and the same page without the token in its address.
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(f"{base}/api/experiments?token=s3cret-token", timeout=30) as response:
            assert response.status == 200 and response.url == f"{base}/api/experiments"
            assert json.loads(response.read()) == {"experiments": [], "default": None}
        with opener.open(f"{base}/api/events", timeout=30) as response:
            assert response.status == 200 and response.readline() == b"retry: 2000\n"
        # An action also needs the header (the cookie alone is what a forged request would carry).
        request = urllib.request.Request(f"{base}/api/job/t/x/kill", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(request, timeout=30)
        assert refused.value.code == 403
    finally:
        server.stop()


def test_a_taken_port_is_an_error_at_the_experiment_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MonitorError, match=f"port {port} .* is taken .*port=0"):
            with experiment(tmp_path / "ws", "xp", port=port):
                pass  # pragma: no cover
    assert not (tmp_path / "ws").exists()  # nothing written


def test_watching_stops_when_no_page_is_open(tmp_path: Path) -> None:
    """No page open: no watch, no thread reading the folders (the idle controller costs nothing)."""
    (tmp_path / "jobs").mkdir()
    server = MonitorServer(Workspace(tmp_path), port=0)
    server.index.idle_grace = 0.2
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        # Watched from the start (the first page is quick), not for long without a page.
        wait_until(lambda: server.index.scans and not server.index.watching, what="idle")
        status, _ = get(base + "/api/jobs")  # a request watches again, for a while
        assert status == 200 and server.index.watching
        wait_until(lambda: not server.index.watching, what="idle again")
        stream = EventStream(base)
        wait_until(lambda: server.index.watching, what="the folders watched while a page is open")
        stream.close()
        wait_until(lambda: not server.index.watching, what="the watches dropped after the page left")
        wait_until(lambda: server.index._thread is None, what="the refresher thread gone")
    finally:
        server.stop()


def test_the_monitor_command(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "experimaestro", "monitor", "--workdir", str(tmp_path)],
        capture_output=True, text=True, env=controller_env(), timeout=60,
    )
    assert bad.returncode == 2 and "not an experimaestro workspace" in bad.stderr
    (tmp_path / "jobs").mkdir()
    (tmp_path / "experiments" / "old").mkdir(parents=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "experimaestro", "monitor", "--workdir", str(tmp_path), "--port", "0"],
        stderr=subprocess.PIPE, text=True, env=controller_env(),
    )
    try:
        line = process.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert match, line
        status, data = get(match.group(1) + "/api/experiments")
        assert status == 200 and [x["name"] for x in data["experiments"]] == ["old"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_slurm_job_shows_its_job_id(tmp_path: Path) -> None:
    """A job folder whose pid record is a Slurm one (as the Slurm launcher writes it)."""
    from monitor_tasks import Gated

    from experimaestro.core.serialization import dumps

    task = Gated.C(name="on slurm")
    typeid, identifier = task.__xpm__.xpmtype.typeid, task.__xpm__.identifier.hex()
    folder = tmp_path / "jobs" / typeid / identifier
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(dumps(task, job=folder, workspace=tmp_path))
    name = typeid.rsplit(".", 1)[-1]
    (folder / f"{name}.pid").write_text(
        json.dumps({"type": "slurm", "jobid": "4242", "host": "node7", "started": 1.0e9})
    )
    server = serve_workspace(tmp_path, port=0)
    try:
        base = f"http://127.0.0.1:{server.port}"
        row = get(f"{base}/api/jobs")[1]["jobs"][0]
        assert (row["launcher"], row["host"], row["slurm_jobid"]) == ("slurm", "node7", "4242")
        assert get(f"{base}/api/jobs?q=4242")[1]["total"] == 1
        if shutil.which("scancel") is None:  # stopping it needs Slurm's scancel: said so
            status, answer = get(f"{base}/api/job/{row['key']}/kill",
                                 {"X-XPM-Token": page_token(base)}, "POST")
            assert status == 409 and "scancel 4242" in answer["error"]
    finally:
        server.stop()
