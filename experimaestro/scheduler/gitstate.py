"""``experiment(..., dirty_git=...)``: what to do when the experiment's code has uncommitted
changes (its results could not be traced back to a commit)."""

from __future__ import annotations

import enum
import subprocess
from pathlib import Path
from typing import Iterable, Optional


class DirtyGitAction(str, enum.Enum):
    """What an experiment does when its project's git repository has uncommitted changes."""

    IGNORE = "ignore"
    """Do not check."""
    WARN = "warn"
    """Log a warning (the default)."""
    ERROR = "error"
    """Refuse to start: :class:`DirtyGitError`."""


class DirtyGitError(RuntimeError):
    """The project has uncommitted changes and the experiment was started with
    ``dirty_git=DirtyGitAction.ERROR``."""


def dirty_repository(folder: Path) -> Optional[Path]:
    """The top folder of the git repository holding ``folder`` when it has uncommitted changes
    (untracked files aside); None when it is clean, or not in a repository, or git is missing."""
    try:
        top = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
            capture_output=True, text=True, timeout=30, check=False,
        )
        if top.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if status.returncode != 0 or not status.stdout.strip():
        return None
    return Path(top.stdout.strip())


def dirty_repositories(folders: Iterable[Path]) -> list[Path]:
    """The repositories with uncommitted changes among those holding ``folders`` (each once)."""
    found: list[Path] = []
    for folder in folders:
        repo = dirty_repository(folder)
        if repo is not None and repo not in found:
            found.append(repo)
    return found


__all__ = ["DirtyGitAction", "DirtyGitError", "dirty_repositories", "dirty_repository"]
