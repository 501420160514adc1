"""``mock_modules([...])``: import heavy libraries as stand-ins while an experiment is set up.

In a ``pre_experiment`` file, ``mock_modules(["torch", "transformers"])`` makes ``import torch``
(and its submodules) return a module whose every attribute is a stand-in: callable, usable as a
decorator (``@torch.no_grad()``, ``@torch.compile``), as a base class (``class M(nn.Module)``), in
annotations (``torch.Tensor | None``, ``Tensor[int]``). The controller then builds configurations
without loading the libraries; job processes do not run ``pre_experiment`` and import the real ones.

A module imported before ``mock_modules`` is called stays the real one.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any, Iterable, Optional, Sequence


class MockObject:
    """Any attribute of a mocked module (and any attribute of, or call on, such a stand-in)."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_mock_name", name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return MockObject(f"{self._mock_name}.{name}")

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]  # used as a decorator: the function or class is kept as it is
        return MockObject(f"{self._mock_name}()")

    def __getitem__(self, item: Any) -> "MockObject":
        return self

    def __or__(self, other: Any) -> "MockObject":
        return self

    __ror__ = __or__

    def __iter__(self) -> Any:
        return iter(())

    def __mro_entries__(self, bases: tuple) -> tuple:
        # One MockBase for all the stand-ins among the bases (a base given twice is an error).
        for base in bases:
            if base is self:
                break
            if isinstance(base, MockObject) or (isinstance(base, type) and issubclass(base, MockBase)):
                return ()
        return (MockBase,)

    def __repr__(self) -> str:
        return f"<mock {self._mock_name}>"


class MockBase:
    """The base class that a stand-in becomes in ``class Model(nn.Module)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __init_subclass__(cls, **kwargs: Any) -> None:
        pass

    def __class_getitem__(cls, item: Any) -> type:
        return cls

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return MockObject(f"{type(self).__name__}.{name}")

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """``torch.autograd.Function`` subclasses are used through ``MyFunction.apply``."""
        return MockObject(f"{cls.__name__}.apply()")


class MockModule(types.ModuleType):
    """A mocked module: every public attribute is a :class:`MockObject`."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = MockObject(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class MockModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The import hook of :func:`mock_modules`: the named modules and their submodules."""

    def __init__(self, modules: Iterable[str]) -> None:
        self.modules = set(modules)

    def mocks(self, fullname: str) -> bool:
        return any(fullname == m or fullname.startswith(m + ".") for m in self.modules)

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[types.ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if not self.mocks(fullname):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = MockModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass

    def __repr__(self) -> str:
        return f"MockModuleFinder({sorted(self.modules)})"


#: The 2.x name of the finder.
FakeModuleFinder = MockModuleFinder


def mock_modules(modules: Iterable[str], decorators: Optional[Iterable[str]] = None) -> MockModuleFinder:
    """Mock ``modules`` (and their submodules) for the rest of the process; returns the import hook
    (``sys.meta_path.remove(finder)`` undoes it for later imports). ``decorators`` is accepted for
    2.x compatibility (with a DeprecationWarning, as in 2.x): every stand-in works as a decorator."""
    if decorators is not None:
        warnings.warn(
            "mock_modules(decorators=...) is not needed: every stand-in works as a decorator",
            DeprecationWarning, stacklevel=2,
        )
    finder = MockModuleFinder(modules)
    sys.meta_path.insert(0, finder)
    return finder


def noop_decorator(function: Any = None, *args: Any, **kwargs: Any) -> Any:
    """A decorator that changes nothing, with or without arguments."""
    if callable(function) and not args and not kwargs:
        return function
    return lambda f: f


__all__ = ["FakeModuleFinder", "MockModuleFinder", "MockObject", "mock_modules", "noop_decorator"]
