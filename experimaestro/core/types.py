"""Parameter declarations and the type model that validates their values.

A parameter is declared by annotating a class attribute of a :class:`~experimaestro.core.config.Config`:

* ``Param[T]``: part of the identifier;
* ``Meta[T]``: not part of the identifier (``Option[T]`` is its deprecated alias);
* ``Constant[T]``: has a default and can never be set; it *is* part of the identifier.

``field(...)`` gives finer control over defaults (see ``docs/identifier.md``).

This module is pure: it imports no scheduler, does no I/O.
"""

from __future__ import annotations

import collections.abc
import enum
import numbers
import os
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar, Union

T = TypeVar("T")


class ParamKind(enum.Enum):
    """How a declared attribute takes part in a configuration."""

    PARAM = "param"
    META = "meta"
    CONSTANT = "constant"


#: A parameter that enters the identifier: ``epochs: Param[int] = 100``.
Param = Annotated[T, ParamKind.PARAM]
#: A parameter that does not enter the identifier: ``checkpoint_every: Meta[int] = 10``.
Meta = Annotated[T, ParamKind.META]
#: A value fixed by the class (it has a default, cannot be set) that enters the identifier.
Constant = Annotated[T, ParamKind.CONSTANT]


class _OptionAlias:
    """``Option[T]``: the deprecated alias of ``Meta[T]``; using it warns."""

    def __getitem__(self, tp: Any) -> Any:
        warnings.warn(
            "Option[...] is deprecated: write Meta[...] instead (same meaning).",
            DeprecationWarning,
            stacklevel=2,
        )
        return Annotated[tp, ParamKind.META]

    def __repr__(self) -> str:
        return "Option"


if typing.TYPE_CHECKING:  # pragma: no cover - for type checkers only
    Option = Annotated[T, ParamKind.META]
else:
    Option = _OptionAlias()


class help:  # noqa: N801 - lower case on purpose: ``Annotated[int, help("...")]``
    """Help text attached with ``Annotated[T, help("...")]``."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"help({self.text!r})"


class _NotSet:
    """Sentinel for 'no value'."""

    _instance: Optional["_NotSet"] = None

    def __new__(cls) -> "_NotSet":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOTSET"

    def __bool__(self) -> bool:
        return False


NOTSET: Any = _NotSet()


class FieldSpec:
    """What ``field(...)`` returns: the default and identifier options of one parameter."""

    __slots__ = ("default", "default_factory", "ignore_default", "ignored")

    def __init__(
        self,
        default: Any = NOTSET,
        default_factory: Optional[Callable[[], Any]] = None,
        ignore_default: bool = False,
        ignored: bool = False,
    ) -> None:
        if default is not NOTSET and default_factory is not None:
            raise TypeError("field(): give either default= or default_factory=, not both")
        self.default = default
        self.default_factory = default_factory
        self.ignore_default = ignore_default
        self.ignored = ignored


def field(
    *,
    default: Any = NOTSET,
    default_factory: Optional[Callable[[], Any]] = None,
    ignore_default: bool = False,
    ignored: bool = False,
) -> Any:
    """Declare a parameter's default and identifier behaviour.

    * ``field(default=3)``: the value is **always** encoded in the identifier, even at its default.
    * ``field(default=3, ignore_default=True)``: like a bare ``= 3``, left out when equal to the default.
    * ``field(default_factory=f)``: the default is ``f()``, computed for each new configuration.
    * ``field(ignored=True)``: never part of the identifier.
    """
    return FieldSpec(default, default_factory, ignore_default, ignored)


class ValidationError(TypeError):
    """A value does not fit its parameter; the message names the class, parameter, type and value."""


class _Reject(Exception):
    """Internal: raised by a type check; turned into a :class:`ValidationError` with context."""


# --- The type model -----------------------------------------------------------------------------


class TypeSpec:
    """A compiled annotation: checks and converts a value (``convert``) and describes itself."""

    def convert(self, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.describe()


class AnyType(TypeSpec):
    def convert(self, value: Any) -> Any:
        return value

    def describe(self) -> str:
        return "Any"


class IntType(TypeSpec):
    def convert(self, value: Any) -> Any:
        # bool is an int in Python, and 2.7.0 accepts it: True becomes the int 1, whose identifier
        # it shares (one job, one value: docs/identifier.md, "True for an int parameter").
        if isinstance(value, numbers.Integral):
            return int(value)
        raise _Reject

    def describe(self) -> str:
        return "int"


class FloatType(TypeSpec):
    def convert(self, value: Any) -> Any:
        if isinstance(value, float):
            return value
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _Reject

    def describe(self) -> str:
        return "float"


class BoolType(TypeSpec):
    def convert(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        raise _Reject

    def describe(self) -> str:
        return "bool"


class StrType(TypeSpec):
    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        raise _Reject

    def describe(self) -> str:
        return "str"


class PathType(TypeSpec):
    def convert(self, value: Any) -> Any:
        from .paths import GeneratedPath

        if isinstance(value, (Path, GeneratedPath)):
            return value
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise _Reject

    def describe(self) -> str:
        return "Path"


class ListType(TypeSpec):
    def __init__(self, item: TypeSpec) -> None:
        self.item = item

    def convert(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            item = self.item
            return [item.convert(v) for v in value]
        raise _Reject

    def describe(self) -> str:
        return f"List[{self.item.describe()}]"


class SetType(TypeSpec):
    def __init__(self, item: TypeSpec) -> None:
        self.item = item

    def convert(self, value: Any) -> Any:
        if isinstance(value, (set, frozenset)):
            return {self.item.convert(v) for v in value}
        raise _Reject

    def describe(self) -> str:
        return f"Set[{self.item.describe()}]"


class TupleType(TypeSpec):
    """``tuple``, ``Tuple[int, str]`` or ``Tuple[int, ...]``."""

    def __init__(self, items: Optional[list[TypeSpec]], variadic: Optional[TypeSpec]) -> None:
        self.items = items
        self.variadic = variadic

    def convert(self, value: Any) -> Any:
        if not isinstance(value, (tuple, list)):
            raise _Reject
        if self.variadic is not None:
            return tuple(self.variadic.convert(v) for v in value)
        if self.items is None:
            return tuple(value)
        if len(value) != len(self.items):
            raise _Reject
        return tuple(t.convert(v) for t, v in zip(self.items, value))

    def describe(self) -> str:
        if self.variadic is not None:
            return f"Tuple[{self.variadic.describe()}, ...]"
        if self.items is None:
            return "tuple"
        return f"Tuple[{', '.join(t.describe() for t in self.items)}]"


class DictType(TypeSpec):
    def __init__(self, key: TypeSpec, value: TypeSpec) -> None:
        self.key = key
        self.value = value

    def convert(self, value: Any) -> Any:
        if isinstance(value, collections.abc.Mapping):
            k, v = self.key, self.value
            return {k.convert(a): v.convert(b) for a, b in value.items()}
        raise _Reject

    def describe(self) -> str:
        return f"Dict[{self.key.describe()}, {self.value.describe()}]"


class UnionType(TypeSpec):
    """``Union[...]`` and ``Optional[...]``: the first alternative that accepts the value wins."""

    def __init__(self, options: list[TypeSpec]) -> None:
        self.options = options

    @property
    def optional(self) -> bool:
        return any(isinstance(o, NoneType) for o in self.options)

    def convert(self, value: Any) -> Any:
        # Exact matches first, so that 1 stays an int in Union[float, int].
        for option in self.options:
            try:
                converted = option.convert(value)
            except _Reject:
                continue
            if type(converted) is type(value):
                return converted
        for option in self.options:
            try:
                return option.convert(value)
            except _Reject:
                continue
        raise _Reject

    def describe(self) -> str:
        return f"Union[{', '.join(o.describe() for o in self.options)}]"


class NoneType(TypeSpec):
    def convert(self, value: Any) -> Any:
        if value is None:
            return None
        raise _Reject

    def describe(self) -> str:
        return "None"


class InstanceOfType(TypeSpec):
    """A class: ``isinstance`` decides."""

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def convert(self, value: Any) -> Any:
        if isinstance(value, self.cls):
            return value
        raise _Reject

    def describe(self) -> str:
        return getattr(self.cls, "__qualname__", repr(self.cls))


class EnumType(InstanceOfType):
    """An ``Enum`` class: its members."""


class ConfigType(InstanceOfType):
    """A configuration class: instances of the class and of its subclasses."""


_SCALARS: dict[Any, TypeSpec] = {
    int: IntType(),
    float: FloatType(),
    bool: BoolType(),
    str: StrType(),
    Path: PathType(),
    Any: AnyType(),
    type(None): NoneType(),
    None: NoneType(),
}


def typespec(annotation: Any) -> TypeSpec:
    """Compile a Python annotation (without ``Param``/``Meta`` wrappers) into a :class:`TypeSpec`."""
    from .config import Config  # local import: config imports this module

    if annotation in _SCALARS:
        return _SCALARS[annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return typespec(args[0])
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
        return ListType(typespec(args[0]) if args else AnyType())
    if annotation in (list, typing.List):
        return ListType(AnyType())
    if origin in (set, frozenset, collections.abc.Set, collections.abc.MutableSet):
        return SetType(typespec(args[0]) if args else AnyType())
    if annotation in (set, frozenset, typing.Set):
        return SetType(AnyType())
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return TupleType(None, typespec(args[0]))
        return TupleType([typespec(a) for a in args], None)
    if annotation in (tuple, typing.Tuple):
        return TupleType(None, None)
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        if args:
            return DictType(typespec(args[0]), typespec(args[1]))
        return DictType(AnyType(), AnyType())
    if annotation in (dict, typing.Dict):
        return DictType(AnyType(), AnyType())
    if origin is Union or _is_pep604_union(annotation):
        return UnionType([typespec(a) for a in args])
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return EnumType(annotation)
        if issubclass(annotation, Config):
            return ConfigType(annotation)
        if issubclass(annotation, os.PathLike):
            return PathType()
        return InstanceOfType(annotation)
    raise TypeError(f"unsupported parameter type {annotation!r}")


def _is_pep604_union(annotation: Any) -> bool:
    union_type = getattr(__import__("types"), "UnionType", None)
    return union_type is not None and isinstance(annotation, union_type)


def split_annotation(annotation: Any) -> tuple[Optional[ParamKind], Any, Optional[str]]:
    """Split ``Param[Annotated[int, help("x")]]`` into (kind, bare type, help text).

    Returns ``(None, annotation, None)`` for an annotation that declares no parameter.
    """
    kind: Optional[ParamKind] = None
    help_text: Optional[str] = None
    bare = annotation
    while typing.get_origin(bare) is Annotated:
        args = typing.get_args(bare)
        for extra in bare.__metadata__:
            if isinstance(extra, ParamKind) and kind is None:
                kind = extra
            elif isinstance(extra, help):
                help_text = extra.text
        bare = args[0]
    return kind, bare, help_text
