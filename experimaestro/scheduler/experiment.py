"""Experiments (work in progress)."""
from __future__ import annotations
from typing import Any, Optional

_current: list[Any] = []


def current_experiment() -> Optional[Any]:
    """The innermost running experiment of this process, or None."""
    return _current[-1] if _current else None
