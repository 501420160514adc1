"""Sizes and durations in requirement strings: ``16G``, ``1.5GiB``, ``4h``, ``2 days``.

Sizes: a number (decimals allowed) and a unit, case-insensitive. Decimal units count in powers of
1000 and binary units in powers of 1024, as experimaestro 2.x does (``16G`` is 16,000,000,000
bytes; ``16GiB`` is 17,179,869,184 bytes):

====================  ===========================
``B``                 1 byte
``K``, ``KB``         10**3       (``KiB``: 2**10)
``M``, ``MB``         10**6       (``MiB``: 2**20)
``G``, ``GB``         10**9       (``GiB``: 2**30)
``T``, ``TB``         10**12      (``TiB``: 2**40)
====================  ===========================

A number without a unit is refused (it would silently mean bytes). Durations: a number and one of
``s``/``sec``/``second(s)``, ``m``/``min(s)``/``minute(s)``, ``h``/``hour(s)``, ``d``/``day(s)``.
Fractions are rounded up to the next byte or second.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Callable, Optional, Union

#: Bytes per size unit (keys in lower case).
SIZE_UNITS: dict[str, int] = {"b": 1}
for _power, _letter in enumerate("kmgt", start=1):
    SIZE_UNITS[_letter] = SIZE_UNITS[_letter + "b"] = 1000**_power
    SIZE_UNITS[_letter + "ib"] = 1024**_power

#: Seconds per duration unit.
DURATION_UNITS: dict[str, int] = {}
for _seconds, _names in (
    (1, ("s", "sec", "secs", "second", "seconds")),
    (60, ("m", "min", "mins", "minute", "minutes")),
    (3600, ("h", "hour", "hours")),
    (86400, ("d", "day", "days")),
):
    DURATION_UNITS.update(dict.fromkeys(_names, _seconds))

SIZE_UNITS_TEXT = "B, K, M, G, T (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
DURATION_UNITS_TEXT = "s, m, h or d (or sec, min, hours, days...)"

_QUANTITY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def size_in_bytes(number: str, unit: str) -> Optional[int]:
    """``number`` (digits, maybe a decimal point) times ``unit``, rounded up; None if the unit is
    not a size unit."""
    factor = SIZE_UNITS.get(unit.lower())
    return None if factor is None else math.ceil(Fraction(number) * factor)


def duration_in_seconds(number: str, unit: str) -> Optional[int]:
    """``number`` times ``unit``, rounded up to a second; None if the unit is not a duration unit."""
    factor = DURATION_UNITS.get(unit.lower())
    return None if factor is None else math.ceil(Fraction(number) * factor)


def _parse_quantity(
    text: str, convert: Callable[[str, str], Optional[int]], what: str, example: str, units: str
) -> int:
    match = _QUANTITY.fullmatch(text)
    if match is None or not match.group(2):
        raise ValueError(
            f"{text!r} is not a {what}: write a number and a unit, e.g. {example} (units: {units})"
        )
    value = convert(*match.groups())
    if value is None:
        raise ValueError(f"{text!r}: unknown {what} unit {match.group(2)!r} (use {units})")
    return value


def parse_size(text: Union[str, int]) -> int:
    """A size in bytes from ``"16G"``, ``"1.5GiB"``, ``"512 MB"`` (an int is taken as bytes)."""
    if isinstance(text, int):
        return text
    return _parse_quantity(text, size_in_bytes, "size", "'16G' or '1.5GiB'", SIZE_UNITS_TEXT)


def parse_duration(text: Union[str, int, float]) -> int:
    """A duration in seconds from ``"4h"``, ``"30 min"``, ``"2 days"`` (a number is seconds)."""
    if isinstance(text, (int, float)):
        return math.ceil(text)
    return _parse_quantity(text, duration_in_seconds, "duration", "'4h' or '30m'",
                           DURATION_UNITS_TEXT)


def format_size(size: int) -> str:
    """The shortest exact spelling of ``size`` in the requirement grammar (``16G``, ``1536MiB``)."""
    if size == 0:
        return "0B"
    best = f"{size}B"
    for unit in ("TiB", "GiB", "MiB", "KiB", "T", "G", "M", "K"):
        factor = SIZE_UNITS[unit.lower()]
        if size % factor == 0:
            candidate = f"{size // factor}{unit}"
            if len(candidate) < len(best):
                best = candidate
    return best


def format_duration(seconds: int) -> str:
    """``seconds`` in the largest unit that divides it exactly (``4h``, ``90m``, ``45s``)."""
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % factor == 0:
            return f"{seconds // factor}{unit}"
    return f"{seconds}s"
