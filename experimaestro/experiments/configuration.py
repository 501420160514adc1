"""The schema of an experiment's YAML configuration: ``@configuration`` classes.

```python
from experimaestro.experiments import ConfigurationBase, configuration

@configuration
class Configuration(ConfigurationBase):
    learning_rate: float = 1e-3
    seeds: list[int] = [1, 2]
```

``@configuration`` (with or without parentheses, keyword arguments going to ``attrs.define``) makes
an attrs class whose fields are keyword-only, so a subclass may add required fields after the
base's defaults. ``ConfigurationBase`` holds the keys that ``experimaestro run-experiment`` reads
itself (docs/migrating.md).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, TypeVar, overload

import attrs

# The one enum of dirty_git, shared with experiment(dirty_git=...); 2.x has it here.
from ..scheduler.gitstate import DirtyGitAction

try:  # lets type checkers see the keyword-only constructor
    from typing import dataclass_transform
except ImportError:  # Python 3.10
    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:  # type: ignore[no-redef]
        return lambda f: f

T = TypeVar("T", bound=type)


class _Missing:
    """The default of a field that the YAML must give (``ConfigurationBase.id``): Python code may
    still build the object without it, as in 2.x."""

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: A field whose default is MISSING is required in the YAML files.
MISSING: Any = _Missing()


@overload
def configuration(cls: T, /) -> T: ...


@overload
def configuration(**kwargs: Any) -> Callable[[T], T]: ...


@dataclass_transform(kw_only_default=True)
def configuration(cls: Any = None, /, **kwargs: Any) -> Any:
    """Make ``cls`` an attrs class with keyword-only fields (``@configuration`` or
    ``@configuration(...)``; keyword arguments go to ``attrs.define``)."""
    options = {"kw_only": True, "slots": False, "eq": True, "unsafe_hash": True, **kwargs}

    def wrap(c: T) -> T:
        return attrs.define(c, **options)

    return wrap if cls is None else wrap(cls)


@configuration
class ConfigurationBase:
    """The keys every experiment configuration has (the YAML's reserved keys)."""

    id: str = MISSING
    """The experiment's name (required in the YAML files) (its folder under ``<workspace>/experiments/``)."""

    file: str = "experiment"
    """The Python file defining ``run`` (``.py`` optional), relative to the YAML naming it."""

    module: Optional[str] = None
    """The module defining ``run`` (instead of ``file``)."""

    pythonpath: Optional[List[str]] = None
    """Folders put on the Python path (of the controller and of the jobs), relative to the YAML."""

    parent: Optional[str] = None
    """A YAML file loaded before this one (relative to it); prefer ``imports``."""

    imports: Optional[List[str]] = None
    """YAML files loaded before this one, in order (relative to it)."""

    pre_experiment: Optional[str] = None
    """A Python file (relative to the YAML) or module run before the experiment's code is imported
    (to set environment variables, or ``mock_modules([...])`` heavy libraries)."""

    title: str = ""
    subtitle: str = ""
    paper: str = ""
    description: str = ""

    add_timestamp: bool = False
    """Add ``-YYYYMMDD-HHMM`` to the experiment's id."""

    dirty_git: DirtyGitAction = DirtyGitAction.WARN
    """When the code's git repository has uncommitted changes: ``ignore``, ``warn`` or ``error``."""


__all__ = ["MISSING", "ConfigurationBase", "DirtyGitAction", "configuration"]
