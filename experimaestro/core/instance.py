"""``cfg.instance()``: a configuration turned into its plain object in the controller, as the job
process builds it (experimaestro 2.x's ``Config.instance()``).

* The configuration graph is validated and sealed first (a missing required parameter is an
  error; assigning a parameter of ``cfg`` afterwards raises :class:`SealedError`), as 2.7.0 does.
* Every configuration of the graph gets a fresh object of its own class, with the same values;
  a sub-configuration shared in the graph stays shared (one object), and each call builds new
  objects (unless the same ``objects`` dictionary is passed to several calls).
* ``__post_init__`` is called on each object once, after those of the objects it holds.
* The objects are not sealed (2.7.0's instances accept assignments); ``obj.__config__`` is the
  configuration it was built from (``keep=False`` leaves it out).
* A submitted task keeps its job (``obj.jobpath``), a task output its producing task, and paths
  made by ``PathGenerator`` are the job's real paths. A task that was not submitted cannot be
  turned into an object while it holds such a path: where it is would only be known at submit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config

#: Objects built by earlier calls: ``id(config) -> (config, object)`` (the configuration is kept
#: so that its id is not reused while the entry lives).
ObjectStore = dict


def instance(
    config: "Config", *, objects: Optional[dict[int, tuple[Any, Any]]] = None, keep: bool = True
) -> Any:
    """The plain object of ``config`` (see the module docstring)."""
    from .config import Config, ConfigInformation, _children, ensure_loaded, xpmtype
    from .paths import GeneratedPath
    from .serialization import _cycle_error

    ensure_loaded(config)
    config.__xpm__.seal()
    built: dict[int, tuple[Any, Any]] = {} if objects is None else objects

    # Post-order walk (iterative): each configuration after the ones it holds.
    order: list[Config] = []
    state: dict[int, int] = {}  # 1: on the path, 2: listed
    path: list[Config] = []
    stack: list[tuple[Config, bool]] = [(config, False)]
    while stack:
        cfg, expanded = stack.pop()
        key = id(cfg)
        if expanded:
            state[key] = 2
            order.append(cfg)
            path.pop()
            continue
        if key in state or key in built:
            continue
        state[key] = 1
        path.append(cfg)
        stack.append((cfg, True))
        ensure_loaded(cfg)  # in a job, an upstream task is read from its params.json when used
        for child in reversed(_children(cfg)):
            if state.get(id(child)) == 1:
                raise _cycle_error(path + [child])
            if id(child) not in state and id(child) not in built:
                stack.append((child, False))

    def convert(value: Any, owner: Config, name: str) -> Any:
        if isinstance(value, Config):
            return built[id(value)][1]
        if isinstance(value, GeneratedPath):
            cls = type(owner).__qualname__
            raise ValueError(
                f"{cls}.{name} is a path inside the job folder ({value.relative}), known once the "
                f"task is submitted: call instance() after submit()"
            )
        if isinstance(value, list):
            return [convert(v, owner, name) for v in value]
        if isinstance(value, tuple):
            return tuple(convert(v, owner, name) for v in value)
        if isinstance(value, (set, frozenset)):
            return type(value)(convert(v, owner, name) for v in value)
        if isinstance(value, dict):
            return {k: convert(v, owner, name) for k, v in value.items()}
        return value

    fresh: list[Any] = []
    for cfg in order:
        cls = type(cfg)
        info = cfg.__xpm__
        obj = object.__new__(cls)
        values = obj.__dict__
        new_info = ConfigInformation(obj)
        new_info.instance = True
        values["__xpm__"] = new_info
        source = cfg.__dict__
        for name in xpmtype(cls).arguments:
            if name in source:
                values[name] = convert(source[name], cfg, name)
        new_info._tags = dict(info._tags)
        new_info.meta = info.meta
        new_info.typevars = info.typevars
        new_info.generated = list(info.generated)
        new_info.task = info.task
        new_info.job = info.job
        if keep:
            values["__config__"] = cfg
        built[id(cfg)] = (cfg, obj)
        fresh.append(obj)
    for obj in fresh:
        post_init = getattr(type(obj), "__post_init__", None)
        if post_init is not None:
            post_init(obj)
    return built[id(config)][1]


__all__ = ["ObjectStore", "instance"]
