"""``Identifier``: experimaestro 2.x's builder of dotted type ids.

```python
from experimaestro import Config, Identifier

ns = Identifier("mylab.models")

class BM25(Config):
    __xpmid__ = ns.bm25          # the type id "mylab.models.bm25"
```

Type ids are lowercase (docs/identifier.md), so ``Identifier("A").B`` is ``a.b``. The job
identifier (the digest of a configuration) is :class:`~experimaestro.core.identifier.JobIdentifier`.
"""

from __future__ import annotations

from typing import Union


class Identifier:
    """A dotted, lowercase type id; an attribute, an item or a call appends one component."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"Identifier() takes a non-empty str, got {name!r}")
        self.name = name.lower()

    def __call__(self, key: str) -> "Identifier":
        return Identifier(f"{self.name}.{key}")

    def __getattr__(self, key: str) -> "Identifier":
        if key == "name" or (key.startswith("__") and key.endswith("__")):
            # Never a component: copy, pickle and introspection probe special names (and "name"
            # is only missing while unpickling).
            raise AttributeError(key)
        return self(key)

    def __getitem__(self, key: str) -> "Identifier":
        return self(key)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Identifier):
            return other.name == self.name
        if isinstance(other, str):
            return other.lower() == self.name
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name

    def __getstate__(self) -> str:
        return self.name

    def __setstate__(self, state: str) -> None:
        self.name = state


def identifier(name: Union[str, Identifier]) -> Identifier:
    """``name`` as an :class:`Identifier` (returned as is when it is one already)."""
    return name if isinstance(name, Identifier) else Identifier(str(name))
