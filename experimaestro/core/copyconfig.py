"""``copyconfig(cfg, **values)``: a new, unsealed configuration with the same values (2.x API).

Used to change a configuration that is sealed (it was submitted) or that is a task's output:

    better = copyconfig(model, hidden=512)     # model is left as it is

* The copy is of the same class; its parameters hold the same values (sub-configurations are
  shared, not copied), then ``values`` are set, checked as ``MyConfig.C(...)`` checks them.
* Paths generated in a job folder (``PathGenerator``) are not copied: the copy gets new ones,
  placed in the folder of the task it is submitted with.
* What is not a parameter value is not copied, as in 2.7.0: the copy is not sealed, not a task's
  output, has no job, no dependencies or init tasks, and no own tags (the tags of the
  sub-configurations it shares stay, with them).
"""

from __future__ import annotations

from typing import Any, TypeVar

from .config import Config, ensure_loaded, xpmtype
from .paths import GeneratedPath
from .types import ParamKind

C = TypeVar("C", bound=Config)


def copyconfig(config: C, **values: Any) -> C:
    """A new configuration of ``config``'s class with its parameter values, ``values`` set on it
    (see the module docstring)."""
    if not isinstance(config, Config):
        raise TypeError(
            f"copyconfig() takes a configuration (built with MyConfig.C(...)), "
            f"not {type(config).__qualname__}"
        )
    ensure_loaded(config)  # an upstream task read from its params.json in a job process
    cls = type(config)
    copy = cls.C(**values)  # checks the new values; fills defaults (new generated paths)
    info = config.__xpm__
    source, target = config.__dict__, copy.__dict__
    for name, arg in xpmtype(cls).arguments.items():
        if name in values or name not in source or arg.kind is ParamKind.CONSTANT:
            continue
        value = source[name]
        if isinstance(value, GeneratedPath) or name in info.generated:
            continue  # a path in the job folder of the original's task: the copy gets its own
        target[name] = value
    if info.typevars:
        copy.__xpm__.typevars = {**info.typevars, **(copy.__xpm__.typevars or {})}
    return copy


__all__ = ["copyconfig"]
