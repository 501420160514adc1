"""Declared parameters of a configuration class: collection, defaults, lazy help text."""

from __future__ import annotations

import copy
import logging
import sys
import types
import typing
from typing import Annotated as Annotated  # re-exported: 2.x code imports it from here
from typing import Any, Callable, Optional

from .types import (
    NOTSET,
    ConfigType,
    DictType,
    GenericConfigType,
    FieldSpec,
    ListType,
    NoneType,
    ParamKind,
    PathType,
    SetType,
    TupleType,
    TypeSpec,
    UnionType,
    annotated_checkers,
    annotated_generator,
    split_annotation,
    typespec,
)

# 2.x code imports these from here too (``from experimaestro.core.arguments import Param``).
from .paths import pathgenerator as pathgenerator  # noqa: E402
from .types import Constant as Constant, Meta as Meta, Option as Option, Param as Param  # noqa: E402
from .types import field as field, help as help  # noqa: E402,A004


class Argument:
    """One declared parameter of a configuration class."""

    __slots__ = (
        "name",
        "kind",
        "annotation",
        "_type",
        "default",
        "default_factory",
        "ignore_default",
        "ignored",
        "owner",
        "_help",
        "_help_loaded",
        "_reference_default",
        "groups",
        "overrides",
        "ignore_generated",
        "checkers",
    )

    def __init__(
        self,
        name: str,
        kind: ParamKind,
        annotation: Any,
        owner: type,
        spec: Any,
        help_text: Optional[str],
    ) -> None:
        self.name = name
        self.kind = kind
        self.annotation = annotation
        self._type: Optional[TypeSpec] = None
        self.owner = owner
        self._help = help_text
        self._help_loaded = help_text is not None
        if isinstance(spec, FieldSpec):
            self.default = spec.default
            self.default_factory: Optional[Callable[[], Any]] = spec.default_factory
            self.ignore_default = spec.ignore_default
            self.ignored = spec.ignored
            self.groups: frozenset[Any] = spec.groups
            self.overrides = spec.overrides
            self.ignore_generated = spec.ignore_generated
        else:
            # A bare class default (``x: Param[int] = 3``) is left out of the identifier when the
            # value equals it, so that adding a parameter never changes existing identifiers.
            self.default = spec
            self.default_factory = None
            # Constants are always encoded.
            self.ignore_default = spec is not NOTSET and kind is not ParamKind.CONSTANT
            self.ignored = False
            self.groups = frozenset()
            self.overrides = False
            self.ignore_generated = False
        self._reference_default: Any = NOTSET
        #: Checks of the values (``Annotated[str, Choices([...])]``), made on assignment.
        self.checkers: tuple[Any, ...] = ()
        if kind is ParamKind.CONSTANT and self.default is NOTSET and self.default_factory is None:
            raise TypeError(f"{owner.__qualname__}.{name}: a Constant[...] needs a default value")

    # -- type --------------------------------------------------------------------------------

    @property
    def type(self) -> TypeSpec:
        """The compiled type (resolved lazily, so forward references to later classes work)."""
        if self._type is None:
            self._type = typespec(self.annotation)
        return self._type

    @property
    def is_path(self) -> bool:
        """Whether the declared type holds only paths (``Path``, ``Optional[Path]``,
        ``List[Path]``...): such a parameter says where things are, not what they are."""
        return _only_paths(self.type)

    @property
    def is_optional(self) -> bool:
        t = self.type
        return isinstance(t, UnionType) and t.optional

    @property
    def has_default(self) -> bool:
        return self.default is not NOTSET or self.default_factory is not None

    @property
    def required(self) -> bool:
        return not self.has_default and not self.is_optional

    @property
    def in_identifier(self) -> bool:
        """Whether the parameter may enter the identifier (a Meta one only holding a config that
        ``setmeta(cfg, False)`` marked); the value decides the rest (identifier.skip_reason)."""
        return not self.ignored and not self.is_path

    @property
    def reference_default(self) -> Any:
        """The default that values are compared with (``default_factory`` is called once)."""
        if self.default_factory is None:
            return self.default
        if self._reference_default is NOTSET:
            self._reference_default = self.default_factory()
        return self._reference_default

    def make_default(self) -> Any:
        """A fresh default value (mutable defaults are copied so configs never share them)."""
        if self.default_factory is not None:
            return self.default_factory()
        value = self.default
        if isinstance(value, (list, dict, set)):
            return copy.deepcopy(value)
        return value

    # -- help --------------------------------------------------------------------------------

    @property
    def help(self) -> Optional[str]:
        """The help text: ``Annotated[T, help(...)]`` or the string literal after the declaration."""
        if not self._help_loaded:
            self._help_loaded = True
            self._help = class_docstrings(self.owner).get(self.name)
        return self._help

    def __repr__(self) -> str:
        return f"Argument({self.owner.__qualname__}.{self.name}: {self.kind.value})"


logger = logging.getLogger("experimaestro")


def check_override(arg: Argument, inherited: Argument) -> None:
    """A parameter declared again in a subclass: its type must fit the base's (a configuration
    type may narrow to a subclass); without ``field(overrides=True)``, a warning says so."""
    mine, theirs = arg.type, inherited.type
    where = f"{arg.owner.__qualname__}.{arg.name}"
    base = inherited.owner.__qualname__
    if isinstance(mine, ConfigType) and isinstance(theirs, ConfigType):
        fits = issubclass(mine.cls, theirs.cls)
    elif isinstance(mine, GenericConfigType) and isinstance(theirs, (GenericConfigType, ConfigType)):
        fits = mine.is_subtype_of(theirs) if isinstance(theirs, GenericConfigType) else (
            issubclass(mine.cls, theirs.cls)
        )
    else:
        fits = mine.describe() == theirs.describe()
    if not fits:
        raise TypeError(
            f"{where} ({mine.describe()}) overrides {base}.{arg.name} ({theirs.describe()}) with a "
            f"type that is not a subtype of it: declare it with {theirs.describe()} or a subtype"
        )
    if not arg.overrides:
        logger.warning(
            "%s overrides the parameter of %s: declare it with field(overrides=True) if this is "
            "intended (this warning then goes away)",
            where,
            base,
        )


def _only_paths(t: TypeSpec) -> bool:
    if isinstance(t, PathType):
        return True
    if isinstance(t, UnionType):
        options = [o for o in t.options if not isinstance(o, NoneType)]
        return bool(options) and all(_only_paths(o) for o in options)
    if isinstance(t, (ListType, SetType)):
        return _only_paths(t.item)
    if isinstance(t, DictType):
        return _only_paths(t.value)
    if isinstance(t, TupleType):
        if t.variadic is not None:
            return _only_paths(t.variadic)
        return bool(t.items) and all(_only_paths(i) for i in t.items or [])
    return False


_DOCSTRINGS: dict[type, dict[str, str]] = {}


def class_docstrings(cls: type) -> dict[str, str]:
    """Attribute docstrings of a class: the string literal right after ``name: T [= v]``.

    Parsed with :mod:`ast` from the class source on first request only, so class creation stays fast.
    """
    cached = _DOCSTRINGS.get(cls)
    if cached is not None:
        return cached
    import ast  # only when help is asked for: job processes never pay for these imports
    import inspect
    import textwrap

    result: dict[str, str] = {}
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        tree = None
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
                body = node.body
                for stmt, after in zip(body, body[1:]):
                    if (
                        isinstance(stmt, ast.AnnAssign)
                        and isinstance(stmt.target, ast.Name)
                        and isinstance(after, ast.Expr)
                        and isinstance(after.value, ast.Constant)
                        and isinstance(after.value.value, str)
                    ):
                        result[stmt.target.id] = inspect.cleandoc(after.value.value)
                break
    _DOCSTRINGS[cls] = result
    return result


def collect_arguments(cls: type) -> dict[str, Argument]:
    """The parameters declared on ``cls`` itself (not inherited), in declaration order.

    Called lazily (on first use of the class), when every class a forward reference may name exists.
    """
    raw = cls.__dict__.get("__annotations__", {})
    if not raw:
        return {}
    arguments: dict[str, Argument] = {}
    for name, annotation in raw.items():
        annotation = _resolve_annotation(cls, name, annotation)
        kind, bare, help_text = split_annotation(annotation)
        if kind is None:
            continue
        spec = cls.__dict__.get(name, NOTSET)
        generator = annotated_generator(annotation)
        if generator is not None and spec is NOTSET:
            # 2.x's ``Annotated[Path, pathgenerator("out.txt")]``: a generated path.
            spec = FieldSpec(default_factory=generator)
        arguments[name] = argument = Argument(name, kind, bare, cls, spec, help_text)
        argument.checkers = annotated_checkers(annotation)
        if isinstance(spec, FieldSpec):
            # Leave a plain value on the class, as a bare default would.
            if spec.default is not NOTSET:
                setattr(cls, name, spec.default)
            elif name in cls.__dict__:
                delattr(cls, name)
    return arguments


def _resolve_annotation(cls: type, name: str, annotation: Any) -> Any:
    """Evaluate one annotation of ``cls``: strings and forward references (``Optional["B"]``)."""
    module = sys.modules.get(cls.__module__)
    globalns = dict(vars(module)) if module else {}
    localns = {cls.__name__: cls}
    holder = types.SimpleNamespace(__annotations__={name: annotation})
    try:
        return typing.get_type_hints(
            holder, globalns=globalns, localns=localns, include_extras=True
        )[name]
    except Exception as exc:
        raise TypeError(
            f"{cls.__qualname__}.{name}: cannot resolve the annotation {annotation!r} ({exc})"
        ) from exc
