"""Configurations and tasks: construction with ``.C()``, validation, sealing, task outputs.

A configuration is an instance of a :class:`Config` subclass, built with ``Cls.C(name=value, ...)``.
Its parameter values live in the instance ``__dict__`` (reads are plain attribute reads); its
bookkeeping lives in ``cfg.__xpm__`` (:class:`ConfigInformation`).

This module is pure: submission is delegated to a *submitter* that the scheduler layer registers
(:func:`set_submitter`), so that the core never imports the scheduler.
"""

from __future__ import annotations

import enum
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, TypeVar

from .arguments import Argument, check_override, collect_arguments
from .types import (
    CheckError,
    ParamKind,
    TypeVarType,
    ValidationError,
    _Reject,
    check_binding,
)

if TYPE_CHECKING:  # pragma: no cover
    from .identifier import JobIdentifier
    from .partial import Partial
    from .typeids import Identifier

C = TypeVar("C", bound="Config")


class SealedError(AttributeError):
    """Raised when a parameter of a submitted (sealed) configuration is assigned."""


class RunMode(str, enum.Enum):
    """How ``submit()`` treats a task.

    * ``NORMAL``: schedule and run it;
    * ``GENERATE_ONLY``: write the job directory (params.json, script) but do not run it;
    * ``DRY_RUN``: compute everything, the job path included, and write nothing.

    A ``str`` enum with experimaestro 2.x's values (``RunMode("dry-run")``, ``RunMode.DRY_RUN ==
    "dry-run"``); the lower-case member names are accepted too (``RunMode("dry_run")``).
    """

    NORMAL = "normal"
    GENERATE_ONLY = "generate"
    DRY_RUN = "dry-run"

    @classmethod
    def _missing_(cls, value: object) -> Optional["RunMode"]:
        # The member names also work, in any case: RunMode("generate_only"), RunMode("DRY_RUN").
        if isinstance(value, str):
            return cls.__members__.get(value.upper().replace("-", "_"))
        return None


class TaggedValue:
    """A value marked as a tag by :func:`tag`; unwrapped when assigned to a parameter."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"tag({self.value!r})"


def tag(value: Any) -> Any:
    """Mark a parameter value as a tag: ``Data.C(n_tokens=tag(100))`` tags the config ``n_tokens=100``."""
    if isinstance(value, TaggedValue):
        return value
    if not isinstance(value, (str, int, float, bool)) or value is None:
        raise ValidationError(
            f"tag({value!r}): a tag value must be a str, int, float or bool, "
            f"not {type(value).__name__}"
        )
    return TaggedValue(value)


# --- Class-level information ---------------------------------------------------------------------

#: The module name under which a job process loads the experiment script that was ``__main__`` in
#: the controller (its ``if __name__ == "__main__":`` block must not run again).
MAIN_ALIAS = "__xpm_main__"


def module_name(cls: type) -> str:
    """The module of a class as the controller names it (``__main__`` for the script's classes)."""
    module = cls.__module__
    return "__main__" if module == MAIN_ALIAS else module



class XPMType:
    """Per-class information: the declared parameters (inherited ones included) and the type id."""

    __slots__ = (
        "cls",
        "arguments",
        "typeid",
        "typeid_bytes",
        "counted",
        "defaults",
        "_partials",
    )

    def __init__(self, cls: type) -> None:
        self.cls = cls
        arguments: dict[str, Argument] = {}
        for base in reversed(cls.__mro__):
            if base is object or not issubclass(base, Config):
                continue
            own = base.__dict__.get("_xpm_own_arguments")
            if own is None:
                own = collect_arguments(base)
                type.__setattr__(base, "_xpm_own_arguments", own)
            for name, arg in own.items():
                inherited = arguments.get(name)
                if inherited is not None and inherited.owner is not arg.owner:
                    check_override(arg, inherited)
            arguments.update(own)
        self.arguments = arguments
        xpmid = cls.__dict__.get("__xpmid__")
        self.typeid: str = (
            str(xpmid) if xpmid is not None else f"{module_name(cls)}.{cls.__qualname__}"
        ).lower()
        self.typeid_bytes = self.typeid.encode("utf-8")
        # Arguments that may enter the identifier, sorted by name, with their prefix bytes
        # ``03 + name + 05`` precomputed (see identifier.py).
        self.counted: list[tuple[Argument, bytes]] = [
            (arg, b"\x03" + name.encode("utf-8") + b"\x05")
            for name, arg in sorted(arguments.items())
            if arg.in_identifier
        ]
        self.defaults: list[Argument] = [
            arg for arg in arguments.values() if arg.has_default or arg.is_optional
        ]
        self._partials: Optional[dict[str, "Partial"]] = None

    @property
    def partials(self) -> dict[str, "Partial"]:
        """The partials (``core/partial.py``) declared on the class and its bases, by name."""
        if self._partials is None:
            from .partial import partials_of

            self._partials = partials_of(self.cls)
        return self._partials

    @property
    def identifier(self) -> "Identifier":
        """The type id as 2.x's :class:`~experimaestro.core.typeids.Identifier`."""
        from .typeids import Identifier

        return Identifier(self.typeid)

    def __initialize__(self) -> None:
        """2.x's explicit initialisation of a type: here everything but the partials is done
        on creation, and this computes those (``_partials`` then holds them, as in 2.x)."""
        self.partials  # noqa: B018 - computed on access

    @property
    def name(self) -> str:
        """The last component of the type id: the job's file prefix (``<name>.done``...)."""
        return self.typeid.rsplit(".", 1)[-1]


def xpmtype(cls: type) -> XPMType:
    """The (cached) :class:`XPMType` of a configuration class."""
    info = cls.__dict__.get("_xpm_type")
    if info is None:
        info = XPMType(cls)
        type.__setattr__(cls, "_xpm_type", info)
    return info


# --- Per-object information ----------------------------------------------------------------------


class ConfigInformation:
    """The bookkeeping of one configuration, reachable as ``cfg.__xpm__``."""

    __slots__ = (
        "config",
        "sealed",
        "_tags",
        "task",
        "job",
        "init_tasks",
        "dependencies",
        "completion_callbacks",
        "meta",
        "digest_cache",
        "tags_cache",
        "loader",
        "typevars",
        "generated",
        "instance",
    )

    def __init__(self, config: "Config") -> None:
        self.config = config
        self.sealed = False
        self._tags: dict[str, Any] = {}
        #: The task that produces this configuration (set by ``dep(...)`` in ``task_outputs``).
        self.task: Optional["Task"] = None
        #: The scheduler's job, once the task is submitted (or the runner's, in the job process).
        self.job: Any = None
        self.init_tasks: list["LightweightTask"] = []
        #: Explicit dependencies (``add_dependencies``): tasks, configs or resource dependencies.
        self.dependencies: list[Any] = []
        self.completion_callbacks: list[Callable[[], Any]] = []
        #: Set with :func:`setmeta`: a meta config never enters the identifier of its parents.
        self.meta: Optional[bool] = None
        self.digest_cache: Optional[bytes] = None
        self.tags_cache: Optional[dict[str, Any]] = None
        #: Set on a configuration read from a params.json that only refers to it (an upstream
        #: task): fills its values on first access (see serialization.py).
        self.loader: Optional[Callable[[], None]] = None
        #: The types the type variables of generic parameters are bound to (see _bind_typevars).
        self.typevars: Optional[dict[Any, type]] = None
        #: Parameters whose value is a path generated in a task's folder (resolve_generated_paths).
        self.generated: list[str] = []
        #: Whether this is an object built by ``instance()`` (2.x's ``obj.xpmconfig`` needs it).
        self.instance = False

    @property
    def xpmtype(self) -> XPMType:
        return xpmtype(type(self.config))

    @property
    def identifier(self) -> "JobIdentifier":
        """The configuration's identifier (cached once the configuration is sealed)."""
        from .identifier import JobIdentifier, config_digest

        return JobIdentifier(config_digest(self.config))

    def tags(self) -> dict[str, Any]:
        """The tags of the whole configuration graph, as ``cfg.tags()`` (2.x: ``cfg.__xpm__.tags()``);
        the configuration's own tags are ``cfg.__xpm__.own_tags``."""
        return dict(graph_tags(self.config))

    @property
    def own_tags(self) -> dict[str, Any]:
        """The tags set on this configuration itself."""
        return dict(self._tags)

    @property
    def owner_job(self) -> Any:
        """The job of this task, or of the task that produces this output."""
        if self.job is not None:
            return self.job
        if self.task is not None:
            return self.task.__xpm__.job
        return None

    def validate(self) -> None:
        """Check that every required parameter of the graph is set (``submit()`` does it too)."""
        for cfg in iter_configs(self.config, stop=lambda c: c.__xpm__.sealed):
            _check_required(cfg)

    def seal(self) -> None:
        """Seal the whole configuration graph: validate required parameters, forbid assignments."""
        for cfg in iter_configs(self.config, stop=lambda c: c.__xpm__.sealed):
            _check_required(cfg)
            cfg.__xpm__.sealed = True

    def get_partial_identifier(self, partial: "Partial") -> "JobIdentifier":
        """The identifier of this configuration over the parameters ``partial`` counts."""
        from .identifier import JobIdentifier, partial_digest

        return JobIdentifier(partial_digest(self.config, partial))


def _check_required(cfg: "Config") -> None:
    values = cfg.__dict__
    for name, arg in cfg.__xpm__.xpmtype.arguments.items():
        if name not in values and arg.required:
            raise ValidationError(
                f"{type(cfg).__qualname__}.{name} ({arg.type.describe()}) is required but "
                f"was never set: pass it to {type(cfg).__qualname__}.C({name}=...) or "
                f"assign it before submit()"
            )


_loading = threading.RLock()


def ensure_loaded(config: "Config") -> None:
    """Fill the values of a configuration that was read as a reference (no-op otherwise)."""
    info = config.__dict__["__xpm__"]
    if info.loader is None:
        return
    with _loading:  # two threads of a job touching the same reference load it once
        loader = info.loader
        if loader is not None:
            loader()
            info.loader = None


def _children(cfg: "Config") -> list["Config"]:
    info = cfg.__xpm__
    values = cfg.__dict__
    children: list[Any] = [values[name] for name in info.xpmtype.arguments if name in values]
    children.extend(info.init_tasks)
    return list(iter_values(children))


def graph_tags(root: "Config") -> dict[str, Any]:
    """The tags of a configuration graph: each configuration's own tags override those of the
    values it holds (and those of the task whose output it is); among these, a later parameter
    (in declaration order) overrides an earlier one. Cached on sealed configurations; iterative."""
    done: dict[int, dict[str, Any]] = {}
    stack: list[tuple[Config, bool]] = [(root, False)]
    entered: set[int] = set()
    while stack:
        cfg, expanded = stack.pop()
        info = cfg.__xpm__
        key = id(cfg)
        if key in done:
            continue
        if info.tags_cache is not None:
            done[key] = info.tags_cache
            continue
        children = _children(cfg)
        if info.task is not None:  # a task's output has the task's tags too (as in 2.x)
            children = [info.task, *children]
        if not expanded:
            if key in entered:  # a cycle: its tags are being gathered further up
                continue
            entered.add(key)
            stack.append((cfg, True))
            stack.extend((c, False) for c in children if id(c) not in done)
            continue
        merged: dict[str, Any] = {}
        for child in children:
            merged.update(done.get(id(child), {}))
        merged.update(info._tags)
        done[key] = merged
        if info.sealed:
            info.tags_cache = merged
    return done[id(root)]


def setmeta(config: C, flag: bool = True) -> C:
    """Mark a configuration as meta: it is then left out of the identifiers of its parents."""
    config.__xpm__.meta = flag
    return config


def iter_values(value: Any) -> Iterator[Any]:
    """Every configuration found inside a value (lists, tuples, sets, dict values), iteratively."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, Config):
            yield v
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())


def iter_configs(
    root: "Config", stop: Optional[Callable[["Config"], bool]] = None
) -> Iterator["Config"]:
    """The configurations reachable from ``root`` (parameters and init tasks), each once.

    The walk is iterative (no recursion limit). When ``stop(cfg)`` is true for a reachable
    configuration other than the root, it is neither yielded nor entered.
    """
    seen: set[int] = {id(root)}
    stack = [root]
    while stack:
        cfg = stack.pop()
        yield cfg
        for child in _children(cfg):
            if id(child) in seen or (stop is not None and stop(child)):
                continue
            seen.add(id(child))
            stack.append(child)


def _convert(cls: type, arg: Argument, value: Any, info: ConfigInformation) -> Any:
    tagged = isinstance(value, TaggedValue)
    if tagged:
        value = value.value
    if isinstance(value, Task) and value.__xpm__.job is None:
        raise ValidationError(
            f"{cls.__qualname__}.{arg.name}: the task {type(value).__qualname__} must be "
            f"submitted before it is used as a parameter (write task.submit() first)"
        )
    spec = arg.type
    try:
        converted = spec.convert(value)
    except _Reject:
        raise ValidationError(
            f"{cls.__qualname__}.{arg.name}: expected {spec.describe()}, got {value!r} "
            f"(of type {type(value).__qualname__})"
        ) from None
    if arg.checkers:
        for checker in arg.checkers:
            if not checker.check(converted):
                raise CheckError(
                    f"{cls.__qualname__}.{arg.name}: {converted!r} is not a valid value: "
                    f"expected {checker}"
                )
    if type(spec) is TypeVarType or isinstance(converted, (Config, list, dict)):
        is_config = isinstance(converted, Config)
        if type(spec) is TypeVarType or (
            is_config and (info.typevars or converted.__xpm__.typevars)
        ):
            _bind_typevars(cls, arg, converted, info)
        if not arg.ignore_generated:
            _refuse_generated(cls, arg, converted)
    if tagged:
        info._tags[arg.name] = converted
    return converted


def _bind_typevars(cls: type, arg: Argument, value: Any, info: ConfigInformation) -> None:
    """Check and record the type variable bindings a value brings (experimaestro 2.x's rule:
    within a configuration and the configurations it holds, a variable names one type).
    Nothing is recorded when the value is refused."""
    mine = dict(info.typevars or {})
    problem = None
    if type(arg.type) is TypeVarType and value is not None:
        problem = check_binding(mine, arg.type.typevar, type(value))
    theirs: Optional[dict[Any, type]] = None
    if problem is None and isinstance(value, Config):
        theirs = dict(value.__xpm__.typevars or {})
        for typevar, bound in list(mine.items()):
            problem = problem or check_binding(theirs, typevar, bound)
        for typevar, bound in list(theirs.items()):
            problem = problem or check_binding(mine, typevar, bound)
    if problem is not None:
        raise ValidationError(
            f"{cls.__qualname__}.{arg.name}: cannot take {value!r}: {problem}. Give values of "
            f"one type (or of types derived from one another) to the parameters typed with it"
        )
    info.typevars = mine or None
    if theirs is not None:
        value.__xpm__.typevars = theirs or None


def _refuse_generated(cls: type, arg: Argument, value: Any) -> None:
    """Refuse a configuration holding paths generated in another task's folder: the task using it
    would read that folder without depending on that task (2.x refuses it too)."""
    tops = [c for c in iter_values(value) if c.__xpm__.sealed]
    if not tops:
        return
    found: list[str] = []
    seen: set[int] = set()
    stack = tops
    while stack:
        cfg = stack.pop()
        info = cfg.__xpm__
        if id(cfg) in seen or isinstance(cfg, Task) or info.task is not None:
            continue
        seen.add(id(cfg))
        found.extend(f"{type(cfg).__qualname__}.{name}" for name in info.generated)
        values = cfg.__dict__
        for name, child_arg in info.xpmtype.arguments.items():
            if name in values and not child_arg.ignore_generated:
                stack.extend(iter_values(values[name]))
    if found:
        raise ValidationError(
            f"{cls.__qualname__}.{arg.name}: the value holds paths generated in the folder of the "
            f"task it was submitted with ({', '.join(sorted(found))}); a task using it would read "
            f"that folder without waiting for that task. Use that task's output instead (return "
            f"the configuration from its task_outputs with dep(...)), or declare the parameter "
            f"with field(ignore_generated=True) if that is intended"
        )


# --- Configurations ------------------------------------------------------------------------------


def _xpmconfig(config: "Config") -> "Config":
    """2.x's ``obj.xpmconfig``: the configuration an ``instance()`` object was built from, or the
    configuration itself."""
    info = config.__dict__["__xpm__"]
    if not info.instance:
        return config
    if "__config__" in config.__dict__:
        return config.__dict__["__config__"]
    raise AttributeError(
        f"{type(config).__qualname__} object has no configuration tracked: it was built by "
        f"instance(keep=False); call instance() (keep=True, the default) to keep it"
    )


class _OwnClass:
    """2.x's ``MyConfig.XPMConfig``: the class of ``MyConfig``'s configurations, here the class."""

    def __get__(self, obj: Any, owner: type) -> type:
        return owner


class Config:
    """Base class of every configuration. Build instances with ``MyConfig.C(param=value, ...)``."""

    __xpm__: ConfigInformation
    #: Optional explicit type id (otherwise ``module.qualname``, lowercased).
    __xpmid__: Optional[str] = None
    #: 2.x's class of this class's configurations (``isinstance(cfg, MyConfig.XPMConfig)``).
    XPMConfig = _OwnClass()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self).__qualname__
        raise TypeError(
            f"{cls}(...) cannot be called directly: write {cls}.C(...) to build a configuration"
        )

    @classmethod
    def C(cls: type[C], **kwargs: Any) -> C:
        """Build a configuration of this class with the given parameter values."""
        t = xpmtype(cls)
        self = object.__new__(cls)
        values = self.__dict__
        info = ConfigInformation(self)
        values["__xpm__"] = info
        arguments = t.arguments
        for name, value in kwargs.items():
            arg = arguments.get(name)
            if arg is None:
                known = ", ".join(sorted(arguments)) or "none"
                raise ValidationError(
                    f"{cls.__qualname__} has no parameter {name!r} (its parameters: {known})"
                )
            if arg.kind is ParamKind.CONSTANT:
                raise ValidationError(
                    f"{cls.__qualname__}.{name} is a Constant[...] and cannot be set"
                )
            values[name] = _convert(cls, arg, value, info)
        for arg in t.defaults:
            if arg.name not in values:
                values[arg.name] = arg.make_default() if arg.has_default else None
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        arg = xpmtype(type(self)).arguments.get(name)
        if arg is None:
            object.__setattr__(self, name, value)
            return
        info: ConfigInformation = self.__dict__["__xpm__"]
        cls = type(self).__qualname__
        if info.sealed:
            raise SealedError(
                f"cannot set {cls}.{name}: the configuration is sealed (it was submitted); "
                f"build a new one with {cls}.C(...) instead"
            )
        if arg.kind is ParamKind.CONSTANT:
            raise ValidationError(f"{cls}.{name} is a Constant[...] and cannot be set")
        self.__dict__[name] = _convert(type(self), arg, value, info)

    @classmethod
    def __getxpmtype__(cls) -> XPMType:
        """The class's declared parameters and type id (2.x's spelling of :func:`xpmtype`)."""
        return xpmtype(cls)

    @property
    def __xpmtype__(self) -> XPMType:
        """The configuration's :class:`XPMType` (2.x's spelling)."""
        return xpmtype(type(self))

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails.
        if name.startswith("__") and name.endswith("__"):
            # Never load a reference for a special name (copy, pickle, getattr(..., None) probes).
            raise AttributeError(f"{type(self).__qualname__!r} object has no attribute {name!r}")
        info = self.__dict__.get("__xpm__")
        if info is not None and info.loader is not None:
            ensure_loaded(self)
            return getattr(self, name)
        if name == "xpmconfig":  # here, not a property: its AttributeError keeps its message
            return _xpmconfig(self)
        arguments = xpmtype(type(self)).arguments
        if name in arguments:
            raise AttributeError(
                f"{type(self).__qualname__}.{name} is not set "
                f"(a required {arguments[name].type.describe()} parameter)"
            )
        raise AttributeError(f"{type(self).__qualname__!r} object has no attribute {name!r}")

    # -- tags -----------------------------------------------------------------------------------

    def tag(self, name: str, value: Any) -> "Config":
        """Set a tag on this configuration."""
        if self.__xpm__.sealed:
            raise SealedError(f"cannot tag {type(self).__qualname__}: it is sealed")
        self.__xpm__._tags[name] = tag(value).value
        return self

    def tags(self) -> dict[str, Any]:
        """The tags of the whole configuration graph (a configuration's own tags win)."""
        return dict(graph_tags(self))

    def instance(
        self: C, context: Any = None, *, objects: Optional[dict] = None, keep: bool = True
    ) -> C:
        """This configuration as the job process builds it: fresh objects of the same classes,
        shared sub-configurations kept shared, ``__post_init__`` called (see core/instance.py).
        ``context`` is accepted for 2.x code and not used."""
        from .instance import instance

        return instance(self, objects=objects, keep=keep)

    # -- job access ----------------------------------------------------------------------------

    @property
    def jobpath(self) -> Path:
        """The job directory of this task (or of the task that produced this output)."""
        job = self.__xpm__.owner_job
        if job is None:
            # Not an AttributeError: that would send Python to __getattr__ and hide this message.
            raise RuntimeError(
                f"{type(self).__qualname__} has no job path: it is not a submitted task "
                f"nor the output of one"
            )
        return job.path

    def add_dependencies(self, *dependencies: Any) -> "Config":
        """Add explicit dependencies: tasks, task outputs, or resource dependencies (tokens)."""
        if self.__xpm__.sealed:
            raise SealedError(
                f"cannot add dependencies to {type(self).__qualname__}: it was already submitted"
            )
        self.__xpm__.dependencies.extend(dependencies)
        return self

    def __repr__(self) -> str:
        values = self.__dict__
        shown = ", ".join(
            f"{name}={values[name]!r}"
            for name in xpmtype(type(self)).arguments
            if name in values and not isinstance(values[name], Config)
        )
        return f"{type(self).__qualname__}.C({shown})"


class InstanceConfig(Config):
    """A configuration whose object identity counts: two equal but distinct instances differ."""


# --- Submission -------------------------------------------------------------------------------

Submitter = Callable[..., Any]
_submitter: Optional[Submitter] = None


def set_submitter(submitter: Submitter) -> None:
    """Register the function that turns a sealed task into a job (the scheduler layer does this)."""
    global _submitter
    _submitter = submitter


class Task(Config):
    """A configuration that runs: ``execute()`` is called in the job process."""

    def execute(self) -> None:
        """The task's work; runs in the job process, with the job directory as working directory."""
        raise NotImplementedError(f"{type(self).__qualname__}.execute() is not defined")

    def submit(
        self,
        *,
        launcher: Any = None,
        run_mode: Optional[RunMode] = None,
        init_tasks: Optional[Iterable["LightweightTask"]] = None,
        workspace: Any = None,
    ) -> Any:
        """Seal this task and hand it to the scheduler.

        Returns what ``task_outputs(dep)`` returns, or the task itself when it defines none.
        """
        info = self.__xpm__
        if info.job is not None:
            raise RuntimeError(f"{type(self).__qualname__} was already submitted")
        if init_tasks:
            init_tasks = list(init_tasks)
            for t in init_tasks:
                if not isinstance(t, LightweightTask):
                    raise ValidationError(
                        f"init_tasks must be LightweightTask configurations, got {t!r}"
                    )
            if info.sealed:
                raise SealedError(f"cannot add init tasks to sealed {type(self).__qualname__}")
            info.init_tasks = init_tasks
        info.seal()
        if _submitter is None:
            raise RuntimeError(
                "no scheduler is available: import experimaestro (not only experimaestro.core)"
            )
        info.job = _submitter(self, launcher=launcher, run_mode=run_mode, workspace=workspace)
        return Task.outputs(self)  # not self.outputs(): a parameter may be named ``outputs``

    def outputs(self) -> Any:
        """What ``submit()`` returns: the outputs declared by ``task_outputs``, or the task itself."""
        task_outputs = getattr(self, "task_outputs", None)
        if task_outputs is None:
            return self

        def dep(config: C) -> C:
            if not isinstance(config, Config):
                raise ValidationError(
                    f"{type(self).__qualname__}.task_outputs: dep() takes a configuration, "
                    f"got {config!r}"
                )
            config.__xpm__.task = self
            config.__xpm__.seal()
            return config

        return task_outputs(dep)

    def on_completed(self, callback: Callable[[], Any]) -> "Task":
        """Call ``callback()`` in the controller, once, when this task's job ends well (at once
        when it is done already)."""
        self.__xpm__.completion_callbacks.append(callback)
        add_callback = getattr(self.__xpm__.job, "add_callback", None)
        if add_callback is not None:  # submitted already: the job takes it
            add_callback(callback)
        return self

    def _job(self) -> Any:
        job = self.__xpm__.job
        if job is None:
            raise RuntimeError(f"{type(self).__qualname__} was not submitted")
        return job

    def wait(self) -> bool:
        """Block until the job ends; True when it ended well."""
        return self._job().wait()

    def stdout(self) -> Path:
        """The path of the job's standard output log."""
        return self._job().stdout

    def stderr(self) -> Path:
        """The path of the job's standard error log."""
        return self._job().stderr


class LightweightTask(Config):
    """A task run in the job process before the main task (``submit(init_tasks=[...])``)."""

    def execute(self) -> None:
        raise NotImplementedError(f"{type(self).__qualname__}.execute() is not defined")


def resolve_generated_paths(task: "Task", job_path: Path) -> None:
    """Give the ``PathGenerator`` paths of a task's graph (its own configurations, not those of
    other submitted tasks) their place in the task's job folder, or in a partial folder of the
    configuration that declares them (``<workspace>/partials/...``, core/partial.py)."""
    from .partial import partial_path
    from .paths import GeneratedPath

    # The job folder is <workspace>/jobs/<type id>/<identifier>.
    workspace = job_path.parents[2]

    def other_task(cfg: Config) -> bool:
        return cfg is not task and isinstance(cfg, Task) and cfg.__xpm__.job is not None

    job_name = task.__xpm__.xpmtype.name
    for cfg in iter_configs(task, stop=other_task):
        values = cfg.__dict__
        for name in cfg.__xpm__.xpmtype.arguments:
            value = values.get(name)
            if isinstance(value, GeneratedPath):
                if value.partial is None:
                    base = job_path
                else:
                    base = partial_path(workspace, cfg, value.partial)
                values[name] = base / value.relative_path(job_path, job_name, cfg)
                if name not in cfg.__xpm__.generated:
                    cfg.__xpm__.generated.append(name)


def task_partial_paths(task: "Task", job_path: Path) -> list[Path]:
    """The partial folders of a task (one per partial its class declares): the runner holds them
    while the task runs, so that tasks sharing one never run at the same time."""
    from .partial import partial_path

    workspace = job_path.parents[2]
    return [
        partial_path(workspace, task, spec) for spec in task.__xpm__.xpmtype.partials.values()
    ]


def task_dependencies(task: Config) -> list[Config]:
    """The tasks whose jobs must end before ``task`` runs: the tasks and producers of the outputs
    it uses (parameters and init tasks), and explicit task dependencies. Resource dependencies are
    returned by :func:`resource_dependencies`."""
    found: dict[int, Config] = {}

    def producer(cfg: Config) -> Optional[Config]:
        info = cfg.__xpm__
        if cfg is not task and (info.job is not None or isinstance(cfg, Task)):
            # A task that was never submitted is returned too, so that the scheduler refuses it
            # (it would never run) instead of reading it as a plain configuration.
            return cfg
        if info.task is not None:
            return info.task
        return None

    def stop(cfg: Config) -> bool:
        p = producer(cfg)
        if p is not None:
            found.setdefault(id(p), p)
            return True
        return False

    for _ in iter_configs(task, stop=stop):
        pass
    for dep in task.__xpm__.dependencies:
        if isinstance(dep, Config):
            p = producer(dep) or dep
            found.setdefault(id(p), p)
    return list(found.values())


def resource_dependencies(task: Config) -> list[Any]:
    """Explicit dependencies that are not configurations (token dependencies, for instance)."""
    return [d for d in task.__xpm__.dependencies if not isinstance(d, Config)]
