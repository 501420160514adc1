"""Readable paths to a value inside a configuration graph, for error messages.

``find_path(learn, fn)`` gives ``"Learn.model.fns[1]['k']"``: the root's class, then parameter names,
list and tuple indices and dict keys. Only error paths use it, so it favours clarity over speed.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterator, Optional

from .config import Config, xpmtype

_CONTAINERS = (Config, list, tuple, set, frozenset, dict)


def _steps(obj: Any, path: str) -> Iterator[tuple[Any, str]]:
    """The values directly inside ``obj``, each with its path."""
    if isinstance(obj, Config):
        values = obj.__dict__  # never triggers the loading of a referenced task
        for name in xpmtype(type(obj)).arguments:
            if name in values:
                yield values[name], f"{path}.{name}"
        for i, init in enumerate(obj.__xpm__.init_tasks):
            yield init, f"{path} (init task {i})"
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield value, f"{path}[{i}]"
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield key, f"{path} (the key {key!r})"
            yield value, f"{path}[{key!r}]"
    elif isinstance(obj, (set, frozenset)):
        for value in obj:
            yield value, f"{path} (an item of the set)"


def find_path(root: Config, target: Any) -> Optional[str]:
    """The shortest path from ``root`` to the object ``target`` (found by identity), or None."""
    return search_path(root, lambda value: value is target)


def search_path(root: Config, match: Callable[[Any], bool]) -> Optional[str]:
    """The shortest path from ``root`` to a value for which ``match`` is true, or None."""
    path = type(root).__qualname__
    if match(root):
        return path
    seen = {id(root)}
    queue: deque[tuple[Any, str]] = deque([(root, path)])
    while queue:
        obj, path = queue.popleft()
        for child, child_path in _steps(obj, path):
            if match(child):
                return child_path
            if isinstance(child, _CONTAINERS) and id(child) not in seen:
                seen.add(id(child))
                queue.append((child, child_path))
    return None


def parameter_path(root: Config, owner: Config, name: str, target: Any) -> str:
    """How an error names a value: ``Owner.name``, followed by ``(at <path from root>)`` when the
    value is nested (in a sub-configuration of ``root``, or inside a list or dict)."""
    here = f"{type(owner).__qualname__}.{name}"
    where = find_path(root, target)
    return here if where is None or where == here else f"{here} (at {where})"
