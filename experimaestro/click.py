"""Turn the parameters of a configuration class into click options.

```python
import click
from experimaestro.click import arguments, forwardoption

@click.command()
@forwardoption(arguments(Learn).epochs)             # --epochs: an int, Learn's default and help
@forwardoption(arguments(Learn).batch_size, "--bs") # renamed: the function takes ``bs``
@forwardoption.lr(Learn, "learning-rate")           # 2.x's spelling: --learning-rate
def train(epochs: int, bs: int, learning_rate: float) -> None:
    ...
```

The option gets the parameter's type (``int``, ``float``, ``str``, ``Path``, an ``Enum`` as a choice
of member names, ``bool`` as an ``--x/--no-x`` flag, ``List[T]`` as a repeatable option), its
default and its help text (the string literal after the declaration, or ``help(...)``).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import click

from .core.arguments import Argument
from .core.config import Config, xpmtype
from .core.types import (
    AnyType,
    BoolType,
    EnumType,
    FloatType,
    IntType,
    ListType,
    NoneType,
    ParamKind,
    PathType,
    StrType,
    TypeSpec,
    UnionType,
)

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["EnumChoice", "arguments", "forwardoption"]


class EnumChoice(click.Choice):
    """A choice among the member names of an enumeration; the value is the member itself."""

    def __init__(self, enum_class: type[enum.Enum], case_sensitive: bool = True) -> None:
        self.enum_class = enum_class
        super().__init__([member.name for member in enum_class], case_sensitive=case_sensitive)

    def convert(
        self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]
    ) -> Any:
        if isinstance(value, self.enum_class):
            return value
        return self.enum_class[super().convert(value, param, ctx)]


class _Arguments:
    """The declared parameters of a configuration class, as attributes: ``arguments(C).epochs``."""

    def __init__(self, cls: type[Config]) -> None:
        self._cls = cls
        self._arguments = xpmtype(cls).arguments

    def __getattr__(self, name: str) -> Argument:
        argument = self._arguments.get(name)
        if argument is None:
            known = ", ".join(self._arguments) or "none"
            raise AttributeError(
                f"{self._cls.__qualname__} has no parameter {name!r} (its parameters: {known})"
            )
        return argument

    def __dir__(self) -> list[str]:
        return list(self._arguments)

    def __repr__(self) -> str:
        return f"arguments({self._cls.__qualname__})"


def arguments(cls: type[Config]) -> Any:
    """An object whose attributes are the declared parameters (:class:`Argument`) of ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, Config)):
        raise TypeError(f"arguments() takes a configuration class, got {cls!r}")
    return _Arguments(cls)


def _click_type(argument: Argument, spec: TypeSpec) -> Any:
    """The click type of a parameter type (``bool`` is handled as a flag by the caller)."""
    if isinstance(spec, IntType):
        return click.INT
    if isinstance(spec, FloatType):
        return click.FLOAT
    if isinstance(spec, (StrType, AnyType)):
        return click.STRING
    if isinstance(spec, BoolType):
        return click.BOOL
    if isinstance(spec, PathType):
        return click.Path(path_type=Path)
    if isinstance(spec, EnumType):
        return EnumChoice(spec.cls)
    raise TypeError(
        f"{argument.owner.__qualname__}.{argument.name}: a parameter of type "
        f"{spec.describe()} cannot be a command-line option"
    )


def _bare_type(spec: TypeSpec) -> TypeSpec:
    """``Optional[T]`` is ``T`` on the command line (the option is then simply not required)."""
    if isinstance(spec, UnionType):
        options = [o for o in spec.options if not isinstance(o, NoneType)]
        if len(options) == 1:
            return options[0]
    return spec


def _cli_value(value: Any) -> Any:
    """A default as click shows and converts it (enum members by name, paths as text)."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return tuple(_cli_value(v) for v in value)
    return value


def _declarations(argument: Argument, option_name: Optional[str], flag: bool) -> list[str]:
    name = option_name or f"--{argument.name.replace('_', '-')}"
    if flag and "/" not in name and name.startswith("--"):
        name = f"{name}/--no-{name[2:]}"
    return [name]


def _option_settings(argument: Argument) -> dict[str, Any]:
    """The keyword arguments of ``click.option`` derived from a parameter."""
    spec = _bare_type(argument.type)
    settings: dict[str, Any] = {"help": argument.help, "show_default": True}
    if isinstance(spec, ListType):
        settings["multiple"] = True
        settings["type"] = _click_type(argument, _bare_type(spec.item))
    elif not isinstance(spec, BoolType):
        settings["type"] = _click_type(argument, spec)
    if argument.has_default:
        settings["default"] = _cli_value(argument.make_default())
    elif isinstance(spec, BoolType) and not argument.required:
        settings["default"] = None
    settings["required"] = argument.required
    return settings


def _forward(
    argument: Argument, option_name: Optional[str] = None, **click_kwargs: Any
) -> Callable[[F], F]:
    if not isinstance(argument, Argument):
        raise TypeError(
            f"forwardoption() takes a parameter, as arguments(MyConfig).name, got {argument!r}"
        )
    if argument.kind is ParamKind.CONSTANT:
        raise TypeError(
            f"{argument.owner.__qualname__}.{argument.name} is a Constant[...]: it cannot be set, "
            f"so it cannot be an option"
        )
    flag = isinstance(_bare_type(argument.type), BoolType)
    settings = _option_settings(argument)
    settings.update(click_kwargs)
    return click.option(*_declarations(argument, option_name, flag), **settings)


class _ForwardPath:
    """``forwardoption.epochs`` (or ``forwardoption.model.layers``): a parameter named by
    attributes, resolved against the class given in the call (experimaestro 2.x's spelling)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._names = names

    def __getattr__(self, name: str) -> "_ForwardPath":
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _ForwardPath(self._names + (name,))

    def __call__(
        self, cls: type[Config], option_name: Optional[str] = None, **click_kwargs: Any
    ) -> Callable[[F], F]:
        """A click option for the parameter of ``cls`` at this path; ``option_name`` is written
        without dashes, as in 2.x (``"my-epochs"`` gives ``--my-epochs``)."""
        argument = self.argument(cls)
        if option_name is not None and not option_name.startswith("-"):
            option_name = f"--{option_name}"
        return _forward(argument, option_name, **click_kwargs)

    def argument(self, cls: type[Config]) -> Argument:
        """The parameter this path names in ``cls`` (through sub-configuration parameters)."""
        argument: Argument = getattr(arguments(cls), self._names[0])
        for name in self._names[1:]:
            spec = _bare_type(argument.type)
            sub = getattr(spec, "cls", None)
            if not (isinstance(sub, type) and issubclass(sub, Config)):
                raise TypeError(
                    f"forwardoption.{'.'.join(self._names)}: "
                    f"{argument.owner.__qualname__}.{argument.name} ({spec.describe()}) is not a "
                    f"configuration, so it has no parameter {name!r}"
                )
            argument = getattr(arguments(sub), name)
        return argument

    def __repr__(self) -> str:
        return f"forwardoption.{'.'.join(self._names)}"


class _ForwardOption:
    """``forwardoption``: callable with a parameter, or followed by parameter names (2.x)."""

    def __call__(
        self, argument: Argument, option_name: Optional[str] = None, **click_kwargs: Any
    ) -> Callable[[F], F]:
        """A click option that forwards a configuration parameter: its type, default and help.

        :param argument: a parameter, as ``arguments(MyConfig).name``
        :param option_name: the option's name (default: ``--name`` with ``_`` written ``-``); the
            function's parameter name follows click's rule (``--n-epochs`` gives ``n_epochs``)
        :param click_kwargs: passed to :func:`click.option`, overriding the derived settings

        experimaestro 2.x's spelling works too: ``forwardoption.epochs(MyModel, "my-epochs")``
        (the option name without its dashes), and ``forwardoption.model.layers(Learn)`` for a
        parameter of a sub-configuration.
        """
        return _forward(argument, option_name, **click_kwargs)

    def __getattr__(self, name: str) -> _ForwardPath:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _ForwardPath((name,))

    def __repr__(self) -> str:
        return "forwardoption"


#: ``forwardoption(arguments(C).name)``, or 2.x's ``forwardoption.name(C, "option-name")``.
forwardoption = _ForwardOption()
