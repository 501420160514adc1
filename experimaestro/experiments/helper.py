"""``ExperimentHelper``: what ``run-experiment`` hands to the experiment's ``run`` function."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ..scheduler.experiment import experiment


class ExperimentHelper:
    """Calls ``run(helper, configuration)``; ``helper.xp`` is the running experiment.

    A subclass may override :meth:`run` to read the extra command-line arguments (``ARGS`` of
    ``experimaestro run-experiment YAML [ARGS]...``), and be used with ``@MyHelper.decorator()``::

        class MyHelper(ExperimentHelper):
            def run(self, args, configuration):
                self.verbose = "--verbose" in args
                super().run([], configuration)

        @MyHelper.decorator()
        def run(helper: MyHelper, cfg: Configuration): ...
    """

    #: The running experiment (set before :meth:`run` is called).
    xp: "experiment"

    def __init__(self, callable: Callable[["ExperimentHelper", Any], Any], *args: Any, **kwargs: Any) -> None:
        self.callable = callable

    def run(self, args: list[str], configuration: Any) -> None:
        """Call the experiment's function; extra arguments are refused here (a subclass reads them)."""
        if args:
            raise UnexpectedArguments(args)
        self.callable(self, configuration)

    @classmethod
    def decorator(cls, *args: Any, **kwargs: Any) -> Any:
        """``@Helper.decorator`` or ``@Helper.decorator(...)`` on ``run(helper, configuration)``:
        the module's ``run`` becomes a helper of this class (arguments go to its constructor)."""
        if len(args) == 1 and not kwargs and inspect.isfunction(args[0]):
            return cls(args[0])

        def wrapper(function: Callable[..., Any]) -> "ExperimentHelper":
            return cls(function, *args, **kwargs)

        return wrapper


class UnexpectedArguments(Exception):
    """Extra command-line arguments given to a ``run`` that does not read them."""

    def __init__(self, args: list[str]) -> None:
        super().__init__(
            f"unexpected arguments {' '.join(args)!r}: the experiment's run() takes none (to read "
            f"them, use an ExperimentHelper subclass whose run(self, args, configuration) parses them)"
        )
        self.arguments = args


__all__ = ["ExperimentHelper", "UnexpectedArguments"]
