"""The scheduler layer: experiments, jobs, dependencies, tokens.

2.x code imports ``JobState`` and ``RunMode`` from here (``from experimaestro.scheduler import
JobState``); they are loaded on first use, so that importing this package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..core.config import RunMode
    from ..launchers.jobfiles import JobState

_NAMES = {"JobState": "experimaestro.launchers.jobfiles", "RunMode": "experimaestro.core.config"}


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'experimaestro.scheduler' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["JobState", "RunMode"]
