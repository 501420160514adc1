"""experimaestro: typed experiment configurations, unique job identifiers, and a scheduler that runs
jobs locally, over SSH or on Slurm.

The public API is re-exported here. Scheduler names are loaded on first use, so that a job process,
which only needs the core, starts fast.
"""

from __future__ import annotations

from pathlib import Path  # 2.x re-exports it (`from experimaestro import Path`)
from typing import TYPE_CHECKING, Any as _Any

from .core.config import (
    Config,
    InstanceConfig,
    LightweightTask,
    RunMode,
    SealedError,
    Task,
    setmeta,
    tag,
)
from typing import Annotated

from .core.cache import cache
from .core.copyconfig import copyconfig
from .core.datapath import DataPath, OptionalDataPath
from .core.hooks import SubmitHook
from .core.partial import ParameterGroup, Partial, param_group, partial
from .core.paths import STDERR, STDOUT, PathGenerator, pathgenerator
from .core.resumable import GracefulTimeout, ResumableTask, TaskCancelled
from .core.tags import tags, tagspath
from .core.typeids import Identifier
from .core.types import (
    Any,
    Choices,
    Constant,
    Meta,
    Option,
    Param,
    ValidationError,
    field,
    help,
)
from .version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .launcherfinder import find_launcher
    from .launchers.base import Launcher
    from .notifications import progress
    from .progressbar import tqdm
    from .savedconfig import deserialize, serialize
    from .scheduler.experiment import (
        DirtyGitAction,
        DirtyGitError,
        FailedExperiment,
        Interrupted,
        experiment,
    )
    from .scheduler.tokens import CounterToken
    from .xpinfo import ExperimentInfo, load_xp_info
    from .connectors.ssh import SshConnector

_LAZY = {
    "experiment": "experimaestro.scheduler.experiment",
    "FailedExperiment": "experimaestro.scheduler.experiment",
    "Interrupted": "experimaestro.scheduler.experiment",
    "Job": "experimaestro.scheduler.job",
    "JobState": "experimaestro.launchers.jobfiles",
    "CounterToken": "experimaestro.scheduler.tokens",
    "explain": "experimaestro.core.explain",
    "find_launcher": "experimaestro.launcherfinder",
    "JobIdentifier": "experimaestro.core.identifier",
    "sealed_set": "experimaestro.core.tags",
    "Launcher": "experimaestro.launchers.base",
    "tqdm": "experimaestro.progressbar",
    "serialize": "experimaestro.savedconfig",
    "deserialize": "experimaestro.savedconfig",
    "load_xp_info": "experimaestro.xpinfo",
    "ExperimentInfo": "experimaestro.xpinfo",
    "DirtyGitAction": "experimaestro.scheduler.gitstate",
    "DirtyGitError": "experimaestro.scheduler.gitstate",
    "progress": "experimaestro.notifications",
    "SshConnector": "experimaestro.connectors.ssh",
    "SlurmLauncher": "experimaestro.launchers.slurm",
    "SlurmOptions": "experimaestro.launchers.slurm",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'experimaestro' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


# Registers the scheduler's submit() hook (a light module: heavy imports happen on first use).
from .scheduler import submission as _submission  # noqa: E402,F401

__all__ = [
    "Annotated",
    "Any",
    "Choices",
    "Config",
    "Constant",
    "CounterToken",
    "DataPath",
    "DirtyGitAction",
    "DirtyGitError",
    "ExperimentInfo",
    "FailedExperiment",
    "GracefulTimeout",
    "Identifier",
    "InstanceConfig",
    "Interrupted",
    "Job",
    "JobIdentifier",
    "JobState",
    "Launcher",
    "SshConnector",
    "LightweightTask",
    "Meta",
    "Option",
    "OptionalDataPath",
    "Param",
    "Path",
    "ParameterGroup",
    "Partial",
    "PathGenerator",
    "ResumableTask",
    "RunMode",
    "STDERR",
    "STDOUT",
    "SealedError",
    "serialize",
    "SubmitHook",
    "SlurmLauncher",
    "SlurmOptions",
    "Task",
    "TaskCancelled",
    "ValidationError",
    "__version__",
    "cache",
    "copyconfig",
    "deserialize",
    "experiment",
    "explain",
    "field",
    "find_launcher",
    "help",
    "load_xp_info",
    "param_group",
    "partial",
    "pathgenerator",
    "progress",
    "sealed_set",
    "setmeta",
    "tag",
    "tags",
    "tagspath",
    "tqdm",
]
