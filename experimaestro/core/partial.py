"""Partial identifiers: the identifier of a task computed over a subset of its parameters.

Tasks that differ only in some parameters (the number of training iterations, say) can then share
a folder, for checkpoints for instance::

    iter_group = param_group("iter")

    class Learn(Task):
        checkpoints = partial(exclude_groups=[iter_group])

        max_iter: Param[int] = field(groups=[iter_group])
        learning_rate: Param[float]
        checkpoint_path: Meta[Path] = field(
            default_factory=PathGenerator("checkpoint", partial=checkpoints)
        )

``Learn.C(max_iter=100, learning_rate=0.1)`` and ``Learn.C(max_iter=200, learning_rate=0.1)`` are two
jobs, but their ``checkpoint_path`` is one folder:
``<workspace>/partials/<type id>/checkpoints/<partial identifier>/checkpoint``. Jobs that share a
partial folder never run at the same time (see ``runner.py``).

This module is pure: it computes names and paths, it touches no file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Iterable, Optional

from .types import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config

#: The folder of the workspace that holds partial folders.
PARTIALS = "partials"


@dataclass(frozen=True)
class ParameterGroup:
    """A named group of parameters (``field(groups=[...])``); groups with one name are equal."""

    name: str


def param_group(name: str) -> ParameterGroup:
    """A parameter group, to be given to ``field(groups=[...])`` and to :func:`partial`."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"param_group() takes a non-empty str, got {name!r}")
    return ParameterGroup(name)


class Partial:
    """Which parameters a partial identifier counts (built by :func:`partial`).

    A parameter is left out when none of its groups is in ``include_groups`` and either
    ``exclude_all`` is set, or it has no group and ``exclude_no_group`` is set, or one of its
    groups is in ``exclude_groups``. Only the parameters of the configuration itself are
    filtered: a sub-configuration enters with its full identifier.

    Declared as a class attribute, a partial takes the attribute's name, which names its folder.
    """

    def __init__(
        self,
        exclude_groups: Iterable[ParameterGroup] = (),
        include_groups: Iterable[ParameterGroup] = (),
        exclude_no_group: bool = False,
        exclude_all: bool = False,
        name: Optional[str] = None,
    ) -> None:
        self.exclude_groups = parameter_groups(exclude_groups, "partial(exclude_groups=...)")
        self.include_groups = parameter_groups(include_groups, "partial(include_groups=...)")
        self.exclude_no_group = exclude_no_group
        self.exclude_all = exclude_all
        self.name = name

    def __set_name__(self, owner: type, name: str) -> None:
        if self.name is None:
            self.name = name

    def is_excluded(self, groups: AbstractSet[ParameterGroup]) -> bool:
        """Whether a parameter in ``groups`` is left out of this partial identifier."""
        if groups & self.include_groups:
            return False
        if self.exclude_all:
            return True
        if not groups:
            return self.exclude_no_group
        return bool(groups & self.exclude_groups)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partial):
            return NotImplemented
        return self._key() == other._key()

    #: Mutable (the class attribute names it), so not hashable, like 2.x's.
    __hash__ = None  # type: ignore[assignment]

    def _key(self) -> tuple:
        return (
            self.exclude_groups,
            self.include_groups,
            self.exclude_no_group,
            self.exclude_all,
            self.name,
        )

    def __repr__(self) -> str:
        groups = ", ".join(
            f"{k}={sorted(g.name for g in v)}"
            for k, v in (("exclude_groups", self.exclude_groups), ("include", self.include_groups))
            if v
        )
        return f"Partial({self.name!r}{', ' + groups if groups else ''})"


def parameter_groups(groups: Iterable[ParameterGroup], where: str) -> frozenset[ParameterGroup]:
    """``groups`` as a frozenset, each checked to be a :class:`ParameterGroup` (``where`` names
    the argument in the error, e.g. ``field(groups=...)``)."""
    result = frozenset(groups or ())
    for group in result:
        if not isinstance(group, ParameterGroup):
            raise TypeError(f"{where} takes param_group(...) values, got {group!r}")
    return result


def partial(
    *,
    exclude_groups: Optional[Iterable[ParameterGroup]] = None,
    include_groups: Optional[Iterable[ParameterGroup]] = None,
    exclude_no_group: bool = False,
    exclude_all: bool = False,
) -> Partial:
    """Declare a partial identifier (see :class:`Partial` for which parameters it counts)."""
    return Partial(
        exclude_groups or (),
        include_groups or (),
        exclude_no_group=exclude_no_group,
        exclude_all=exclude_all,
    )


def partials_of(cls: type) -> dict[str, Partial]:
    """The partials declared on a configuration class and its bases, by attribute name."""
    found: dict[str, Partial] = {}
    for base in reversed(cls.__mro__):
        for name, value in vars(base).items():
            if isinstance(value, Partial):
                found[name] = value
    return found


def partial_path(workspace: Path, config: "Config", spec: Partial) -> Path:
    """``<workspace>/partials/<type id>/<partial name>/<partial identifier>``."""
    from .identifier import partial_digest

    if spec.name is None:
        cls = type(config).__qualname__
        raise ValidationError(
            f"{cls}: a partial used for a path needs a name: declare it as a class attribute "
            f"(checkpoints = partial(...) in the body of {cls}) and give that attribute to "
            f"PathGenerator(..., partial=checkpoints)"
        )
    typeid = config.__xpm__.xpmtype.typeid
    return workspace / PARTIALS / typeid / spec.name / partial_digest(config, spec).hex()
