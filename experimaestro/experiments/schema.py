"""Turning merged YAML data into the experiment's configuration object (an attrs class).

:func:`structure` walks the schema (an attrs class, usually a ``@configuration`` deriving from
``ConfigurationBase``) and the data together, and collects every problem before reporting them all:

- a missing required field, or a value of the wrong type, is an error naming the key and where the
  value came from (``file:line``, or the ``-c`` option);
- an unknown key is a warning naming it and its file: experimaestro 2.7.0 drops such keys
  silently, so refusing them would break projects that run today.

Values are checked as experimaestro 2.x checks them (pydantic's lax mode): number text is a
number (PyYAML reads ``1e-4`` as text), ``3.0`` is an int but ``3.5`` is not, ``1`` is a float,
``yes``/``0`` are booleans; ``3`` is not a str, ``true`` is not a number.
Values given with ``-c`` are text: a :class:`CommandLineValue` takes the schema's type (kept as
text for a ``str`` field, read as a YAML scalar or list otherwise).
"""

from __future__ import annotations

import enum
import sys
import types
import typing
from pathlib import PurePath
from typing import Any, Callable, Optional, Union

import attrs
import yaml

from .configuration import MISSING
from .yamlfile import ConfigurationError, KeyPath, format_key


class CommandLineValue(str):
    """A value given on the command line (``-c key=value``): text until the schema says its type."""


#: Where each key path's value comes from: ``file:line`` or ``-c key=value``.
Origins = dict[KeyPath, str]

_NoneType = type(None)


class _Walk:
    def __init__(self, origins: Origins, schema: type) -> None:
        self.origins = origins
        self.schema = schema
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def where(self, path: KeyPath) -> str:
        """The origin of ``path``, or of its closest parent that has one."""
        for end in range(len(path), -1, -1):
            origin = self.origins.get(path[:end])
            if origin is not None:
                return origin
        return "the configuration"

    def error(self, path: KeyPath, message: str) -> None:
        self.errors.append(f"{self.where(path)}: {format_key(path)}: {message}")


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _type_name(tp: Any) -> str:
    if tp is Any:
        return "any value"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


_FAIL = object()


def _structure(walk: _Walk, value: Any, tp: Any, path: KeyPath) -> Any:
    """The value of type ``tp`` for ``value``, or ``_FAIL`` (the error recorded)."""
    if isinstance(value, CommandLineValue):
        value = _from_command_line(value, tp)
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        if value is None and _NoneType in args:
            return None
        others = [a for a in args if a is not _NoneType]
        if len(others) == 1:
            return _structure(walk, value, others[0], path)
        for option in others:  # the first that accepts the value, without reporting errors
            trial = _Walk(walk.origins, walk.schema)
            result = _structure(trial, value, option, path)
            if result is not _FAIL:
                walk.warnings.extend(trial.warnings)
                return result
        walk.error(path, f"expected {_type_name(tp)}, got {_describe(value)}")
        return _FAIL
    if origin is typing.Literal:
        if value in args:
            return value
        walk.error(path, f"expected one of {', '.join(map(repr, args))}, got {_describe(value)}")
        return _FAIL
    if attrs.has(tp):
        return _structure_attrs(walk, value, tp, path)
    if origin in (list, typing.List, set, frozenset, tuple) or tp in (list, set, frozenset, tuple):
        return _structure_sequence(walk, value, tp, origin or tp, args, path)
    if origin in (dict, typing.Dict) or tp is dict:
        return _structure_dict(walk, value, args, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _structure_enum(walk, value, tp, path)
    if tp in (bool, int, float):
        converted = _NUMBERS[tp](value)
        ok = converted is not _FAIL
        if ok:
            value = converted
    elif tp is str:
        ok = isinstance(value, str)
    elif isinstance(tp, type) and issubclass(tp, PurePath):
        ok = isinstance(value, (str, PurePath))
        if ok:
            value = tp(value)
    elif isinstance(tp, type):
        ok = isinstance(value, tp)
    else:
        ok = True  # a type we do not know how to check: accepted as it is
    if not ok:
        walk.error(path, f"expected {_type_name(tp)}, got {_describe(value)}")
        return _FAIL
    return value


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    return _FAIL


def _to_int(value: Any) -> Any:
    if isinstance(value, bool):
        return _FAIL
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return _FAIL
    return _FAIL


def _to_float(value: Any) -> Any:
    if isinstance(value, bool):
        return _FAIL
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as text; 2.x takes it as a number
        try:
            return float(value.strip())
        except ValueError:
            return _FAIL
    return _FAIL


#: Numbers and booleans: what experimaestro 2.x (pydantic's lax mode) accepts, and nothing else:
#: number text ("1e-4", "3"), 3.0 for an int, 0/1 and true/yes/on/false/no/off for a bool.
_NUMBERS: dict[type, Callable[[Any], Any]] = {bool: _to_bool, int: _to_int, float: _to_float}


def _from_command_line(value: CommandLineValue, tp: Any) -> Any:
    """``-c key=value``: the text for a ``str`` field, else the value the text reads as in YAML."""
    if tp is str or (typing.get_origin(tp) is Union and str in typing.get_args(tp)):
        return str(value)
    if isinstance(tp, type) and issubclass(tp, (PurePath, enum.Enum)):
        return str(value)
    try:
        return yaml.safe_load(str(value))
    except yaml.YAMLError:
        return str(value)


def _structure_sequence(walk: _Walk, value: Any, tp: Any, kind: Any, args: tuple, path: KeyPath) -> Any:
    if not isinstance(value, (list, tuple)):
        walk.error(path, f"expected {_type_name(tp)}, got {_describe(value)}")
        return _FAIL
    if kind in (tuple, typing.Tuple) and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(value):
            walk.error(path, f"expected {len(args)} items ({_type_name(tp)}), got {len(value)}")
            return _FAIL
        items = [_structure(walk, v, a, (*path, i)) for i, (v, a) in enumerate(zip(value, args))]
    else:
        item_type = args[0] if args else Any
        items = [_structure(walk, v, item_type, (*path, i)) for i, v in enumerate(value)]
    if any(item is _FAIL for item in items):
        return _FAIL
    if kind in (set, typing.Set):
        return set(items)
    if kind is frozenset:
        return frozenset(items)
    if kind in (tuple, typing.Tuple):
        return tuple(items)
    return items


def _structure_dict(walk: _Walk, value: Any, args: tuple, path: KeyPath) -> Any:
    if not isinstance(value, dict):
        walk.error(path, f"expected a mapping, got {_describe(value)}")
        return _FAIL
    key_type, value_type = args if len(args) == 2 else (Any, Any)
    result = {}
    failed = False
    for key, item in value.items():
        k = _structure(walk, key, key_type, (*path, key))
        v = _structure(walk, item, value_type, (*path, key))
        failed = failed or k is _FAIL or v is _FAIL
        result[k] = v
    return _FAIL if failed else result


def _structure_enum(walk: _Walk, value: Any, tp: type[enum.Enum], path: KeyPath) -> Any:
    for member in tp:
        if value == member.value or (isinstance(value, str) and value.lower() == member.name.lower()):
            return member
    choices = ", ".join(repr(m.value) for m in tp)
    walk.error(path, f"expected one of {choices}, got {_describe(value)}")
    return _FAIL


def _structure_attrs(walk: _Walk, value: Any, cls: type, path: KeyPath) -> Any:
    if not isinstance(value, dict):
        walk.error(path, f"expected a mapping (the fields of {cls.__name__}), got {_describe(value)}")
        return _FAIL
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: use attrs' own (maybe strings)
        hints = {}
    fields = {f.name: f for f in attrs.fields(cls)}
    by_alias = {getattr(f, "alias", None) or f.name.lstrip("_"): f for f in fields.values()}
    kwargs: dict[str, Any] = {}
    failed = False
    for key, item in value.items():
        f = by_alias.get(key) if isinstance(key, str) else None
        if f is None:
            walk.warnings.append(
                f"{walk.where((*path, key))}: unknown key {format_key((*path, key))!r} "
                f"({cls.__name__} has no such field): ignored"
            )
            continue
        if not f.init:
            continue
        result = _structure(walk, item, hints.get(f.name, f.type or Any), (*path, key))
        if result is _FAIL:
            failed = True
        else:
            kwargs[getattr(f, "alias", None) or f.name.lstrip("_")] = result
    for alias, f in by_alias.items():
        if f.init and (f.default is attrs.NOTHING or f.default is MISSING) and alias not in value:
            hint = f"-c {format_key((*path, alias))}=..."
            walk.errors.append(
                f"{walk.where(path)}: {format_key((*path, alias))}: required field missing "
                f"({cls.__name__}.{alias}, {_type_name(hints.get(f.name, f.type))}): add it to "
                f"the YAML file or give {hint}"
            )
            failed = True
    if failed:
        return _FAIL
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # an attrs validator of the user's
        walk.error(path, f"{cls.__name__}: {exc}")
        return _FAIL


def structure(
    schema: type,
    data: dict[str, Any],
    origins: Origins,
    warn: Optional[Callable[[str], None]] = None,
) -> Any:
    """The ``schema`` object for ``data``. Warnings (unknown keys) go to ``warn``; errors raise a
    :class:`ConfigurationError` listing them all."""
    if not attrs.has(schema):
        raise ConfigurationError(
            f"the configuration schema {getattr(schema, '__qualname__', schema)!r} is not an attrs "
            f"class: decorate it with @configuration (from experimaestro.experiments)"
        )
    walk = _Walk(origins, schema)
    result = _structure(walk, data, schema, ())
    for message in walk.warnings:
        if warn is not None:
            warn(message)
    if walk.errors or result is _FAIL:
        count = len(walk.errors)
        raise ConfigurationError(
            f"{count} error{'s' if count != 1 else ''} in the configuration ({schema.__name__}):\n"
            + "\n".join(f"  {e}" for e in walk.errors)
        )
    return result
