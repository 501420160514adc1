"""Launchers: how a job is started and watched on a connector.

``from experimaestro.launchers import Launcher`` (2.x's import path of the base class) works; the
name is loaded on first use, so that importing a launcher module stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .base import Launcher


def __getattr__(name: str) -> Any:
    if name == "Launcher":
        from .base import Launcher

        return Launcher
    raise AttributeError(f"module 'experimaestro.launchers' has no attribute {name!r}")


__all__ = ["Launcher"]
