"""scripts/setup-venv.sh skips an up-to-date install (the demo and the test command start without
a pip run each time), and reinstalls when pyproject.toml or the extras asked for change.

The script runs for real (bash) in a copy of the project; ``.venv/bin/python`` there is a small
recording stand-in, so that the test sees each pip run without installing anything.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]


def project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup-venv.sh", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    # Records its arguments; fails when asked to (a broken install).
    python.write_text('#!/bin/sh\necho "$*" >> "$(dirname "$0")/../../pip.log"\n'
                      '[ -e "$(dirname "$0")/../../fail" ] && exit 1\nexit 0\n')
    python.chmod(0o755)
    return tmp_path


def setup(root: Path, extras: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f'source scripts/setup-venv.sh && setup_venv "{extras}"'],
                          cwd=root, capture_output=True, text=True, timeout=60)


def pip_runs(root: Path) -> list[str]:
    log = root / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def test_install_is_skipped_when_up_to_date(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert setup(root, "").returncode == 0
    assert pip_runs(root) == ["-m pip install --quiet --disable-pip-version-check -e ."]

    again = setup(root, "")
    assert again.returncode == 0 and "up to date" in again.stdout
    assert len(pip_runs(root)) == 1  # no pip run

    assert setup(root, "test").returncode == 0  # new extras: installed
    assert pip_runs(root)[-1].endswith("-e .[test]") and len(pip_runs(root)) == 2
    assert "up to date" in setup(root, "test").stdout
    assert "up to date" in setup(root, "").stdout  # the test install holds the base one
    assert len(pip_runs(root)) == 2

    with open(root / "pyproject.toml", "a") as f:
        f.write("\n# a new dependency\n")
    assert setup(root, "").returncode == 0
    assert len(pip_runs(root)) == 3  # pyproject.toml changed: installed again


def test_failed_install_is_retried(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "fail").touch()
    assert setup(root, "").returncode != 0
    (root / "fail").unlink()
    done = setup(root, "")
    assert done.returncode == 0 and "installing" in done.stdout
    assert len(pip_runs(root)) == 2  # no stamp was left by the failed install
