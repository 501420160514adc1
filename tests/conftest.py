"""Shared test helpers: conditions with deadlines, controller subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

HELPERS = Path(__file__).parent / "helpers"
if str(HELPERS) not in sys.path:
    # Job processes inherit the controller's import folders (see launchers/direct.py).
    sys.path.insert(0, str(HELPERS))

# The SSH tests' separate remote host (ssh-test/): remote_host, remote_slurm_host, ssh_home,
# remote_workspace.
from remote_host import remote_host, remote_slurm_host, remote_workspace, ssh_home  # noqa: E402, F401

# Real Slurm clusters (slurm-test/) as fixtures: slurm_plain, slurm_accounting, slurm_cluster, ...;
# SlurmLaunchers of them: slurm_launcher, plain_slurm_launcher.
pytest_plugins = ["slurm_cluster", "slurm_launchers"]


def wait_until(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.01, what: str = ""
) -> object:
    """Poll ``predicate`` until it returns a true value; fail the test after ``timeout`` s."""
    from polling import poll

    try:
        return poll(predicate, timeout, interval)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")


def controller_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(HELPERS), str(Path(__file__).parents[1])]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra or {})
    return env


_controllers: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _kill_leftover_controllers() -> object:
    """Controllers a test started and left running (a failed assertion) are killed after it."""
    yield
    while _controllers:
        proc = _controllers.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_controller(
    script: str, directory: Path, name: str = "controller.py", env: Optional[dict[str, str]] = None
) -> subprocess.Popen:
    """Start a controller script (Python source) in a subprocess; output goes to files."""
    path = directory / name
    path.write_text(textwrap.dedent(script))
    with open(directory / f"{name}.out", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(path)], stdout=out, stderr=subprocess.STDOUT,
            env=controller_env(env), cwd=directory,
        )
    _controllers.append(proc)
    return proc


def run_controller(script: str, directory: Path, name: str = "controller.py",
                   env: Optional[dict[str, str]] = None, timeout: float = 120) -> tuple[int, str]:
    """Run a controller script to its end; returns (exit code, output)."""
    code = start_controller(script, directory, name, env).wait(timeout=timeout)
    return code, (directory / f"{name}.out").read_text()


@pytest.fixture
def source_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], Any]]:
    """``source_module(name, source)``: write a module into ``tmp_path/src`` and import it (a real
    module, so that job processes and fresh interpreters can import it too)."""
    import importlib

    src = tmp_path / "src"
    src.mkdir()
    monkeypatch.syspath_prepend(str(src))
    names: list[str] = []

    def load(name: str, source: str) -> Any:
        (src / f"{name}.py").write_text(source)
        sys.modules.pop(name, None)
        names.append(name)
        return importlib.import_module(name)

    yield load
    for name in names:
        sys.modules.pop(name, None)
