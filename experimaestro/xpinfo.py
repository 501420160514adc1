"""``load_xp_info(path)``: the jobs an experiment submitted, read back from its folder (2.x's
name), without running anything.

```python
info = load_xp_info(workdir / "experiments" / "my-xp")    # xp.workdir
for identifier, task in info.jobs.items():
    print(identifier, task.tags(), task.jobpath)
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union


@dataclass
class ExperimentInfo:
    """What :func:`load_xp_info` returns."""

    jobs: dict[str, Any] = field(default_factory=dict)
    """The experiment's tasks (configurations, sealed), by job identifier (64 hex digits); each
    knows its job folder (``task.jobpath``)."""
    actions: dict[str, Any] = field(default_factory=dict)
    """2.x's experiment actions: none here (kept for 2.x code that reads it)."""


def load_xp_info(path: Union[str, Path]) -> ExperimentInfo:
    """Read the tasks of the experiment whose folder is ``path`` (``<workspace>/experiments/<name>``,
    which is ``xp.workdir``) from their jobs' params.json."""
    from .runner import _load

    folder = Path(path).expanduser().absolute()
    jobs_folder = folder / "jobs"
    if folder.parent.name != "experiments" or not jobs_folder.is_dir():
        raise FileNotFoundError(
            f"load_xp_info: {folder} is not an experiment folder (it has no jobs/ folder); give "
            f"<workspace>/experiments/<name>, which is xp.workdir"
        )
    info = ExperimentInfo()
    for type_folder in sorted(p for p in jobs_folder.iterdir() if p.is_dir()):
        for link in sorted(type_folder.iterdir()):
            params = link / "params.json"
            if not params.is_file():  # a job generated in dry run, or removed since
                continue
            info.jobs[link.name] = _load(params.resolve(), post_init=False)
    return info


__all__ = ["ExperimentInfo", "load_xp_info"]
