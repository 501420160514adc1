"""Configurations and tasks written as experimaestro 2.x projects write them, for the tests of the
2.x runtime API (tests/test_compat_runtime.py, tests/test_instance.py). Job processes import them.

Some classes carry the type id 2.7.0 gave them in a module of the same name (``rtmod``,
``cachemod``), so that their identifiers, hence their job and cache folders, can be compared
with those 2.7.0 printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from experimaestro import (
    STDERR,
    STDOUT,
    Config,
    DataPath,
    LightweightTask,
    Meta,
    OptionalDataPath,
    Param,
    PathGenerator,
    ResumableTask,
    SubmitHook,
    Task,
    TaskCancelled,
    cache,
    field,
    tqdm,
)

# --- instance() ------------------------------------------------------------------------------


class Sub(Config):
    x: Param[int] = 1

    def __post_init__(self) -> None:
        self.doubled = self.x * 2
        self.calls = getattr(self, "calls", 0) + 1


class Top(Config):
    a: Param[Sub]
    b: Param[Sub]
    lst: Param[list[Sub]] = []
    d: Param[dict[str, int]] = {}
    m: Meta[int] = 3

    def __post_init__(self) -> None:
        # The objects it holds are built (and initialised) before it.
        self.seen = (self.a.doubled, [s.doubled for s in self.lst])


class Model(Config):
    n: Param[int] = 2


class Learn(Task):
    model: Param[Model]
    out: Meta[Path] = field(default_factory=PathGenerator("model.pt"))

    def task_outputs(self, dep):  # type: ignore[no-untyped-def]
        return dep(Model.C(n=self.model.n + 1))

    def execute(self) -> None:
        self.out.write_text("weights")


class Describe(Task):
    """Writes, from the job process, what its graph looks like as objects."""

    top: Param[Top]
    out: Meta[Path] = field(default_factory=PathGenerator("graph.json"))

    def execute(self) -> None:
        self.out.write_text(json.dumps(describe(self.top)))


class UsesLearn(Task):
    """Turns an upstream task (read in the job from its own params.json) into its object."""

    learn: Param[Learn]
    out: Meta[Path] = field(default_factory=PathGenerator("upstream.json"))

    def execute(self) -> None:
        learn = self.learn.instance()
        self.out.write_text(json.dumps({"n": learn.model.n, "out": str(learn.out)}))


class UsesUses(Task):
    """Two levels of upstream tasks, each read from its own params.json when used."""

    uses: Param[UsesLearn]
    out: Meta[Path] = field(default_factory=PathGenerator("upstream.json"))

    def execute(self) -> None:
        uses = self.uses.instance()
        self.out.write_text(json.dumps({"n": uses.learn.model.n, "out": str(uses.learn.out)}))


class SaveUpstream(Task):
    """Saves an upstream task (read from its params.json when used) with serialize()."""

    uses: Param[UsesLearn]

    def execute(self) -> None:
        from experimaestro import serialize

        serialize(self.uses, self.jobpath / "saved")


def submit_upstream_chain(n: int, last: type) -> tuple[Learn, UsesLearn, Task]:
    """Submit Learn(model n) <- UsesLearn <- ``last`` (a task with a ``uses`` parameter)."""
    learn = Learn.C(model=Model.C(n=n))
    learn.submit()
    uses = UsesLearn.C(learn=learn)
    uses.submit()
    top = last.C(uses=uses)
    top.submit()
    return learn, uses, top


def describe(top: Top) -> dict:
    """What instance() must give as the job process does: classes, values, sharing, __post_init__."""
    return {
        "classes": [type(top).__name__, type(top.a).__name__, type(top.lst[1]).__name__],
        "a_is_b": top.a is top.b,
        "a_is_lst0": top.a is top.lst[0],
        "seen": list(top.seen),
        "calls": [top.a.calls, top.lst[1].calls],
        "m": top.m,
        "d": top.d,
    }


# --- STDOUT / STDERR, environment, hooks ------------------------------------------------------


class Say(Task):
    __xpmid__ = "rtmod.Say"
    out: Meta[Path] = field(default_factory=PathGenerator(STDOUT))
    err: Meta[Path] = field(default_factory=PathGenerator(STDERR))
    word: Param[str]

    def execute(self) -> None:
        print(self.word.upper())


class EnvTask(Task):
    """Prints the variables a test sets for its job."""

    name: Param[str] = "env"

    def execute(self) -> None:
        print("ENV", os.environ.get("MYVAR"), os.environ.get("HOOKVAR"), os.environ.get("LAUNCHVAR"))


class hookvar(SubmitHook):  # noqa: N801 - 2.x hooks are lower-case decorators
    def __init__(self, value: str) -> None:
        self.value = value

    def spec(self) -> str:
        return self.value

    def process(self, job, launcher) -> None:  # type: ignore[no-untyped-def]
        job.environ["HOOKVAR"] = self.value


@hookvar("hooked")
class Hooked(Config):
    pass


class HookedTask(Task):
    __xpmid__ = "rtmod.HookedTask"
    h: Param[Hooked]

    def execute(self) -> None:
        print("ENV", os.environ.get("MYVAR"), os.environ.get("HOOKVAR"))


# --- cache ------------------------------------------------------------------------------------


class CacheConfig(Config):
    __xpmid__ = "cachemod.CacheConfig"
    n: Param[int] = 3

    @cache("data.txt")
    def get(self, path: Path, extra: int = 0) -> str:
        if path.exists():
            return "cached:" + path.read_text()
        path.write_text(str(self.n + extra))
        return "computed:" + str(self.n + extra)


class UseCache(Task):
    data: Param[CacheConfig]

    def execute(self) -> None:
        print(self.data.get())
        print(self.data.get())


# --- serialize / deserialize ------------------------------------------------------------------


class Weights(Config):
    path: DataPath
    vocab: OptionalDataPath = None
    other: Meta[Optional[Path]] = None
    size: Param[int] = 4

    def __post_init__(self) -> None:
        self.loaded: list[str] = []


class Ranker(Config):
    weights: Param[Weights]
    name: Param[str] = "ranker"


class LoadWeights(LightweightTask):
    weights: Param[Weights]

    def execute(self) -> None:
        self.weights.loaded.append(self.weights.path.read_text())


# --- time and cancellation --------------------------------------------------------------------


class Cancellable(ResumableTask):
    """Waits to be stopped; records what it saw of the stop request in its job folder."""

    swallow: Param[bool] = False

    def execute(self) -> None:
        (self.jobpath / "remaining").write_text(repr(self.remaining_time()))
        # Written whole, then renamed: the test reads the pid as soon as the file exists.
        (self.jobpath / "started.tmp").write_text(str(os.getpid()))
        os.replace(self.jobpath / "started.tmp", self.jobpath / "started")
        try:
            if self.swallow:
                try:
                    _wait_for_signal()
                except Exception:  # noqa: BLE001 - the point: a broad except must not swallow it
                    (self.jobpath / "swallowed").write_text("yes")
            else:
                _wait_for_signal()
        except TaskCancelled as exc:
            (self.jobpath / "cleanup").write_text(str(exc))
            raise


def _wait_for_signal() -> None:
    """Simulated long work, until stopped (SIGTERM raises in it); never more than 2 minutes."""
    from polling import work

    work(120)


class Progressing(Task):
    steps: Param[int] = 5

    def execute(self) -> None:
        total = 0
        for i in tqdm(range(self.steps), desc="steps"):
            total += i
        print("total", total)

