"""The requirement grammar: ``"duration=4h & cuda(mem=16G)*2 | cpu(cores=4, mem=8G)"``.

::

    requirement := alternative ("|" alternative)*
    alternative := term ("&" term)*
    term        := "duration" "=" NUMBER DURATION_UNIT
                 | "cpu" "(" [cpu_arg ("," cpu_arg)*] ")"
                 | ("cuda" | "gpu" | "mps") "(" ["mem" "=" SIZE] ")" ["*" COUNT]
    cpu_arg     := "cores" "=" COUNT | "mem" "=" SIZE
    SIZE        := NUMBER SIZE_UNIT

Spaces are allowed between all tokens. Units are in :mod:`.units`. ``cpu(...)`` without ``cores``
asks for one core (as in 2.x). Terms of an alternative combine as in
:class:`~.specs.HostSimpleRequirement` (``&``); alternatives are kept in order. A string that does
not follow the grammar raises :class:`RequirementSyntaxError`, which shows the string with a caret
where parsing stopped and what was expected there.
"""

from __future__ import annotations

import re
from typing import Callable, NoReturn, Optional

from . import specs
from .specs import HostSimpleRequirement, RequirementUnion
from .units import (
    DURATION_UNITS_TEXT,
    SIZE_UNITS_TEXT,
    duration_in_seconds,
    size_in_bytes,
)


class RequirementSyntaxError(ValueError):
    """A requirement string that does not follow the grammar; ``position`` is where it stopped."""

    def __init__(self, text: str, position: int, expected: str) -> None:
        self.text = text
        self.position = position
        self.expected = expected
        super().__init__(
            f"invalid requirement at character {position + 1}: {expected}\n"
            f"  {text}\n  {' ' * position}^"
        )


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_INTEGER = re.compile(r"\d+")
_WORD = re.compile(r"[A-Za-z_]+")
_ACCELERATORS: dict[str, Callable[..., HostSimpleRequirement]] = {
    "cuda": specs.cuda_gpu,
    "gpu": specs.gpu,
    "mps": specs.mps_gpu,
}
_TERMS = "duration=..., cpu(...), cuda(...), gpu(...) or mps(...)"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, expected: str, position: Optional[int] = None) -> NoReturn:
        raise RequirementSyntaxError(self.text, self.pos if position is None else position, expected)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def accept(self, literal: str) -> bool:
        self.skip()
        if self.text.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: str, expected: str = "") -> None:
        if not self.accept(literal):
            self.fail(expected or f"expected {literal!r}")

    def token(self, pattern: re.Pattern[str], expected: str) -> tuple[str, int]:
        self.skip()
        match = pattern.match(self.text, self.pos)
        if match is None:
            self.fail(expected)
        start, self.pos = self.pos, match.end()
        return match.group(), start

    def count(self, what: str) -> int:
        digits, start = self.token(_INTEGER, f"expected a whole number ({what})")
        if int(digits) < 1:
            self.fail(f"{what} must be at least 1", start)
        return int(digits)

    def quantity(self, convert: Callable[[str, str], Optional[int]], what: str, units: str) -> int:
        number, _ = self.token(_NUMBER, f"expected a {what}: a number and a unit ({units})")
        self.skip()
        unit_start = self.pos
        unit = _WORD.match(self.text, self.pos)
        value = convert(number, unit.group()) if unit else None
        if value is None:
            self.fail(f"expected a {what} unit after {number!r}: {units}", unit_start)
        self.pos = unit.end()  # type: ignore[union-attr]
        return value

    def size(self) -> int:
        return self.quantity(size_in_bytes, "size", SIZE_UNITS_TEXT)

    def parse(self) -> RequirementUnion:
        alternatives = [self.alternative()]
        while self.accept("|"):
            alternatives.append(self.alternative())
        self.skip()
        if self.pos < len(self.text):
            self.fail("expected '&', '|' or the end")
        return RequirementUnion(*alternatives)

    def alternative(self) -> HostSimpleRequirement:
        result = self.term()
        while self.accept("&"):
            result = result & self.term()
        return result

    def term(self) -> HostSimpleRequirement:
        self.skip()
        start = self.pos
        name = _WORD.match(self.text, self.pos)
        keyword = name.group() if name else ""
        if keyword == "duration":
            self.pos = name.end()  # type: ignore[union-attr]
            self.expect("=", "expected '=' after 'duration'")
            requirement = HostSimpleRequirement()
            requirement.duration = self.quantity(
                duration_in_seconds, "duration", DURATION_UNITS_TEXT
            )
            return requirement
        if keyword == "cpu":
            self.pos = name.end()  # type: ignore[union-attr]
            values = self.arguments("cpu", {"cores": lambda: self.count("cores"), "mem": self.size})
            return specs.cpu(mem=values.get("mem"), cores=values.get("cores", 1))
        if keyword in _ACCELERATORS:
            self.pos = name.end()  # type: ignore[union-attr]
            values = self.arguments(keyword, {"mem": self.size})
            requirement = _ACCELERATORS[keyword](mem=values.get("mem"))
            if self.accept("*"):
                requirement = requirement * self.count(f"the number of {keyword} GPUs")
            return requirement
        self.fail(f"expected {_TERMS}", start)

    def arguments(self, term: str, parsers: dict[str, Callable[[], int]]) -> dict[str, int]:
        names = " or ".join(f"{key}=" for key in parsers)
        self.expect("(", f"expected '(' after {term!r}")
        values: dict[str, int] = {}
        if self.accept(")"):
            return values
        while True:
            self.skip()
            key_start = self.pos
            key = _WORD.match(self.text, self.pos)
            if key is None or key.group() not in parsers:
                self.fail(f"expected {names} in {term}(...)", key_start)
            if key.group() in values:
                self.fail(f"{key.group()}= is given twice in {term}(...)", key_start)
            self.pos = key.end()
            self.expect("=", f"expected '=' after {key.group()!r}")
            values[key.group()] = parsers[key.group()]()
            if self.accept(")"):
                return values
            self.expect(",", f"expected ',' or ')' in {term}(...)")


def parse(expr: str) -> RequirementUnion:
    """Parse a requirement string (see the module's grammar) into its alternatives.

    >>> str(parse("duration=4h & cuda(mem=16G)*2 | cpu(cores=4, mem=8G)"))
    'duration=4h & cuda(mem=16G)*2 | cpu(cores=4, mem=8G)'
    """
    if not isinstance(expr, str):
        raise TypeError(f"parse() takes a requirement string, not {type(expr).__name__}")
    return _Parser(expr).parse()
