"""User settings: ``settings.yaml`` in the configuration folder, as in experimaestro 2.x.

The configuration folder is ``~/.config/experimaestro`` (``$XDG_CONFIG_HOME/experimaestro`` when
set), or the one given to ``run-experiment --xpm-config-dir`` (also where ``launchers.py`` is read,
see docs/launchers.md)::

    workspaces:
      - id: neural
        path: ~/experiments/neural      # relative paths are relative to settings.yaml
        env: {CUDA_VISIBLE_DEVICES: "0"}  # set for the jobs of experiments run in it
        triggers: ["neural-*"]          # experiment ids (globs) that select this workspace
      - id: default
        path: ~/experiments/default
    env: {}                             # set for the jobs of every experiment

Other 2.x keys (``server``, ``history``, ``folders``...) are accepted; those we do not use are
reported as warnings naming them.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Optional, Union

import attrs

from .experiments.schema import structure
from .experiments.yamlfile import ConfigurationError, load_yaml

logger = logging.getLogger("experimaestro.settings")

SETTINGS_FILE = "settings.yaml"


@attrs.define(kw_only=True)
class ServerSettings:
    """The web monitor's settings (read for ``run-experiment --web``)."""

    port: Optional[int] = None
    host: Optional[str] = None
    autohost: Optional[str] = None
    token: Optional[str] = None


@attrs.define(kw_only=True)
class WorkspaceSettings:
    """One workspace: its id, folder, the environment of its jobs, and the experiment ids
    (glob patterns) that select it."""

    id: str
    path: Path
    env: dict[str, str] = attrs.field(factory=dict)
    triggers: list[str] = attrs.field(factory=list)
    alt_workspaces: list[str] = attrs.field(factory=list)


@attrs.define(kw_only=True)
class Settings:
    """The contents of ``settings.yaml``."""

    server: ServerSettings = attrs.field(factory=ServerSettings)
    workspaces: list[WorkspaceSettings] = attrs.field(factory=list)
    env: dict[str, str] = attrs.field(factory=dict)


def config_dir() -> Path:
    """The configuration folder in use (``--xpm-config-dir``, else the user's)."""
    from .launcherfinder.registry import configuration_folder

    return configuration_folder()


_cache: dict[Path, tuple[tuple[int, int], Settings]] = {}


def _env_as_text(data: dict) -> None:
    """2.x reads numbers in ``env`` mappings as text (``CUDA_VISIBLE_DEVICES: 0``): so do we."""
    mappings = [data.get("env")] + [
        w.get("env") for w in data.get("workspaces") or [] if isinstance(w, dict)
    ]
    for mapping in mappings:
        if isinstance(mapping, dict):
            for key, value in mapping.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    mapping[key] = str(value)


def get_settings(path: Optional[Union[str, Path]] = None) -> Settings:
    """The settings in ``path`` (default: ``settings.yaml`` in :func:`config_dir`); empty settings
    when the file does not exist. Read again when the file changes. A malformed file raises
    :class:`ConfigurationError` naming the key and line."""
    file = Path(path).expanduser() if path is not None else config_dir() / SETTINGS_FILE
    try:
        stat = file.stat()
    except OSError:
        return Settings()
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(file)
    if cached is not None and cached[0] == key:
        return cached[1]
    doc = load_yaml(file)
    _env_as_text(doc.data)
    origins = {k: f"{file}:{line}" for k, line in doc.lines.items()}
    settings = structure(Settings, doc.data, origins, warn=lambda m: logger.warning("%s", m))
    for workspace in settings.workspaces:
        workspace.path = (file.parent / workspace.path.expanduser()).resolve()
    _cache[file] = (key, settings)
    return settings


def get_workspace(id: Optional[str] = None) -> Optional[WorkspaceSettings]:
    """The workspace named ``id`` in the settings, or the first one listed when ``id`` is None;
    None when there is no such workspace."""
    workspaces = get_settings().workspaces
    if id is None:
        return workspaces[0] if workspaces else None
    return next((w for w in workspaces if w.id == id), None)


def find_workspace(
    *,
    workspace: Optional[str] = None,
    workdir: Optional[Union[str, Path]] = None,
    experiment_id: Optional[str] = None,
) -> WorkspaceSettings:
    """The workspace an experiment runs in.

    ``workspace`` (an id of settings.yaml; ``workdir`` then overrides its folder), else ``workdir``,
    else the first workspace one of whose ``triggers`` globs matches ``experiment_id``, else the first
    workspace listed. With none of these, :class:`ConfigurationError` says how to set one.
    """
    settings_file = config_dir() / SETTINGS_FILE
    if workspace:
        found = get_workspace(workspace)
        if found is None:
            known = ", ".join(w.id for w in get_settings().workspaces) or "none"
            raise ConfigurationError(
                f"no workspace {workspace!r} in {settings_file} (workspaces there: {known}): "
                f"add it under 'workspaces:' or give --workdir DIR"
            )
        if workdir:
            found = attrs.evolve(found, path=Path(workdir).expanduser().absolute())
        return found
    if workdir:
        return WorkspaceSettings(id="", path=Path(workdir).expanduser().absolute())
    workspaces = get_settings().workspaces
    if experiment_id:
        for candidate in workspaces:
            for trigger in candidate.triggers:
                if fnmatch.fnmatchcase(experiment_id, trigger):
                    logger.info("workspace %s: experiment %s matches its trigger %r",
                                candidate.id, experiment_id, trigger)
                    return candidate
    if workspaces:
        return workspaces[0]
    raise ConfigurationError(
        f"no workspace: give --workdir DIR, or list workspaces in {settings_file} "
        f"(workspaces: [{{id: main, path: ~/experiments}}]) and pick one with --workspace ID "
        f"(or --xpm-config-dir DIR for another settings.yaml)"
    )


__all__ = [
    "ServerSettings",
    "Settings",
    "WorkspaceSettings",
    "find_workspace",
    "get_settings",
    "get_workspace",
]
