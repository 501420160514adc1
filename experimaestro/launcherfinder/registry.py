"""Finding ``launchers.py`` and asking it for a launcher: :func:`find_launcher`.

Where ``launchers.py`` is looked for, the first existing file winning:

1. ``config_dir/launchers.py`` when a configuration folder is given (``find_launcher(...,
   config_dir=...)``, or :func:`set_config_dir`, as ``run-experiment --xpm-config-dir`` does);
2. ``<workspace>/launchers.py``, the workspace being ``workdir=...`` or the environment variable
   ``XPM_WORKDIR``;
3. when no configuration folder is given: ``$XDG_CONFIG_HOME/experimaestro/launchers.py``, or
   ``~/.config/experimaestro/launchers.py`` when ``XDG_CONFIG_HOME`` is not set.

The file is a Python module defining ``find_launcher(requirements, tags)`` (as in experimaestro 2.x):
it receives the parsed requirement (a :class:`~.specs.RequirementUnion`: its alternatives, in order)
and the set of tags, and returns a Launcher, or None when nothing it knows fits. It is loaded once per
process (again if the file changes).

With no ``launchers.py``, or when it returns None, :func:`find_launcher` returns the local launcher
(:func:`experimaestro.launchers.direct.default_launcher`) and logs a warning, once per process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable, Optional, Union

from ..launchers.base import Launcher
from .parser import parse
from .specs import HostRequirement, HostSpecification, MatchRequirement, RequirementUnion, as_union

logger = logging.getLogger("experimaestro.launchers")

LAUNCHERS_FILE = "launchers.py"

PathLike = Union[str, "os.PathLike[str]"]
Spec = Union[str, HostRequirement]

_config_dir: Optional[Path] = None
_modules: dict[Path, tuple[tuple[int, int], Callable[..., object]]] = {}
_warned: set[str] = set()


class LauncherConfigError(Exception):
    """A ``launchers.py`` that cannot be used (no ``find_launcher``, or a wrong return value)."""


def set_config_dir(path: Optional[PathLike]) -> None:
    """Use ``path`` as the configuration folder for the rest of the process (None: the default).

    ``experimaestro run-experiment --xpm-config-dir DIR`` calls this.
    """
    global _config_dir
    _config_dir = None if path is None else Path(path).expanduser()


def user_config_dir() -> Path:
    """``$XDG_CONFIG_HOME/experimaestro``, or ``~/.config/experimaestro``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join("~", ".config")
    return Path(base).expanduser() / "experimaestro"


def configuration_folder() -> Path:
    """The configuration folder in use: the one of :func:`set_config_dir`, else
    :func:`user_config_dir` (``settings.yaml`` is read there too)."""
    return _config_dir if _config_dir is not None else user_config_dir()


def candidate_files(
    config_dir: Optional[PathLike] = None, workdir: Optional[PathLike] = None
) -> list[Path]:
    """The ``launchers.py`` paths looked at, in order (see the module's documentation)."""
    explicit = Path(config_dir).expanduser() if config_dir is not None else _config_dir
    workspace = workdir if workdir is not None else os.environ.get("XPM_WORKDIR") or None
    folders = [explicit] if explicit is not None else []
    if workspace is not None:
        folders.append(Path(workspace).expanduser())
    if explicit is None:
        folders.append(user_config_dir())
    return [folder / LAUNCHERS_FILE for folder in folders]


def load_launchers_file(path: Path) -> Callable[..., object]:
    """The ``find_launcher`` function of ``path`` (loaded once; again if the file changed)."""
    stat = path.stat()
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _modules.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    name = "xpm_launchers_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)  # an error here shows the user's line in launchers.py
    except BaseException:
        sys.modules.pop(name, None)
        raise
    function = getattr(module, "find_launcher", None)
    if not callable(function):
        raise LauncherConfigError(
            f"{path} defines no find_launcher function: add "
            f"'def find_launcher(requirements, tags): ...' returning a Launcher or None"
        )
    _modules[path] = (key, function)
    return function


@dataclass
class LauncherChoice:
    """What :func:`explain_launcher` found, and why."""

    launcher: Launcher
    #: The requirements, one per spec given (each with its alternatives).
    requirements: list[RequirementUnion]
    #: The ``launchers.py`` files looked at, in order.
    searched: list[Path]
    #: The file used (None: none exists).
    source: Optional[Path] = None
    #: Index in ``requirements`` of the requirement that got the launcher.
    requirement_index: Optional[int] = None
    #: The alternative that ``launchers.py`` matched last (``requirements.match(host)``) before
    #: returning the launcher, and the host it matched (None if it matched nothing that way).
    matched: Optional[MatchRequirement] = None
    host: Optional[HostSpecification] = None
    #: True when the launcher is the local fallback.
    fallback: bool = False
    reason: str = ""
    tags: set[str] = field(default_factory=set)

    @property
    def alternative_index(self) -> Optional[int]:
        """Position (from 0) of the matched alternative in its requirement."""
        if self.matched is None or self.requirement_index is None:
            return None
        alternatives = self.requirements[self.requirement_index].requirements
        return next(
            (i for i, alt in enumerate(alternatives) if alt is self.matched.requirement), None
        )


def _requirement(spec: Spec) -> RequirementUnion:
    if isinstance(spec, str):
        return parse(spec)
    if isinstance(spec, HostRequirement):
        return as_union(spec)
    raise TypeError(
        f"find_launcher() takes requirement strings or requirements (cuda_gpu(...) & ...), "
        f"not {type(spec).__name__}"
    )


def explain_launcher(
    *specs: Spec,
    tags: Iterable[str] = (),
    config_dir: Optional[PathLike] = None,
    workdir: Optional[PathLike] = None,
) -> LauncherChoice:
    """Like :func:`find_launcher`, but return the whole :class:`LauncherChoice` and log nothing."""
    if not specs:
        raise TypeError("find_launcher() needs a requirement, e.g. 'duration=4h & cuda(mem=16G)'")
    requirements = [_requirement(spec) for spec in specs]
    searched = candidate_files(config_dir, workdir)
    tag_set = set(tags)
    source = next((path for path in searched if path.is_file()), None)
    if source is None:
        return LauncherChoice(
            _local_launcher(), requirements, searched, fallback=True, tags=tag_set,
            reason="no launchers.py found (looked for " + ", ".join(map(str, searched)) + ")",
        )
    function = load_launchers_file(source)
    for index, requirement in enumerate(requirements):
        launcher = function(requirement, tag_set)
        if launcher is None:
            continue
        if not isinstance(launcher, Launcher):
            raise LauncherConfigError(
                f"find_launcher in {source} returned {launcher!r} ({type(launcher).__name__}) "
                f"for {str(requirement)!r}: return a Launcher (e.g. DirectLauncher()) or None"
            )
        return LauncherChoice(
            launcher, requirements, searched, source, index, requirement.last_match,
            requirement.last_host, tags=tag_set,
            reason=f"find_launcher in {source} returned it",
        )
    wanted = " | ".join(str(r) for r in requirements)
    return LauncherChoice(
        _local_launcher(), requirements, searched, source, fallback=True, tags=tag_set,
        reason=f"find_launcher in {source} returned None for {wanted!r}",
    )


def _local_launcher() -> Launcher:
    from ..launchers.direct import default_launcher

    return default_launcher()


def find_launcher(
    *specs: Spec,
    tags: Iterable[str] = (),
    config_dir: Optional[PathLike] = None,
    workdir: Optional[PathLike] = None,
) -> Launcher:
    """The first launcher that fits the requirement, from ``launchers.py``.

    ``specs``: requirement strings (``"duration=4h & cuda(mem=16G)*2 | cpu(cores=4, mem=8G)"``, see
    :mod:`.parser`) or requirement objects (``cuda_gpu(mem="16G") * 2``); each is given in turn to
    ``launchers.py``, and the first launcher it returns is used. ``tags`` are passed to it as a
    set. ``config_dir`` and ``workdir`` change where ``launchers.py`` is looked for (see the
    module's documentation).

    With no ``launchers.py``, or when it returns None, this returns the local launcher and logs a
    warning (once per process).
    """
    choice = explain_launcher(*specs, tags=tags, config_dir=config_dir, workdir=workdir)
    if choice.fallback:
        once = str(choice.source)
        level = logging.DEBUG if once in _warned else logging.WARNING
        _warned.add(once)
        logger.log(level, "%s: using the local launcher", choice.reason)
    return choice.launcher


class LauncherRegistry:
    """The 2.x entry point to the configuration folder: ``LauncherRegistry.set_config_dir(path)``."""

    @staticmethod
    def set_config_dir(config_dir: Optional[PathLike]) -> None:
        """Same as :func:`set_config_dir`."""
        set_config_dir(config_dir)
