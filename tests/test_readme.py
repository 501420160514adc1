"""The README's first experiment runs as written (so the README stays true)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_first_experiment_of_the_readme(tmp_path: Path) -> None:
    text = README.read_text()
    code = text.split("## A first experiment", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    (tmp_path / "first.py").write_text(code)
    done = subprocess.run(
        [sys.executable, "first.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["layers=2", "layers=4"]
    models = sorted(p.read_text() for p in tmp_path.glob("workspace/jobs/*/*/model.txt"))
    assert models == ["2 layers", "4 layers"]


def test_the_command_is_where_the_readme_says(tmp_path: Path) -> None:
    """The README says the command is `.venv/bin/experimaestro` (the tests run in that venv)."""
    text = README.read_text()
    assert "`.venv/bin/experimaestro`" in text and "source .venv/bin/activate" in text
    command = Path(sys.executable).parent / "experimaestro"
    (tmp_path / "jobs").mkdir()  # an empty workspace
    done = subprocess.run([str(command), "jobs", "list", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
