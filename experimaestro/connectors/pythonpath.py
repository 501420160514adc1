"""The controller's import folders: what its jobs need on ``PYTHONPATH`` to import the same code."""

from __future__ import annotations

import os
import sys


def user_python_path() -> str:
    """PYTHONPATH for jobs: the controller's own import folders (the script's folder, the
    project), so that the job imports the same modules; the interpreter's folders are implied."""
    system = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    entries: list[str] = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.getcwd())
        if not os.path.isdir(path) or any(path.startswith(s + os.sep) or path == s for s in system):
            continue
        if path not in entries:
            entries.append(path)
    existing = os.environ.get("PYTHONPATH")
    if existing:
        entries.extend(p for p in existing.split(os.pathsep) if p and p not in entries)
    return os.pathsep.join(entries)
