"""``experimaestro run-experiment``: run a 2.x-style experiment (YAML configuration + ``run``).

:func:`run_experiment` does the work; ``cli/run_experiment.py`` only parses the options. In order:

1. merge the YAML files and ``-c`` options (:mod:`.loading`); ``--show`` prints the result and stops;
2. put ``pythonpath`` entries on ``sys.path`` (jobs inherit them), run ``pre_experiment``, import the
   experiment's code (``module:``, else ``file:``, default ``experiment.py`` beside the YAML);
3. build the configuration object from the schema, the type of ``run``'s second parameter
   (:mod:`.schema`): errors stop here, before anything is written;
4. pick the workspace (:func:`experimaestro.settings.find_workspace`), set the jobs' environment,
   check git (``dirty_git``), and call ``run`` inside ``experiment(...)``.

A ``file:`` experiment is imported as a module named after its file (``experiment``), from its
folder put first on ``sys.path``: the job processes, which inherit the path, import the tasks it
defines under the same name (and the same type identifiers as 2.x).
"""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import traceback
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

from ..core.config import RunMode
from ..scheduler.gitstate import DirtyGitAction, dirty_repository
from .helper import ExperimentHelper, UnexpectedArguments
from .loading import MergedConfiguration, is_file_reference, merge_configuration, yaml_path
from .schema import structure
from .yamlfile import ConfigurationError

logger = logging.getLogger("experimaestro.run")


@dataclass
class RunOptions:
    """The options of ``experimaestro run-experiment`` (see its ``--help``)."""

    yaml_file: str
    args: list[str] = field(default_factory=list)
    workdir: Optional[str] = None
    workspace: Optional[str] = None
    xpm_config_dir: Optional[Path] = None
    run_mode: RunMode = RunMode.NORMAL
    env: list[tuple[str, str]] = field(default_factory=list)
    conf: list[str] = field(default_factory=list)
    pre_yaml: list[str] = field(default_factory=list)
    post_yaml: list[str] = field(default_factory=list)
    xp_file: Optional[str] = None
    module_name: Optional[str] = None
    show: bool = False
    port: Optional[int] = None
    web: bool = False
    #: The web monitor's address (None: 127.0.0.1).
    host: Optional[str] = None
    console: bool = False


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def run_experiment(options: RunOptions, warn: Callable[[str], None] = _warn) -> int:
    """Run the experiment; returns the exit code (0, or 1 when jobs failed). Bad input raises
    :class:`ConfigurationError` before anything is written."""
    from ..launcherfinder.registry import set_config_dir

    if options.xpm_config_dir is not None:
        folder = Path(options.xpm_config_dir).expanduser()
        if not folder.is_dir():
            raise ConfigurationError(f"--xpm-config-dir {folder}: no such folder")
        set_config_dir(folder)

    main = yaml_path(options.yaml_file)
    if not main.is_file():
        raise ConfigurationError(f"no YAML file {options.yaml_file!r} (nor {main})")
    merged = merge_configuration(
        main,
        [yaml_path(p) for p in options.pre_yaml],
        [yaml_path(p) for p in options.post_yaml],
        options.conf,
    )
    if options.show:
        sys.stdout.write(json.dumps(merged.data, indent=2, default=str) + "\n")
        return 0

    module = _import_experiment(merged, main, options)
    helper = getattr(module, "run", None)
    if helper is None:
        raise ConfigurationError(
            f"{_describe_module(module)} has no run function: define "
            f"run(helper: ExperimentHelper, configuration: MyConfiguration)"
        )
    if not isinstance(helper, ExperimentHelper):
        helper = ExperimentHelper(helper)
    if options.args and type(helper).run is ExperimentHelper.run:
        raise UnexpectedArguments(list(options.args))  # before anything is written
    schema = _schema(helper.callable, module)
    configuration = structure(schema, merged.data, merged.origins, warn=warn)

    experiment_id = getattr(configuration, "id", None)
    if not isinstance(experiment_id, str) or not experiment_id:
        raise ConfigurationError(
            f"{main}: the configuration has no id: derive {schema.__name__} from "
            f"ConfigurationBase (experimaestro.experiments) and set 'id:' in the YAML"
        )
    if getattr(configuration, "add_timestamp", False):
        experiment_id += datetime.datetime.now().strftime("-%Y%m%d-%H%M")

    from ..settings import find_workspace, get_settings

    workspace = find_workspace(
        workspace=options.workspace, workdir=options.workdir, experiment_id=experiment_id
    )
    settings = get_settings()
    for key, value in (*settings.env.items(), *workspace.env.items(), *options.env):
        os.environ[key] = value  # jobs inherit the controller's environment

    _check_git(module, getattr(configuration, "dirty_git", DirtyGitAction.IGNORE), warn)
    port = _monitor_port(options, settings.server.port, warn)

    from ..scheduler.experiment import FailedExperiment, experiment

    monitor_errors: tuple[type[Exception], ...] = ()
    if port is not None:
        from ..monitor import MonitorError  # (starlette and uvicorn: only when asked for)

        monitor_errors = (MonitorError,)

    try:
        # dirty_git was checked above, on the experiment's code (with the YAML's messages).
        xp = experiment(workspace.path, experiment_id, run_mode=options.run_mode, port=port,
                        host=options.host,
                        dirty_git=DirtyGitAction.IGNORE)
    except ValueError as exc:
        raise ConfigurationError(f"{merged.origins.get(('id',), 'id')}: id: {exc}") from None
    named = f"workspace {workspace.id} " if workspace.id else "workspace "
    sys.stderr.write(f"experiment {experiment_id}: {named}({workspace.path})\n")
    try:
        with xp:
            helper.xp = xp
            helper.run(list(options.args), configuration)
    except FailedExperiment:
        return 1  # the summary of the failed jobs is already printed
    except monitor_errors as exc:  # e.g. the port is taken: a clear error, not a traceback
        raise ConfigurationError(f"--port/--web: {exc}") from None
    return 0


def _describe_module(module: ModuleType) -> str:
    file = getattr(module, "__file__", None)
    return f"{module.__name__} ({file})" if file else module.__name__


def _import_experiment(merged: MergedConfiguration, main: Path, options: RunOptions) -> ModuleType:
    """Set the Python path, run ``pre_experiment``, and import the experiment's module."""
    data = merged.data
    module_name = options.module_name or data.get("module")
    for entry in reversed(merged.pythonpath):
        _prepend_path(entry)

    xp_file: Optional[Path] = None
    if options.xp_file is not None:
        xp_file = Path(options.xp_file).expanduser().absolute()
        module_name = None
    elif not module_name:
        xp_file = Path(data.get("file") or (main.parent / "experiment")).absolute()
    if xp_file is not None:
        if not xp_file.exists() and xp_file.suffix != ".py":
            xp_file = xp_file.with_name(xp_file.name + ".py")
        if not xp_file.is_file():
            where = merged.origins.get(("file",), "the default (experiment.py beside the YAML)")
            raise ConfigurationError(
                f"{where}: the experiment file {xp_file} does not exist: set 'file:' (relative to "
                f"the YAML) or 'module:' to the code that defines run()"
            )
        if str(xp_file.parent) not in sys.path:  # jobs import the file's tasks from there
            sys.path.insert(0, str(xp_file.parent))

    pre = data.get("pre_experiment")
    if pre:
        _run_pre_experiment(str(pre), merged)

    if xp_file is not None:
        return _import_file(xp_file)
    assert module_name
    return _import_module(str(module_name), merged)


def _prepend_path(folder: Path) -> None:
    entry = str(folder)
    if entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)


def _run_pre_experiment(pre: str, merged: MergedConfiguration) -> None:
    where = merged.origins.get(("pre_experiment",), "pre_experiment")
    if is_file_reference(pre):
        path = Path(pre)
        if not path.is_file():
            raise ConfigurationError(
                f"{where}: pre_experiment file {path} not found (a path is relative to the YAML "
                f"that names it)"
            )
        spec = importlib.util.spec_from_file_location("__xpm_pre_experiment__", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigurationError(
                f"failed to execute pre_experiment {_user_line(exc, path)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return
    try:
        importlib.import_module(pre)
    except ModuleNotFoundError as exc:
        if exc.name is not None and pre.startswith(exc.name):
            raise ConfigurationError(
                f"{where}: pre_experiment {pre!r} is neither a file (write a path ending in .py, "
                f"relative to the YAML) nor an importable module"
            ) from None
        raise


def _user_line(exc: BaseException, path: Path) -> str:
    """``file:line`` of the deepest frame of ``exc``'s traceback in ``path`` (else the file)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f"{path}:{frames[-1].lineno}" if frames else str(path)


def _import_file(path: Path) -> ModuleType:
    """Import the experiment file as the module named after it (so jobs import it by that name)."""
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == str(path):
        return existing
    found = importlib.util.find_spec(name) if existing is None else None
    if found is not None and found.origin != str(path):
        logger.warning(
            "the experiment file %s shares its name with the module %s (%s): job processes may "
            "import that one instead; rename the file", path, name, found.origin,
        )
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import_module(name: str, merged: MergedConfiguration) -> ModuleType:
    """Import ``module:``; if it is not found, put the folder as many levels above the YAML that
    named it as the module name has parts on the path, and try again."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not name.startswith(exc.name) or merged.module_yaml is None:
            raise
    folder = merged.module_yaml.resolve().parent
    for _ in range(len(name.split(".")) - 1):
        folder = folder.parent
    _prepend_path(folder)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not name.startswith(exc.name):
            raise
        where = merged.origins.get(("module",), "module")
        raise ConfigurationError(
            f"{where}: module {name!r} cannot be imported (also looked in {folder}): add its "
            f"folder to 'pythonpath:' (relative to the YAML)"
        ) from None


def _schema(function: Callable[..., Any], module: ModuleType) -> type:
    """The type annotation of ``run``'s second parameter."""
    parameters = list(inspect.signature(function).parameters.values())
    where = f"run() in {_describe_module(module)}"
    if len(parameters) != 2:
        raise ConfigurationError(
            f"{where} takes {len(parameters)} parameters: it must take two, "
            f"run(helper: ExperimentHelper, configuration: MyConfiguration)"
        )
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:  # an annotation naming something undefined
        raise ConfigurationError(f"{where}: its type annotations do not resolve: {exc}") from None
    schema = hints.get(parameters[1].name)
    if schema is None:
        raise ConfigurationError(
            f"{where}: annotate its second parameter with the configuration class "
            f"({parameters[1].name}: MyConfiguration, a @configuration class deriving from "
            f"ConfigurationBase)"
        )
    return schema


def _check_git(module: ModuleType, action: DirtyGitAction, warn: Callable[[str], None]) -> None:
    """``dirty_git``: warn about (or refuse) uncommitted changes in the code's git repository."""
    if action is DirtyGitAction.IGNORE or not getattr(module, "__file__", None):
        return
    folder = Path(module.__file__).parent  # type: ignore[arg-type]
    if dirty_repository(folder) is None:
        return  # not a git repository (or clean)
    message = (
        f"the git repository of {folder} has uncommitted changes (dirty_git: "
        f"{action.value}; set dirty_git: ignore to skip this check)"
    )
    if action is DirtyGitAction.ERROR:
        raise ConfigurationError(message)
    warn(message)


def _monitor_port(
    options: RunOptions, settings_port: Optional[int], warn: Callable[[str], None]
) -> Optional[int]:
    """The web monitor's port for ``--port``/``--web`` when the monitor is available, else None
    (with one warning)."""
    if options.console:
        warn("--console: the console monitor is not part of this version: ignored")
    if options.port is None and not options.web:
        return None
    if importlib.util.find_spec("experimaestro.monitor") is None:
        warn("--port/--web: the web monitor is not part of this version yet: ignored")
        return None
    if options.port is not None:
        return options.port
    return settings_port if settings_port is not None else 12345
