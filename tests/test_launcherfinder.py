"""find_launcher: launchers.py from the configuration folder or the workspace, the local fallback
and its single warning, ``experimaestro launchers find``, and launchers.py files written for 2.x."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import experimaestro
from experimaestro.launcherfinder import (
    LauncherConfigError,
    RequirementSyntaxError,
    cuda_gpu,
    explain_launcher,
    find_launcher,
    registry,
)
from experimaestro.launchers.direct import DirectLauncher, default_launcher

# Test launchers.py files tell their launchers apart by max_jobs.
CHOOSER = """
from experimaestro.launcherfinder import HostSpecification, CPUSpecification, CudaSpecification
from experimaestro.launchers.direct import DirectLauncher

GiB = 1024**3
CALLS = []

def find_launcher(requirements, tags):
    CALLS.append((str(requirements), sorted(tags)))
    match = requirements.match(HostSpecification(
        cpu=CPUSpecification(cores=16, memory=64 * GiB),
        cuda=[CudaSpecification(memory=24 * GiB)] * 2,
        max_duration=24 * 3600,
    ))
    if match and match.requirement.cuda_gpus:
        return DirectLauncher({gpu})
    if requirements.match(HostSpecification(cpu=CPUSpecification(cores=4, memory=8 * GiB))):
        return DirectLauncher({cpu})
    return None
"""


def write_chooser(folder: Path, gpu: int, cpu: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "launchers.py"
    path.write_text(CHOOSER.format(gpu=gpu, cpu=cpu))
    return path


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user configuration, no workspace from the environment, fresh process-wide state."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("XPM_WORKDIR", raising=False)
    monkeypatch.setattr(registry, "_config_dir", None)
    monkeypatch.setattr(registry, "_warned", set())
    monkeypatch.setattr(registry, "_modules", {})
    return tmp_path


def test_the_first_launcher_that_fits_comes_from_launchers_py(tmp_path: Path) -> None:
    write_chooser(tmp_path / "xdg" / "experimaestro", gpu=11, cpu=12)
    spec = "duration=4h & cuda(mem=16G)*2 | cpu(cores=4, mem=8G)"
    assert find_launcher(spec).max_jobs == 11
    assert find_launcher("cpu(cores=4, mem=8G)").max_jobs == 12
    assert find_launcher("cuda(mem=16G)*3 | cpu(cores=2)").max_jobs == 12  # 3 GPUs: 2nd alternative
    assert find_launcher(cuda_gpu(mem="14G") * 2).max_jobs == 11  # a requirement object


def test_launchers_py_gets_the_requirement_and_the_tags(tmp_path: Path) -> None:
    write_chooser(tmp_path / "cfg", gpu=11, cpu=12)
    find_launcher("duration=4h & cuda(mem=16G)*2", tags=["slurm", "big"], config_dir=tmp_path / "cfg")
    (function,) = [entry[1] for entry in registry._modules.values()]
    assert function.__globals__["CALLS"] == [("duration=4h & cuda(mem=16G)*2", ["big", "slurm"])]


def test_several_requirements_are_tried_in_turn(tmp_path: Path) -> None:
    write_chooser(tmp_path / "cfg", gpu=11, cpu=12)
    choice = explain_launcher("cuda(mem=80G)", "cpu(cores=2)", config_dir=tmp_path / "cfg")
    assert choice.launcher.max_jobs == 12 and choice.requirement_index == 1


def test_where_launchers_py_is_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = write_chooser(tmp_path / "xdg" / "experimaestro", gpu=1, cpu=21)
    workspace = write_chooser(tmp_path / "ws", gpu=1, cpu=22)
    explicit = write_chooser(tmp_path / "cfg", gpu=1, cpu=23)
    spec = "cpu(cores=1)"

    assert explain_launcher(spec).source == user
    assert explain_launcher(spec, workdir=tmp_path / "ws").source == workspace
    monkeypatch.setenv("XPM_WORKDIR", str(tmp_path / "ws"))
    assert find_launcher(spec).max_jobs == 22  # the workspace's file comes before the user's
    assert find_launcher(spec, config_dir=tmp_path / "cfg").max_jobs == 23  # explicit first
    # an explicit folder replaces the user's one (run-experiment --xpm-config-dir)
    assert explain_launcher(spec, config_dir=tmp_path / "empty").searched == [
        tmp_path / "empty" / "launchers.py", workspace
    ]
    registry.set_config_dir(tmp_path / "cfg")
    assert explain_launcher(spec).source == explicit
    experimaestro.launcherfinder.LauncherRegistry.set_config_dir(None)  # the 2.x spelling
    assert explain_launcher(spec).source == workspace


def test_without_xdg_the_user_folder_is_dot_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert registry.candidate_files() == [tmp_path / "home" / ".config" / "experimaestro" / "launchers.py"]


def test_an_edited_launchers_py_is_read_again(tmp_path: Path) -> None:
    path = write_chooser(tmp_path / "cfg", gpu=1, cpu=31)
    assert find_launcher("cpu(cores=1)", config_dir=tmp_path / "cfg").max_jobs == 31
    path.write_text(CHOOSER.format(gpu=1, cpu=32) + "\n# edited\n")
    assert find_launcher("cpu(cores=1)", config_dir=tmp_path / "cfg").max_jobs == 32


def test_no_launchers_py_gives_the_local_launcher_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="experimaestro.launchers")
    assert find_launcher("cuda(mem=16G)") is default_launcher()
    assert find_launcher("cpu(cores=2)") is default_launcher()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "no launchers.py found" in warnings[0].getMessage()
    assert "using the local launcher" in warnings[0].getMessage()


def test_nothing_that_fits_gives_the_local_launcher_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_chooser(tmp_path / "cfg", gpu=1, cpu=2)
    for _ in range(3):
        assert find_launcher("cuda(mem=80G)", config_dir=tmp_path / "cfg") is default_launcher()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"find_launcher in {path} returned None for 'cuda(mem=80G)': using the local launcher"
    ]


def test_a_launchers_py_without_find_launcher_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "launchers.py").write_text("def find_launchers(r, t):\n    return None\n")
    with pytest.raises(LauncherConfigError, match=r"launchers.py defines no find_launcher function"):
        find_launcher("cpu()", config_dir=tmp_path / "cfg")


def test_a_wrong_return_value_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "launchers.py").write_text(
        "from experimaestro.connectors.local import LocalConnector\n"
        "def find_launcher(requirements, tags):\n    return LocalConnector.instance()\n"
    )
    with pytest.raises(
        LauncherConfigError, match=r"launchers.py returned .*LocalConnector.*return a Launcher"
    ):
        find_launcher("cpu()", config_dir=tmp_path / "cfg")


def test_an_error_in_launchers_py_points_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "launchers.py").write_text("def find_launcher(requirements, tags):\n    1 / 0\n")
    with pytest.raises(ZeroDivisionError) as caught:
        find_launcher("cpu()", config_dir=tmp_path / "cfg")
    last = caught.traceback[-1]
    assert Path(str(last.path)).name == "launchers.py" and last.lineno + 1 == 2


def test_a_malformed_requirement_is_an_error_before_launchers_py_is_asked(tmp_path: Path) -> None:
    write_chooser(tmp_path / "cfg", gpu=1, cpu=2)
    with pytest.raises(RequirementSyntaxError):
        find_launcher("cuda(mem=16)", config_dir=tmp_path / "cfg")
    assert registry._modules == {}


def test_find_launcher_is_public_and_lazy() -> None:
    assert experimaestro.find_launcher is find_launcher
    code = "import sys, experimaestro; print('experimaestro.launcherfinder' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- a launchers.py as 2.x users write it (from experimaestro 2.x's documentation)

LAUNCHERS_2X = '''
from typing import Set
from experimaestro.launcherfinder import (
    HostRequirement,
    HostSpecification,
    CudaSpecification,
    CPUSpecification,
)
from experimaestro.launcherfinder.specs import MatchRequirement
from experimaestro.launchers.direct import DirectLauncher
from experimaestro.connectors.local import LocalConnector

GIGA = 1024**3


def gpu_launcher(match: MatchRequirement):
    # the number of GPUs and the duration, as 2.x files read them
    assert match.requirement.duration >= 0 and match.requirement.cpu.cores >= 0
    return DirectLauncher(max_jobs=40 + len(match.requirement.cuda_gpus))


def find_launcher(requirements: HostRequirement, tags: Set[str] = set()):
    """Find a launcher"""

    if match := requirements.match(HostSpecification(cuda=[])):
        # No GPU: run directly
        return DirectLauncher(connector=LocalConnector.instance())

    if "slurm" in tags:
        return None

    if match := requirements.match(
        HostSpecification(
            max_duration=100 * 3600,
            cpu=CPUSpecification(cores=32, memory=129 * GIGA),
            cuda=[CudaSpecification(memory=24 * GIGA) for _ in range(8)],
        )
    ):
        if len(match.requirement.cuda_gpus) > 0:
            return gpu_launcher(match)

    # Could not find a host
    return None
'''


def test_a_2x_launchers_py_works_unchanged(tmp_path: Path) -> None:
    (tmp_path / "xdg" / "experimaestro").mkdir(parents=True)
    (tmp_path / "xdg" / "experimaestro" / "launchers.py").write_text(LAUNCHERS_2X)
    from experimaestro.launcherfinder import find_launcher as find  # the 2.x import

    local = find("duration=4h")
    assert isinstance(local, DirectLauncher) and local is not default_launcher()
    spec = "duration=40h & cpu(mem=700GiB) & cuda(mem=32GiB) * 8 | duration=50h & cuda(mem=16G) * 4"
    assert find(spec).max_jobs == 44
    assert find("""duration=4 days & cuda(mem=4G) * 2 & cpu(mem=400M, cores=4)""").max_jobs == 42
    assert find(cuda_gpu(mem="14G") * 2, tags=["slurm"]) is default_launcher()
    assert find("duration=101h & cuda(mem=4G)") is default_launcher()


# --- the command line, through the installed entry point


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("experimaestro")), "launchers", "find", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XPM_WORKDIR"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    return env


def test_cli_prints_the_choice_the_file_and_the_alternative(tmp_path: Path) -> None:
    path = write_chooser(tmp_path / "ws", gpu=7, cpu=8)
    done = run_cli(
        "duration=4h & cuda(mem=16G)*3 | cpu(cores=4, mem=8G)", "--workdir", str(tmp_path / "ws"),
        env=cli_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        "requirement: duration=4h & cuda(mem=16G)*3 | cpu(cores=4, mem=8G)",
        "  alternative 1: duration=4h & cuda(mem=16G)*3",
        "  alternative 2: cpu(cores=4, mem=8G)",
    ]
    assert f"  {path} (used)" in lines
    assert f"  {tmp_path / 'xdg' / 'experimaestro' / 'launchers.py'} (absent)" in lines
    assert "launcher: DirectLauncher: local (at most 8 at once)" in lines
    assert lines[-1] == (
        f"why: find_launcher in {path} returned it, after requirements.match() matched "
        "alternative 2 (cpu(cores=4, mem=8G)) on HostSpecification(cpu=CPU(mem=8GiB, cores=4))"
    )


def test_cli_says_when_the_local_launcher_is_used(tmp_path: Path) -> None:
    done = run_cli("cpu(cores=1)", env=cli_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("why: no launchers.py found (looked for ")
    assert done.stdout.splitlines()[-1].endswith(": the local launcher is used")


def test_cli_shows_a_malformed_requirement_with_a_caret(tmp_path: Path) -> None:
    done = run_cli("cuda(mem=16)*2", env=cli_env(tmp_path))
    assert done.returncode == 2
    units = "B, K, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
    assert (
        f"invalid requirement at character 12: expected a size unit after '16': {units}\n"
        "  cuda(mem=16)*2\n"
        "             ^"
    ) in done.stderr
