"""``DataPath``: a path parameter whose file or folder is part of the configuration's data, so
that :func:`experimaestro.serialize` copies it next to the saved configuration (2.x's name).

```python
class Model(Config):
    weights: DataPath            # a Path, never part of the identifier (as every path)
    "The trained weights"
```
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Optional

from .types import ParamKind


class _DataMarker:
    """Marks an annotation as a data path."""

    def __repr__(self) -> str:
        return "DATA"


DATA = _DataMarker()

#: A path whose file or folder :func:`experimaestro.serialize` copies (not in the identifier).
DataPath = Annotated[Path, ParamKind.META, DATA]
#: The same, where None is allowed.
OptionalDataPath = Annotated[Optional[Path], ParamKind.META, DATA]


def _is_data(annotation: object) -> bool:
    while typing.get_origin(annotation) is Annotated:
        if any(extra is DATA for extra in annotation.__metadata__):  # type: ignore[attr-defined]
            return True
        annotation = typing.get_args(annotation)[0]
    return False


_DATA_ARGUMENTS: dict[type, list[str]] = {}


def data_arguments(cls: type) -> list[str]:
    """The names of the data-path parameters of a configuration class (inherited ones too)."""
    cached = _DATA_ARGUMENTS.get(cls)
    if cached is not None:
        return cached
    from .arguments import _resolve_annotation
    from .config import Config

    names: list[str] = []
    for base in reversed(cls.__mro__):
        if base is object or not issubclass(base, Config):
            continue
        for name, annotation in base.__dict__.get("__annotations__", {}).items():
            if _is_data(_resolve_annotation(base, name, annotation)) and name not in names:
                names.append(name)
    _DATA_ARGUMENTS[cls] = names
    return names


__all__ = ["DATA", "DataPath", "OptionalDataPath", "data_arguments"]
