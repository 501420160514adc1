"""The README's main job: the seed experiment runs, then reruns reusing every job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "seed.py"
README = Path(__file__).parents[1] / "README.md"


def run(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--workdir", str(workdir), "--epochs", "2"],
        capture_output=True, text=True, timeout=120,
    )


def test_seed_example_runs_then_reuses(tmp_path: Path) -> None:
    first = run(tmp_path / "ws")
    assert first.returncode == 0, first.stderr
    assert "experiment seed: 4 jobs: 0 reused, 4 ran, 0 failed" in first.stderr
    rows = [line.split() for line in first.stdout.splitlines() if line.strip()[:2].isdigit()]
    assert len(rows) == 4 and all(float(row[2]) > 1 for row in rows)
    runs = tmp_path / "ws" / "experiments" / "seed" / "results" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == [
        "dlen_max=10_n_tokens=2000", "dlen_max=10_n_tokens=20000",
        "dlen_max=50_n_tokens=2000", "dlen_max=50_n_tokens=20000",
    ]
    assert all((link / "metrics.json").exists() for link in runs.iterdir())
    outs = sorted((tmp_path / "ws" / "jobs").glob("*/*/learn.out"))
    before = [p.read_text() for p in outs]

    second = run(tmp_path / "ws")
    assert second.returncode == 0, second.stderr
    reused = "experiment seed: 4 jobs: 4 reused, 0 ran, 0 failed"
    assert reused in second.stderr  # it says so,
    assert f"`{reused}`" in README.read_text()  # as the README shows
    assert second.stdout == first.stdout
    assert [p.read_text() for p in outs] == before  # nothing ran again
