"""Public 2.x behaviour that experimaestro 2.7.0's own test suite found missing here (see
docs/migrating.md, "2.7.0's own tests on this version"): 2.x import paths (``from
experimaestro.launchers import Launcher``, ``from experimaestro.scheduler import JobState``,
``experimaestro.generators``, ``experimaestro.core.arguments``...), ``copyconfig``,
``obj.xpmconfig``, ``xp.workspace.launcher``, a task parameter named ``outputs``. Expected values
are what 2.7.0 gave when run by hand, written here as data."""

from __future__ import annotations

import pathlib
from pathlib import Path

import pytest
from xpm_runtime import EnvTask

import experimaestro
from experimaestro import Config, Meta, Param, PathGenerator, Task, copyconfig, experiment, field, tag
from experimaestro.launchers.direct import DirectLauncher

#: 2.7.0: ``copyconfig(a, x=3)`` where ``a = A.C(x=tag(2), sub=Sub.C(y=5))`` and ``a.sub`` is
#: tagged ``t=9``: the copy's tags (its own tag on ``x`` is not copied; the shared ``sub`` keeps its).
COPY_TAGS_270 = {"t": 9}


class Sub(Config):
    y: Param[int] = 1


class Holder(Config):
    x: Param[int]
    sub: Param[Sub]


class Writes(Task):
    x: Param[int]
    out: Meta[Path] = field(default_factory=PathGenerator("out.txt"))

    def execute(self) -> None:
        self.out.write_text(str(self.x))


def test_2x_import_paths_give_our_objects() -> None:
    from experimaestro.launchers import Launcher
    from experimaestro.scheduler import JobState, RunMode
    from experimaestro.scheduler.workspace import RunMode as WorkspaceRunMode

    assert Launcher is experimaestro.Launcher and isinstance(DirectLauncher(), Launcher)
    assert JobState is experimaestro.JobState and JobState.DONE.name == "DONE"
    assert RunMode is WorkspaceRunMode is experimaestro.RunMode
    assert experimaestro.Path is pathlib.Path  # 2.x re-exports it for old code
    from experimaestro.core.arguments import Meta, Param, field, pathgenerator
    from experimaestro.generators import PathGenerator as GeneratorsPathGenerator

    assert (Param, Meta, field) == (experimaestro.Param, experimaestro.Meta, experimaestro.field)
    assert pathgenerator is experimaestro.pathgenerator
    assert GeneratorsPathGenerator is experimaestro.PathGenerator
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        experimaestro.scheduler.Nothing  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        experimaestro.launchers.Nothing  # noqa: B018


def test_copyconfig_keeps_values_and_shares_sub_configurations() -> None:
    a = Holder.C(x=tag(2), sub=Sub.C(y=5))
    a.sub.tag("t", 9)
    copy = copyconfig(a, x=3)
    assert type(copy) is Holder and copy is not a
    assert (copy.x, a.x) == (3, 2)
    assert copy.sub is a.sub  # shared, not copied (as 2.7.0)
    assert copy.tags() == COPY_TAGS_270 and a.tags() == {"t": 9, "x": 2}
    same = copyconfig(a)
    assert same.__xpm__.identifier == a.__xpm__.identifier
    with pytest.raises(experimaestro.ValidationError, match="Holder has no parameter 'z'"):
        copyconfig(a, z=1)
    with pytest.raises(experimaestro.ValidationError):
        copyconfig(a, x="three")
    with pytest.raises(TypeError, match="copyconfig\\(\\) takes a configuration"):
        copyconfig(3)


def test_copyconfig_of_a_submitted_task_is_unsealed_with_its_own_paths(tmp_path: Path) -> None:
    with experiment(tmp_path / "ws", "copy"):
        task = Writes.C(x=1)
        task.submit()
        copy = copyconfig(task)
        copy.x = 4  # unsealed, as in 2.7.0 (the original is sealed)
        with pytest.raises(experimaestro.SealedError):
            task.x = 4
        copy.submit()
    assert task.jobpath != copy.jobpath
    assert copy.out == copy.jobpath / "out.txt" and copy.out.read_text() == "4"
    assert task.out == task.jobpath / "out.txt" and task.out.read_text() == "1"


def test_xpmconfig_and_XPMConfig() -> None:  # noqa: N802 - 2.x's name
    config = Holder.C(x=1, sub=Sub.C(y=20))
    obj = config.instance()
    assert obj.xpmconfig is config and obj.sub.xpmconfig is config.sub
    assert config.xpmconfig is config  # on a configuration: itself
    assert isinstance(config, Holder.XPMConfig) and Sub.XPMConfig is Sub
    bare = config.instance(keep=False)
    with pytest.raises(AttributeError, match="has no configuration tracked.*keep=False"):
        bare.xpmconfig  # noqa: B018
    with pytest.raises(AttributeError, match="has no configuration tracked"):
        bare.sub.xpmconfig  # noqa: B018


def test_workspace_launcher_is_the_jobs_launcher(tmp_path: Path) -> None:
    """2.x code calls ``xp.workspace.launcher.setenv(...)``: without ``launcher=``, it is the
    local launcher the jobs get, and the variable reaches them."""
    mine = DirectLauncher(1)
    with experiment(tmp_path / "ws", "given", launcher=mine) as xp:
        assert xp.workspace.launcher is mine
    with experiment(tmp_path / "ws", "default") as xp:
        launcher = xp.workspace.launcher
        assert isinstance(launcher, DirectLauncher)
        launcher.setenv("LAUNCHVAR", "fromworkspace")
        try:
            task = EnvTask.C(name="ws-launcher")
            task.submit()
            assert task.__xpm__.job.launcher is launcher
            xp.wait()
        finally:
            del launcher.environ["LAUNCHVAR"]  # the process's local launcher: leave it clean
    text = (task.jobpath / "envtask.out").read_text()
    assert "ENV None None fromworkspace" in text


class Output(Config):
    pass


class WithOutputs(Task):
    """2.7.0's own tests declare a parameter named ``outputs``: ``submit()`` must not call it."""

    main: Param[Output]
    outputs: Param[dict[str, Output]]


def test_a_parameter_named_outputs_does_not_break_submit(tmp_path: Path) -> None:
    task = WithOutputs.C(main=Output.C(), outputs={"a": Output.C().tag("hello", "world")})
    result = task.submit(run_mode=experimaestro.RunMode.DRY_RUN, workspace=tmp_path)
    assert result is task  # no task_outputs: submit returns the task, as in 2.7.0
    assert task.outputs["a"].tags() == {"hello": "world"}
    assert task.tags() == {"hello": "world"}



class Produced(Config):
    pass


class Producer(Task):
    x: Param[Produced]

    def task_outputs(self, dep):  # noqa: ANN001,ANN201 - 2.x's signature
        return dep(Produced.C())


class Initialise(experimaestro.LightweightTask):
    def execute(self) -> None:
        pass


class Plain(Task):
    x: Param[int] = 1


def test_tags_of_task_outputs_and_init_tasks(tmp_path: Path) -> None:
    """2.7.0 (its test_tags_init_tasks, by hand): a task's output has the task's tags, and an
    init task's tags are the task's; a configuration's own tags win."""
    dry = {"run_mode": experimaestro.RunMode.DRY_RUN, "workspace": tmp_path}
    producer = Producer.C(x=Produced.C().tag("hello", "world"))
    output = producer.submit(**dry)
    assert isinstance(output, Produced) and output.tags() == {"hello": "world"}
    task = Plain.C().submit(init_tasks=[Initialise.C().tag("hello", "world")], **dry)
    assert task.tags() == {"hello": "world"}
    own = Plain.C(x=2).tag("hello", "mine").tag("n", 3)
    own.submit(init_tasks=[Initialise.C().tag("hello", "world")], **dry)
    assert own.tags() == {"hello": "mine", "n": 3}
    assert Plain.C(x=3).submit(**dry).tags() == {}


class Needs(Config):
    value: Param[int]


class HoldsNeeds(Config):
    items: Param[list[Needs]]


def test_bad_and_missing_values_are_value_errors_as_in_2x() -> None:
    """2.7.0 raises ValueError for a value of the wrong type and for a missing parameter found by
    validation (its test_validation); ours is a ValidationError, a TypeError and a ValueError."""
    with pytest.raises(ValueError, match=r"Needs.value: expected int, got 'x'"):
        Needs.C(value="x")
    with pytest.raises(ValueError, match=r"Needs.value \(int\) is required but was never set"):
        HoldsNeeds.C(items=[Needs.C(value=1), Needs.C()]).__xpm__.validate()
    with pytest.raises(TypeError):
        Needs.C(value=[])
