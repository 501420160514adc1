"""Whether a job process can find a class again, and the error when it cannot.

A job process reads params.json and finds each class by module and qualified name: it imports the
module (or loads the experiment script, for classes of ``__main__``, without running its
``if __name__ == "__main__":`` block) and looks the name up in it. A class defined inside a function,
in an interactive session, in a module made at run time, inside the main block, or whose name now
refers to something else cannot be found: ``submit()`` refuses it (serialization.py calls
:func:`check_findable` for every class it writes).
"""

from __future__ import annotations

import ast
import os
import sys
from typing import Any, Optional

from .config import Config, module_name
from .types import ValidationError


class NotFindable(Exception):
    """A class that a job process would not find again: why, and the fix."""

    def __init__(self, cls: type, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.cls = cls
        self.problem = problem
        self.fix = fix


def check_findable(cls: type) -> None:
    """Raise :class:`NotFindable` unless a job process can find ``cls`` again."""
    name = cls.__qualname__
    short = cls.__name__
    if "<locals>" in name:
        function = name.split(".<locals>", 1)[0]
        raise NotFindable(
            cls, f"is defined inside the function {function}()", f"define {short} at module level"
        )
    module = sys.modules.get(cls.__module__)
    if cls.__module__ == "__main__":
        file = getattr(module, "__file__", None)
        if file is None:
            raise NotFindable(
                cls,
                "is defined in an interactive session (its module, __main__, has no file)",
                f"define {short} in a module file and import it",
            )
        if name.split(".", 1)[0] in _main_block_only_names(file):
            raise NotFindable(
                cls,
                'is defined inside the `if __name__ == "__main__":` block, which the job process '
                "does not run",
                f"define {short} at module level, above that block",
            )
    elif module is None or getattr(module, "__spec__", None) is None:
        raise NotFindable(
            cls,
            f"is defined in the module {cls.__module__!r}, which was created at run time and "
            f"cannot be imported",
            f"define {short} in a module file",
        )
    obj: Any = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if obj is not cls:
        raise NotFindable(
            cls,
            f"is no longer what {module_name(cls)}.{name} names (the class was defined again, or "
            f"the name now refers to something else)",
            f"define {short} once, at module level",
        )


_main_blocks: dict[tuple[str, float], frozenset[str]] = {}


def _main_block_only_names(file: str) -> frozenset[str]:
    """The names a script binds only inside its top-level ``if __name__ == "__main__":`` blocks
    (parsed once per file version; empty when the file cannot be read)."""
    try:
        key = (file, os.stat(file).st_mtime)
        if key not in _main_blocks:
            with open(file, encoding="utf-8") as f:
                tree = ast.parse(f.read(), file)
            inside: set[str] = set()
            outside: set[str] = set()
            for node in tree.body:
                _bound_names(node, inside if _is_main_check(node) else outside)
            _main_blocks[key] = frozenset(inside - outside)
        return _main_blocks[key]
    except (OSError, SyntaxError, ValueError):
        return frozenset()


def _is_main_check(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":``"""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    operands = [test.left, *test.comparators]
    return (
        len(operands) == 2
        and isinstance(test.ops[0], ast.Eq)
        and any(isinstance(o, ast.Name) and o.id == "__name__" for o in operands)
        and any(isinstance(o, ast.Constant) and o.value == "__main__" for o in operands)
    )


def _bound_names(node: ast.AST, names: set[str]) -> None:
    """The module-level names a statement binds (not entering functions or classes)."""
    if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        names.add(node.name)
        return
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names.update((a.asname or a.name).split(".")[0] for a in node.names)
        return
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        names.add(node.id)
        return
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.expr) or isinstance(child, (ast.Name, ast.Tuple, ast.List)):
            _bound_names(child, names)


def not_findable_error(root: Config, value: Any, exc: NotFindable) -> ValidationError:
    """The error for a class a job process cannot find: which class, where the graph uses it
    (``value`` is the configuration or enum member of that class), why, and the fix."""
    from .graphpath import find_path

    name = exc.cls.__qualname__
    where = None if value is None else find_path(root, value)
    used = "" if value is root or where is None else f"{where} holds a {name}, and "
    return ValidationError(
        f"{used}{name} {exc.problem}: the job process would not find it again (it imports each "
        f"class by module and name). Fix: {exc.fix}."
    )


def enum_member(values: dict[str, Any], cls: type) -> Optional[Any]:
    """The first member of the enum ``cls`` found among (or inside) parameter values."""
    work = list(values.values())
    while work:
        v = work.pop()
        if type(v) is cls:
            return v
        if isinstance(v, (list, tuple, set, frozenset)):
            work.extend(v)
        elif isinstance(v, dict):
            work.extend(v)
            work.extend(v.values())
    return None
