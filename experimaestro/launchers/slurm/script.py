"""The batch scripts: pure functions from a job's folder and options to the text sbatch reads.

* ``<name>.sh`` in each job folder: ``#SBATCH`` lines, then the ``setup`` lines, then the same runner
  as locally (``python -m experimaestro run params.json``). ``sbatch <name>.sh`` resubmits the job by
  hand, and ``bash <name>.sh`` runs it here.
* an array script (``<workspace>/.experimaestro/slurm/``) for jobs submitted together: task ``i`` of
  the array runs the ``<name>.sh`` of the i-th job, so each task keeps its own folder and logs.

Every value placed in a script is quoted with :func:`shlex.quote` (sbatch reads quoted ``#SBATCH``
values too). ``setup`` lines are shell code written by the user and are placed as they are.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Mapping, Sequence

HEADER = "#!/bin/bash\n"


def _sbatch_line(flag: str) -> str:
    name, sep, value = flag.partition("=")
    return f"#SBATCH {name}={shlex.quote(value)}\n" if sep else f"#SBATCH {name}\n"


def job_script(
    *,
    job_dir: Path,
    name: str,
    python: str,
    flags: Sequence[str],
    setup: Sequence[str] = (),
    env: Mapping[str, str] = {},  # noqa: B006 - read only
) -> str:
    """The batch script of one job (``<job_dir>/<name>.sh``).

    Its output goes to ``<name>.out`` and ``<name>.err`` (appended), also when it runs as a task of
    an array. ``setup`` lines run with ``set -e``: a failing line ends the job before its runner
    starts (the controller then reports Slurm's state and this script's output).
    """
    q = shlex.quote
    out = job_dir / f"{name}.out"
    err = job_dir / f"{name}.err"
    lines = [
        HEADER,
        "# experimaestro batch script (Slurm launcher): `sbatch` this file to rerun the job\n",
        _sbatch_line(f"--job-name={name}"),
        _sbatch_line(f"--output={out}"),
        _sbatch_line(f"--error={err}"),
        "#SBATCH --open-mode=append\n",
        *(_sbatch_line(flag) for flag in flags),
        f"exec >>{q(str(out))} 2>>{q(str(err))}\n",
        f"cd {q(str(job_dir))} || exit 1\n",
        'echo "===== experimaestro: batch script of slurm job ${SLURM_JOB_ID:-none} on'
        ' $(hostname) =====" >&2\n',
    ]
    for key, value in sorted(env.items()):
        lines.append(f"export {key}={q(value)}\n")
    if setup:
        lines.append("set -e\n")
        lines.extend(line.rstrip("\n") + "\n" for line in setup)
        lines.append("set +e\n")
    command = [python, "-m", "experimaestro", "run", str(job_dir / "params.json")]
    lines.append(f"exec {' '.join(q(c) for c in command)}\n")
    return "".join(lines)


def array_script(*, scripts: Sequence[Path], flags: Sequence[str], output: Path, job_name: str) -> str:
    """The batch script of an array whose task ``i`` runs ``scripts[i]`` (a job's ``<name>.sh``).

    ``output`` receives what a task prints before its own script takes over (one file for the
    whole array, appended: ``%A`` is the array's job id); the ``--array`` range is given on
    sbatch's command line.
    """
    q = shlex.quote
    lines = [
        HEADER,
        "# experimaestro array script (Slurm launcher): task i runs the batch script of job i\n",
        _sbatch_line(f"--job-name={job_name}"),
        _sbatch_line(f"--output={output}"),
        "#SBATCH --open-mode=append\n",
        *(_sbatch_line(flag) for flag in flags),
        'case "$SLURM_ARRAY_TASK_ID" in\n',
    ]
    for index, script in enumerate(scripts):
        lines.append(f"  {index}) exec /bin/bash {q(str(script))} ;;\n")
    lines.append('  *) echo "experimaestro: no job for array task $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;\n')
    lines.append("esac\n")
    return "".join(lines)
