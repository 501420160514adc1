"""The generated batch scripts, pinned by golden files (tests/data/slurm/).

To update them after an intended change: ``XPM_UPDATE_GOLDEN=1 pytest tests/test_slurm_script.py``,
then review the diff.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from experimaestro.launchers.slurm import SlurmOptions
from experimaestro.launchers.slurm.script import array_script, job_script

GOLDEN = Path(__file__).parent / "data" / "slurm"
#: A job folder whose path needs quoting (a space, a quote, a dollar sign).
JOB = Path("/work space/it's/jobs/mod.learn/$HOME0123")
OPTIONS = SlurmOptions(
    time="4h", mem="16G", gpus_per_node=1, partition="gpu", constraint="a100|v100",
    extra=["--mail-type=END", "--comment=two words; rm -rf /"],
)


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("XPM_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed (see the module docstring to update it)"


def _job(**changes: object) -> str:
    values: dict = dict(
        job_dir=JOB, name="learn", python="/opt/py env/bin/python3", flags=OPTIONS.sbatch_flags(),
        setup=["module load cuda/12", "source ~/venv/bin/activate"],
        env={"PYTHONPATH": "/home/me/my project:/lib"},
    )
    values.update(changes)
    return job_script(**values)


def test_job_script_golden() -> None:
    _check("job.sh", _job())


def test_job_script_without_setup_golden() -> None:
    _check("job-plain.sh", _job(setup=[], env={}, flags=[]))


def test_array_script_golden() -> None:
    scripts = [JOB / "learn.sh", Path("/ws/jobs/mod.learn/abc/learn.sh")]
    _check("array.sh", array_script(scripts=scripts, flags=OPTIONS.sbatch_flags(),
                                    output=Path("/ws/.experimaestro/slurm/array-1-%A.out"),
                                    job_name="learn"))


def test_values_are_quoted_for_the_shell(tmp_path: Path) -> None:
    """Run by bash, the script's lines give back the exact values (no expansion, no injection)."""
    job_dir = tmp_path / "a b" / "it's" / "$HOME"
    job_dir.mkdir(parents=True)
    fake_python = tmp_path / "py $x"
    fake_python.write_text('#!/bin/sh\nprintf "%s\\n" "$PYTHONPATH" "$@"\n')
    fake_python.chmod(0o755)
    text = job_script(job_dir=job_dir, name="learn", python=str(fake_python), flags=[],
                      env={"PYTHONPATH": "$(touch pwned) `x`"})
    script = job_dir / "learn.sh"
    script.write_text(text)
    subprocess.run(["bash", str(script)], check=True, cwd=tmp_path)
    out = (job_dir / "learn.out").read_text().splitlines()
    assert out == ["$(touch pwned) `x`", "-m", "experimaestro", "run", str(job_dir / "params.json")]
    assert not (job_dir / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_failing_setup_line_stops_before_the_runner(tmp_path: Path) -> None:
    marker = tmp_path / "runner-started"
    text = job_script(job_dir=tmp_path, name="learn", python=f"touch {shlex.quote(str(marker))};",
                      flags=[], setup=["echo setting up", "false", "echo not reached"])
    (tmp_path / "learn.sh").write_text(text)
    code = subprocess.run(["bash", str(tmp_path / "learn.sh")], cwd=tmp_path).returncode
    assert code != 0
    assert (tmp_path / "learn.out").read_text() == "setting up\n"
    assert not marker.exists()


def test_sbatch_lines_quote_values() -> None:
    text = _job()
    assert "#SBATCH --constraint='a100|v100'\n" in text
    assert "#SBATCH --comment='two words; rm -rf /'\n" in text
    assert "#SBATCH --output='/work space/it'\"'\"'s/jobs/mod.learn/$HOME0123/learn.out'\n" in text


@pytest.mark.parametrize("task", ["0", "1"])
def test_array_task_runs_its_own_job_script(tmp_path: Path, task: str) -> None:
    scripts = []
    for i in range(2):
        folder = tmp_path / f"job {i}"
        folder.mkdir()
        (folder / "learn.sh").write_text(f"echo job {i} > {shlex.quote(str(tmp_path / 'ran'))}\n")
        scripts.append(folder / "learn.sh")
    text = array_script(scripts=scripts, flags=[], output=tmp_path / "x-%A.out", job_name="learn")
    (tmp_path / "array.sh").write_text(text)
    env = dict(os.environ, SLURM_ARRAY_TASK_ID=task)
    subprocess.run(["bash", str(tmp_path / "array.sh")], check=True, env=env)
    assert (tmp_path / "ran").read_text() == f"job {task}\n"
    env["SLURM_ARRAY_TASK_ID"] = "7"
    assert subprocess.run(["bash", str(tmp_path / "array.sh")], env=env).returncode == 1
