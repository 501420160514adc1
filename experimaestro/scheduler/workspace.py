"""The workspace layout, shared by every experiment that uses the same folder.

```
<workdir>/
  jobs/<type id>/<identifier>/          one folder per job (docs/architecture.md, section 3)
  experiments/<name>/
    results/                            xp.resultspath: the experiment's own results
    jobs/<type id>/<identifier>         links to the jobs it submitted
    experiment.log                      the controller's log, appended run after run
  .experimaestro/tokens/<name>/         counter tokens (shared by all controllers)
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Union

# 2.x defines RunMode here (``from experimaestro.scheduler.workspace import RunMode``).
from ..core.config import RunMode  # noqa: F401


class Workspace:
    """A workspace folder and the places inside it.

    In an experiment (``xp.workspace``), it also carries what 2.x code reads there: ``run_mode``,
    ``env`` (the variables set in every job, ``xp.setenv``), ``launcher`` (the default one) and
    ``connector`` (this machine's, or the default launcher's).
    """

    def __init__(self, path: Union[str, Path], run_mode: Any = None, launcher: Any = None) -> None:
        self.path = Path(path).expanduser().absolute()
        self.run_mode = run_mode
        self._launcher = launcher
        #: Environment variables set in every job of the experiment (``xp.setenv``).
        self.env: dict[str, str] = {}

    @property
    def launcher(self) -> Any:
        """The launcher of the experiment's jobs: the one given to ``experiment(launcher=...)``,
        else the local launcher they get (2.x code calls ``xp.workspace.launcher.setenv(...)``)."""
        if self._launcher is None:
            from ..launchers.direct import default_launcher

            return default_launcher()
        return self._launcher

    @launcher.setter
    def launcher(self, launcher: Any) -> None:
        self._launcher = launcher

    @property
    def connector(self) -> Any:
        """The connector of the default launcher (the local machine's when there is none)."""
        connector = getattr(self._launcher, "connector", None)
        if connector is None:
            from ..connectors.local import LocalConnector

            connector = LocalConnector.instance()
        return connector

    @property
    def jobs(self) -> Path:
        return self.path / "jobs"

    @property
    def experiments(self) -> Path:
        return self.path / "experiments"

    @property
    def private(self) -> Path:
        return self.path / ".experimaestro"

    def experiment(self, name: str) -> Path:
        return self.experiments / name

    def job_directories(self) -> Iterator[Path]:
        """Every job folder of the workspace (``jobs/<type id>/<identifier>``)."""
        if not self.jobs.is_dir():
            return
        for type_dir in sorted(self.jobs.iterdir()):
            if type_dir.is_dir():
                for job_dir in sorted(type_dir.iterdir()):
                    if job_dir.is_dir():
                        yield job_dir

    def experiment_names(self) -> list[str]:
        if not self.experiments.is_dir():
            return []
        return sorted(p.name for p in self.experiments.iterdir() if p.is_dir())

    def create(self) -> None:
        for folder in (self.jobs, self.experiments, self.private):
            folder.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Workspace({self.path})"
