"""Tags: named values that describe a configuration for people (folder names, result tables).

Tags never enter the identifier. ``tag(value)`` (in ``config.py``) marks a parameter value as a tag;
``cfg.tag(name, value)`` sets one directly.
"""

from __future__ import annotations

from typing import Any

from .config import Config, tag

__all__ = ["tag", "tags", "tagspath", "sealed_set"]


def tags(config: Config) -> dict[str, Any]:
    """The tags of a configuration graph, sorted by name (a sub-configuration's tags count)."""
    return dict(sorted(config.tags().items()))


def _clean(text: str) -> str:
    return text.replace("/", "-")


def tagspath(config: Config) -> str:
    """``"k1=v1_k2=v2"``: the tags sorted by key, usable as a folder name (``/`` becomes ``-``)."""
    return "_".join(f"{_clean(str(k))}={_clean(str(v))}" for k, v in tags(config).items())


def sealed_set(*items: Any) -> frozenset:
    """A set of configurations, sealed first: ``sealed_set(a, b)`` or ``sealed_set([a, b])``
    (for experimaestro 2.x compatibility; plain sets of configurations work too)."""
    if len(items) == 1 and not isinstance(items[0], Config):
        items = tuple(items[0])
    for item in items:
        item.__xpm__.seal()
    return frozenset(items)
