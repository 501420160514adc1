"""The documentation names states and columns as the command line prints them (issue 6)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from experimaestro.cli.jobs import STATE_NAMES

DOCS = Path(__file__).parents[1] / "docs"


def documented_states() -> list[str]:
    """The first column of the table in docs/running.md, section "Job states"."""
    section = (DOCS / "running.md").read_text().split("## Job states", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z]+)` \|", section, flags=re.M)


def test_running_md_lists_the_states_the_cli_prints() -> None:
    states = documented_states()
    assert sorted(states) == sorted(STATE_NAMES.values())
    assert "error" not in states  # the CLI says "failed"


def test_cli_md_explains_every_column_of_experiments_list(tmp_path: Path) -> None:
    workdir = tmp_path / "ws"
    (workdir / "jobs").mkdir(parents=True)
    links = workdir / "experiments" / "xp" / "jobs" / "mod.task"
    links.mkdir(parents=True)
    os.symlink(workdir / "jobs" / "mod.task" / "0123", links / "0123")  # its job folder is gone
    done = subprocess.run(
        [sys.executable, "-m", "experimaestro", "experiments", "list", "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert dict(zip(header.split(), row.split()))["MISSING"] == "1"
    cli_md = (DOCS / "cli.md").read_text()
    for column in header.split():
        assert f"`{column}`" in cli_md, column
    assert "`MISSING` counts the experiment's links" in cli_md
