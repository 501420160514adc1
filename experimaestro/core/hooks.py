"""Submit hooks: class decorators that change a job when a task using the class is submitted
(experimaestro 2.x's ``SubmitHook``).

```python
class needs_java(SubmitHook):
    def __init__(self, version: int):
        self.version = version

    def spec(self):
        return self.version

    def process(self, job, launcher):
        job.environ["JAVA_HOME"] = f"/opt/java-{self.version}"

@needs_java(11)
class Indexer(Config): ...
```

At ``submit()``, the hooks of every configuration class in the task's graph (its own
configurations; not those of other submitted tasks it uses) are applied once each, before the job
is written: ``process(job, launcher)`` may change ``job.environ`` (the variables set in the job
process) or the job's launcher (``job.launcher = ...``). A hook declared on a class applies to its
subclasses too. Two hooks of the same class with the same ``spec()`` count as one.
"""

from __future__ import annotations

import abc
from typing import Any, Hashable, TypeVar

T = TypeVar("T", bound=type)


class SubmitHook(abc.ABC):
    """A hook applied to the job of each submitted task whose graph uses the decorated class."""

    def __call__(self, cls: T) -> T:
        """Decorate a configuration class."""
        hooks = cls.__dict__.get("_xpm_submit_hooks")
        if hooks is None:
            hooks = []
            type.__setattr__(cls, "_xpm_submit_hooks", hooks)
        if self not in hooks:
            hooks.append(self)
        return cls

    @abc.abstractmethod
    def process(self, job: Any, launcher: Any) -> None:
        """Change the job (``job.environ``, ``job.launcher``) before it is written and started."""

    @abc.abstractmethod
    def spec(self) -> Hashable:
        """What makes two hooks of this class the same (used for equality and hashing)."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.spec() == other.spec()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.spec()))


def submit_hooks(task: Any) -> list[SubmitHook]:
    """The hooks of the classes in a task's graph (not entering other submitted tasks), each once,
    in the order met."""
    from .config import Task, iter_configs

    def other_task(cfg: Any) -> bool:
        return cfg is not task and isinstance(cfg, Task) and cfg.__xpm__.job is not None

    found: list[SubmitHook] = []
    seen_classes: set[type] = set()
    for cfg in iter_configs(task, stop=other_task):
        cls = type(cfg)
        if cls in seen_classes:
            continue
        seen_classes.add(cls)
        for klass in cls.__mro__:
            for hook in klass.__dict__.get("_xpm_submit_hooks", ()):
                if hook not in found:
                    found.append(hook)
    return found


__all__ = ["SubmitHook", "submit_hooks"]
