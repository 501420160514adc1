"""What experimaestro 2.x experiments run by ``experimaestro run-experiment`` import.

- :func:`configuration` and :class:`ConfigurationBase`: the schema of the YAML configuration;
- :class:`ExperimentHelper`: handed to the experiment's ``run(helper, configuration)``;
- :func:`mock_modules`: stand-ins for heavy libraries in a ``pre_experiment`` file.

See docs/migrating.md and :mod:`experimaestro.experiments.run`.
"""

from .configuration import ConfigurationBase, DirtyGitAction, configuration
from .helper import ExperimentHelper
from .mockmodule import FakeModuleFinder, mock_modules, noop_decorator

__all__ = [
    "ConfigurationBase",
    "DirtyGitAction",
    "ExperimentHelper",
    "FakeModuleFinder",
    "configuration",
    "mock_modules",
    "noop_decorator",
]
