"""A fresh module named ``pbids`` for identifier cases (type ids ``pbids.<class name lowercased>``),
as experimaestro 2.7.0's reference identifiers were computed (tests/data/ids_270*.json)."""

from __future__ import annotations

import sys
import types
from typing import Iterator


def fresh_pbids() -> Iterator[types.ModuleType]:
    """Register a new empty ``pbids`` module in ``sys.modules`` for the duration of a test."""
    module = types.ModuleType("pbids")
    module.__file__ = "pbids.py"
    previous = sys.modules.get("pbids")
    sys.modules["pbids"] = module
    try:
        yield module
    finally:
        if previous is None:
            sys.modules.pop("pbids", None)
        else:
            sys.modules["pbids"] = previous
