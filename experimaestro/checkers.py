"""Checks of parameter values given in ``Annotated`` (experimaestro 2.x's module name):
``a: Annotated[str, Choices(["a", "b"])]``. They run on assignment, so a bad value fails at the
line that gives it."""

from .core.types import Checker, Choices

__all__ = ["Checker", "Choices"]
