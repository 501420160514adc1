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
from typing import Annotated, Any, Callable, Iterable, Optional, TypeVar, Union

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


class Checker:
    """A check of a parameter's values, given in ``Annotated[T, checker]`` (2.x's checkers)."""

    def check(self, value: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


class Choices(Checker):
    """``Annotated[str, Choices(["a", "b"])]``: the value must equal one of the choices."""

    def __init__(self, choices: Iterable[Any]) -> None:
        self.choices = list(choices)

    def check(self, value: Any) -> bool:
        return any(value == choice for choice in self.choices)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(choice) for choice in self.choices)

    def __repr__(self) -> str:
        return f"Choices({self.choices!r})"


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

    __slots__ = (
        "default",
        "default_factory",
        "ignore_default",
        "ignored",
        "groups",
        "overrides",
        "ignore_generated",
    )

    def __init__(
        self,
        default: Any = NOTSET,
        default_factory: Optional[Callable[[], Any]] = None,
        ignore_default: bool = False,
        ignored: bool = False,
        groups: Iterable[Any] = (),
        overrides: bool = False,
        ignore_generated: bool = False,
    ) -> None:
        if default is not NOTSET and default_factory is not None:
            raise TypeError("field(): give either default= or default_factory=, not both")
        self.default = default
        self.default_factory = default_factory
        self.ignore_default = ignore_default
        self.ignored = ignored
        self.groups = _parameter_groups(groups)
        self.overrides = overrides
        self.ignore_generated = ignore_generated


def _parameter_groups(groups: Iterable[Any]) -> frozenset[Any]:
    from .partial import parameter_groups  # local import: partial imports this module

    return parameter_groups(groups, "field(groups=...)")


def field(
    *,
    default: Any = NOTSET,
    default_factory: Optional[Callable[[], Any]] = None,
    ignore_default: Any = False,
    ignored: bool = False,
    groups: Iterable[Any] = (),
    overrides: bool = False,
    ignore_generated: bool = False,
) -> Any:
    """Declare a parameter's default and identifier behaviour.

    * ``field(default=3)``: the value is **always** encoded in the identifier, even at its default.
    * ``field(default=3, ignore_default=True)``: like a bare ``= 3``, left out when equal to the default.
    * ``field(default_factory=f)``: the default is ``f()``, computed for each new configuration.
    * ``field(ignored=True)``: never part of the identifier.
    * ``field(groups=[g])``: the parameter belongs to the groups ``g`` (``param_group``), which a
      ``partial(...)`` identifier may leave out (``core/partial.py``).
    * ``field(overrides=True)``: this declaration replaces one of a base class on purpose (no
      warning); its type must still fit the base's.
    * ``field(ignore_generated=True)``: the value may be a configuration whose paths were generated
      in another task's folder (otherwise refused: the folder would be used without a dependency).
    * ``field(ignore_default=3)`` (no ``default``) is 2.x's deprecated spelling of
      ``field(default=3, ignore_default=True)``.
    """
    if ignore_default is None:
        ignore_default = False
    if (
        default is NOTSET
        and default_factory is None
        and not isinstance(ignore_default, bool)
    ):
        warnings.warn(
            f"field(ignore_default={ignore_default!r}) is deprecated: write "
            f"field(default={ignore_default!r}, ignore_default=True) (same meaning)",
            DeprecationWarning,
            stacklevel=2,
        )
        default, ignore_default = ignore_default, True
    elif not isinstance(ignore_default, bool):
        raise TypeError(
            f"field(ignore_default={ignore_default!r}): with default= or default_factory=, "
            f"ignore_default is True or False"
        )
    return FieldSpec(
        default, default_factory, ignore_default, ignored, groups, overrides, ignore_generated
    )


class ValidationError(TypeError, ValueError):
    """A value does not fit its parameter; the message names the class, parameter, type and value.

    Both a ``TypeError`` and a ``ValueError``: 2.x raises ``ValueError`` for a bad value (and for a
    missing parameter at validation), so 2.x code catching it keeps working."""


class CheckError(ValidationError):
    """A value a checker (``Choices``...) refuses."""


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


class TypeVarType(TypeSpec):
    """A ``TypeVar`` in a generic configuration (``class A(Config, Generic[T]): x: Param[T]``).

    A value must fit the variable's bound or one of its constraints, when given. Across one
    configuration graph, the values of parameters typed with the same variable must also agree
    (``check_binding``, called by the configuration that holds them).
    """

    def __init__(self, typevar: Any) -> None:
        self.typevar = typevar

    def convert(self, value: Any) -> Any:
        bound = _evaluated(self.typevar.__bound__)
        if isinstance(bound, type) and not isinstance(value, bound):
            raise _Reject
        constraints = [_evaluated(c) for c in self.typevar.__constraints__]
        if constraints and not any(
            isinstance(value, c) for c in constraints if isinstance(c, type)
        ):
            raise _Reject
        return value

    def describe(self) -> str:
        bound = _evaluated(self.typevar.__bound__)
        if isinstance(bound, type):
            return f"{self.typevar.__name__} (bound to {bound.__qualname__})"
        if self.typevar.__constraints__:
            names = ", ".join(_name(c) for c in self.typevar.__constraints__)
            return f"{self.typevar.__name__} (one of {names})"
        return self.typevar.__name__


def _evaluated(annotation: Any) -> Any:
    """A TypeVar's bound or constraint, with a forward reference resolved when possible."""
    if isinstance(annotation, typing.ForwardRef):
        try:
            return typing._eval_type(annotation, {}, None)  # type: ignore[attr-defined]
        except Exception:
            return None
    return annotation


def _name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


def check_binding(bindings: dict[Any, type], typevar: Any, bound: type) -> Optional[str]:
    """Bind ``typevar`` to ``bound`` in ``bindings`` (experimaestro 2.x's rule), or say why not.

    A new binding is recorded; a subclass of the current binding keeps it; a base class of it
    widens the binding to that base; an unrelated type is a conflict (the message is returned).
    """
    current = bindings.get(typevar)
    if current is None or issubclass(bound, current):
        bindings.setdefault(typevar, bound)
        return None
    if issubclass(current, bound):
        bindings[typevar] = bound
        return None
    return (
        f"the type variable {typevar.__name__} is bound to {_name(current)} and cannot also be "
        f"{_name(bound)} (neither a subclass nor a base class of it)"
    )


class GenericConfigType(TypeSpec):
    """A parameterized generic configuration class, ``Sampler[PairwiseSample]``: an instance of
    ``Sampler`` whose class, when it fixes the type arguments, fixes them to fitting ones."""

    def __init__(self, origin: type, args: tuple[Any, ...]) -> None:
        self.cls = origin
        self.args = args

    def convert(self, value: Any) -> Any:
        if not isinstance(value, self.cls):
            raise _Reject
        actual = _type_arguments(type(value), self.cls)
        if actual is not None and len(actual) == len(self.args):
            for declared, given in zip(self.args, actual):
                if not _fits(given, declared):
                    raise _Reject
        return value

    def is_subtype_of(self, other: "GenericConfigType") -> bool:
        """Whether every value of this type is one of ``other`` (for overriding declarations)."""
        if not issubclass(self.cls, other.cls) or len(self.args) != len(other.args):
            return False
        return all(_fits(mine, theirs) for mine, theirs in zip(self.args, other.args))

    def describe(self) -> str:
        return f"{self.cls.__qualname__}[{', '.join(_name(a) for a in self.args)}]"


def _type_arguments(cls: type, origin: type) -> Optional[tuple[Any, ...]]:
    """The type arguments ``cls`` gives to the generic class ``origin`` (``class S(Base[int])``
    gives ``(int,)``), or None when it gives none."""
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            if typing.get_origin(base) is origin:
                return typing.get_args(base)
    return None


def _fits(given: Any, declared: Any) -> bool:
    """Whether the type argument ``given`` fits the declared one (a TypeVar fits anything)."""
    if isinstance(declared, TypeVar) or isinstance(given, TypeVar) or declared is Any:
        return True
    if typing.get_origin(declared) is Union or _is_pep604_union(declared):
        return any(_fits(given, option) for option in typing.get_args(declared))
    if isinstance(given, type) and isinstance(declared, type):
        return issubclass(given, declared)
    given_origin, declared_origin = typing.get_origin(given), typing.get_origin(declared)
    if given_origin is not None and declared_origin is not None:
        return (
            isinstance(given_origin, type)
            and isinstance(declared_origin, type)
            and issubclass(given_origin, declared_origin)
            and len(typing.get_args(given)) == len(typing.get_args(declared))
            and all(
                _fits(g, d) for g, d in zip(typing.get_args(given), typing.get_args(declared))
            )
        )
    return bool(given == declared)


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
    if isinstance(annotation, TypeVar):
        return TypeVarType(annotation)
    if isinstance(origin, type) and issubclass(origin, Config):
        return GenericConfigType(origin, args)
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

    Returns ``(None, annotation, None)`` for an annotation that declares no parameter. As in
    experimaestro 2.x, ``Annotated[int, help("...")]`` (or with a checker, ``Choices([...])``)
    alone declares a ``Param``, and
    ``Annotated[Path, pathgenerator("out.txt")]`` a ``Meta`` (see :func:`annotated_generator`).
    """
    kind: Optional[ParamKind] = None
    help_text: Optional[str] = None
    implied: Optional[ParamKind] = None
    bare = annotation
    while typing.get_origin(bare) is Annotated:
        args = typing.get_args(bare)
        for extra in bare.__metadata__:
            if isinstance(extra, ParamKind) and kind is None:
                kind = extra
            elif isinstance(extra, help):
                help_text = extra.text
                implied = implied or ParamKind.PARAM
            elif isinstance(extra, Checker):
                implied = implied or ParamKind.PARAM
            elif _is_path_generator(extra):
                implied = ParamKind.META
        bare = args[0]
    return kind or implied, bare, help_text


def annotated_checkers(annotation: Any) -> tuple[Checker, ...]:
    """The checkers given in ``Annotated[T, Choices(...)]`` (at any nesting level)."""
    found: list[Checker] = []
    while typing.get_origin(annotation) is Annotated:
        found.extend(extra for extra in annotation.__metadata__ if isinstance(extra, Checker))
        annotation = typing.get_args(annotation)[0]
    return tuple(found)


def annotated_generator(annotation: Any) -> Any:
    """The ``PathGenerator`` given in ``Annotated[Path, pathgenerator("out.txt")]``, or None."""
    while typing.get_origin(annotation) is Annotated:
        for extra in annotation.__metadata__:
            if _is_path_generator(extra):
                return extra
        annotation = typing.get_args(annotation)[0]
    return None


def _is_path_generator(value: Any) -> bool:
    from .paths import PathGenerator

    return isinstance(value, PathGenerator)
