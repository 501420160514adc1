"""``@cache("name")``: a method whose result is kept in a file of the workspace, per configuration
(experimaestro 2.x's decorator, same folder layout).

```python
class Vocabulary(Config):
    corpus: Param[Corpus]

    @cache("vocabulary.pkl")
    def load(self, path: Path):
        if not path.exists():
            pickle.dump(build(self.corpus), path.open("wb"))
        return pickle.load(path.open("rb"))
```

The method receives the file's path after ``self`` (then the caller's arguments); it decides
what to do with it. The file is ``<workspace>/config/<type>/<identifier>/<name>`` (``<type>``
is the class's ``module.QualName``, or its ``__xpmid__``), so every job and experiment of a
workspace that uses an equal configuration shares it; calls run one at a time across processes
(a file lock ``<name>.lock`` beside it). The workspace is the running job's, or the current
experiment's in the controller (2.7.0 only allows a running job).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: The workspaces of the running experiments or job of this process, innermost last.
_workspaces: list[Path] = []


def push_workspace(path: Path) -> None:
    """Make ``path`` the workspace of cached methods (an experiment's entry, a job's start)."""
    _workspaces.append(Path(path))


def pop_workspace(path: Path) -> None:
    """Undo :func:`push_workspace` (an experiment's exit)."""
    for i in range(len(_workspaces) - 1, -1, -1):
        if _workspaces[i] == Path(path):
            del _workspaces[i]
            return


def cache_path(config: Any, name: str, workspace: Optional[Path] = None) -> Path:
    """The file of ``@cache(name)`` for ``config`` (``workspace``: the current one)."""
    from .config import module_name

    if workspace is None:
        if not _workspaces:
            raise RuntimeError(
                f"@cache({name!r}) on {type(config).__qualname__}: no workspace is known here; "
                f"call the method in a job, or inside `with experiment(...)`"
            )
        workspace = _workspaces[-1]
    cls = type(config)
    xpmid = cls.__dict__.get("__xpmid__")
    typename = str(xpmid) if xpmid is not None else f"{module_name(cls)}.{cls.__qualname__}"
    return workspace / "config" / typename / config.__xpm__.identifier.hex() / name


def cache(name: str) -> Callable[[F], F]:
    """Decorate a configuration's method ``method(self, path, *args, **kwargs)`` so that it is
    called with ``path``, the configuration's cache file ``name`` (see the module docstring)."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def cached(self: Any, *args: Any, **kwargs: Any) -> Any:
            # The files are the connector's business: the core itself does no I/O.
            from ..connectors.local import LocalConnector

            connector = LocalConnector.instance()
            path = cache_path(self, name)
            connector.mkdir(path.parent)
            with connector.lock(path.with_name(path.name + ".lock")):
                return method(self, path, *args, **kwargs)

        return cached  # type: ignore[return-value]

    return decorate


__all__ = ["cache", "cache_path", "pop_workspace", "push_workspace"]
