"""The 2.x configuration API beyond identifiers: partial folders and their locks, generic
parameters, field(overrides/ignore_generated), Annotated parameters, Identifier, forwardoption's
2.x spelling. (Identifiers against 2.7.0: test_identifier_compat_2x.py.)"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, Generic, Optional, TypeVar

import click
import pytest
from click.testing import CliRunner
from partial_tasks import Checkpointed

from conftest import controller_env, wait_until
from experimaestro import (
    Annotated,
    Choices,
    Config,
    Identifier,
    JobIdentifier,
    JobState,
    Meta,
    Param,
    PathGenerator,
    RunMode,
    Task,
    ValidationError,
    experiment,
    field,
    help,
    param_group,
    partial,
    pathgenerator,
)
from experimaestro.click import arguments, forwardoption

# --- partial identifiers ------------------------------------------------------------------------

g1, g2 = param_group("g1"), param_group("g2")


def test_param_groups_are_equal_by_name() -> None:
    assert param_group("a") == param_group("a")
    assert len({param_group("a"), param_group("a"), param_group("b")}) == 2


@pytest.mark.parametrize(
    "spec, groups, excluded",
    [
        (partial(exclude_groups=[g1]), {g1}, True),
        (partial(exclude_groups=[g1]), {g2}, False),
        (partial(exclude_groups=[g1]), set(), False),
        (partial(exclude_groups=[g1, g2], include_groups=[g1]), {g1}, False),
        (partial(exclude_groups=[g1, g2], include_groups=[g1]), {g2}, True),
        (partial(exclude_groups=[g1], include_groups=[g2]), {g1, g2}, False),
        (partial(exclude_all=True, include_groups=[g2]), {g1}, True),
        (partial(exclude_all=True, include_groups=[g2]), {g2}, False),
        (partial(exclude_all=True), set(), True),
        (partial(exclude_no_group=True), set(), True),
        (partial(exclude_no_group=True), {g1}, False),
    ],
)
def test_which_parameters_a_partial_leaves_out(spec: Any, groups: set, excluded: bool) -> None:
    assert spec.is_excluded(frozenset(groups)) is excluded


def test_a_partial_is_named_after_its_attribute() -> None:
    class Learn(Task):
        checkpoints = partial(exclude_groups=[g1])
        x: Param[int] = field(groups=[g1])

    assert Learn.checkpoints.name == "checkpoints"
    assert Learn.C(x=1).__xpm__.get_partial_identifier(Learn.checkpoints) == (
        Learn.C(x=2).__xpm__.get_partial_identifier(Learn.checkpoints)
    )
    assert isinstance(Learn.C(x=1).__xpm__.get_partial_identifier(Learn.checkpoints), JobIdentifier)


def test_bad_groups_are_refused_where_declared() -> None:
    with pytest.raises(TypeError, match=r"field\(groups=...\) takes param_group\(...\) values"):
        field(groups=["iter"])
    with pytest.raises(TypeError, match=r"partial\(exclude_groups=...\) takes param_group"):
        partial(exclude_groups=["iter"])
    with pytest.raises(TypeError, match=r"PathGenerator\(partial=...\) takes a partial"):
        PathGenerator("x", partial=g1)  # type: ignore[arg-type]


def test_an_unnamed_partial_path_is_refused_with_the_fix(tmp_path: Path) -> None:
    class Loose(Task):
        x: Param[int]
        ck: Meta[Path] = field(default_factory=PathGenerator("ck", partial=partial()))

    with pytest.raises(ValidationError, match="declare it as a class attribute"):
        Loose.C(x=1).submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path)


def _started(log: Path) -> list[str]:
    text = log.read_text() if log.exists() else ""
    return [line.split()[1] for line in text.splitlines() if line.startswith("start ")]


def test_partial_folder_shared_and_one_job_at_a_time(tmp_path: Path) -> None:
    """Two jobs differing only in an excluded parameter share the partial folder and read it in
    execute(); the scheduler does not start the second while the first runs (a partial token),
    while a job with another partial folder runs meanwhile."""
    log, gate = tmp_path / "log", tmp_path / "gate"
    ws = tmp_path / "ws"
    with experiment(ws, "xp"):
        a = Checkpointed.C(max_iter=1, lr=0.1, log=log, gate=gate).submit()
        b = Checkpointed.C(max_iter=2, lr=0.1, log=log, gate=gate).submit()
        c = Checkpointed.C(max_iter=3, lr=0.5, log=log).submit()
        assert a.checkpoint == b.checkpoint != c.checkpoint
        assert a.checkpoint.parent.parent.parent == ws / "partials" / "partial_tasks.checkpointed"
        jobs = {"1": a.__xpm__.job, "2": b.__xpm__.job}
        wait_until(lambda: c.__xpm__.job.state.finished, what="the job with its own folder")
        wait_until(lambda: set(_started(log)) & set(jobs), what="a job in the shared folder")
        # c was submitted after a and b: by now both were launched, unless one is held back.
        started = [n for n in _started(log) if n in jobs]
        assert len(started) == 1, started
        held = jobs["2" if started == ["1"] else "1"]
        assert held.state in (JobState.WAITING, JobState.READY)
        assert not held.stderr.exists()
        gate.touch()
    assert [job.state for job in jobs.values()] == [JobState.DONE, JobState.DONE]
    assert c.__xpm__.job.state is JobState.DONE
    assert sorted(p.name for p in a.checkpoint.iterdir()) == ["iter-1", "iter-2"]
    # The job processes locked the folder the controller generated the path in.
    assert (a.checkpoint.parent / ".lock").is_file()
    # Start and end of one job, then of the other: never interleaved.
    lines = [line.split()[:2] for line in log.read_text().splitlines()]
    shared = [event for event in lines if event[1] in jobs]
    assert shared[0][1] == shared[1][1] and shared[2][1] == shared[3][1]


def test_job_processes_lock_the_partial_folder(tmp_path: Path) -> None:
    """Started by hand (not by a scheduler), the second job process waits for the first's lock on
    the partial folder instead of entering it (where it would fail: the task refuses to share)."""
    log, gate = tmp_path / "log", tmp_path / "gate"
    with experiment(tmp_path / "ws", "xp", run_mode=RunMode.GENERATE_ONLY):
        a = Checkpointed.C(max_iter=1, lr=0.1, log=log, gate=gate).submit()
        b = Checkpointed.C(max_iter=2, lr=0.1, log=log, gate=gate).submit()
    runs = []
    for task in (a, b):
        params = task.__xpm__.job.path / "params.json"
        err = tmp_path / f"{task.max_iter}.err"
        with err.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "experimaestro", "run", str(params)],
                env=controller_env(), stdout=subprocess.DEVNULL, stderr=stderr,
            )
        runs.append((process, err))
        if task is a:
            wait_until(lambda: _started(log) == ["1"], what="the first job inside the folder")
    second, second_err = runs[1]
    wait_until(
        lambda: "waiting for the partial folder" in second_err.read_text()
        or second.poll() is not None,
        what="the second job waiting",
    )
    assert second.poll() is None, second_err.read_text()
    gate.touch()
    assert [process.wait(timeout=60) for process, _ in runs] == [0, 0]
    assert _started(log) == ["1", "2"]


# --- ignore_generated ---------------------------------------------------------------------------


class Weights(Config):
    n: Param[int]
    path: Meta[Path] = field(default_factory=PathGenerator("weights.pt"))


class Train(Task):
    weights: Param[Weights]


class Evaluate(Task):
    weights: Param[Weights]


class EvaluateAnyway(Task):
    weights: Param[Weights] = field(ignore_generated=True)


def test_a_config_with_paths_of_another_job_is_refused(tmp_path: Path) -> None:
    weights = Weights.C(n=1)
    train = Train.C(weights=weights).submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path)
    assert weights.path == train.__xpm__.job.path / "weights.pt"
    with pytest.raises(ValidationError) as info:
        Evaluate.C(weights=weights)
    message = str(info.value)
    assert "Evaluate.weights: the value holds paths generated in the folder" in message
    assert "(Weights.path)" in message and "field(ignore_generated=True)" in message
    # Also on assignment, and inside containers; declared ignore_generated, it is accepted.
    with pytest.raises(ValidationError, match="Weights.path"):
        Evaluate.C().weights = weights
    assert EvaluateAnyway.C(weights=weights).weights is weights
    # An unsubmitted configuration has no generated path yet: accepted.
    Evaluate.C(weights=Weights.C(n=2))


# --- generics -----------------------------------------------------------------------------------

T = TypeVar("T")


class Base(Config):
    pass


class Derived(Base):
    pass


class Holder(Config, Generic[T]):
    x: Param[T]


class Pair(Config, Generic[T]):
    x: Param[T]
    y: Param[T]


class Outer(Config, Generic[T]):
    h: Param[Holder[T]]
    p: Param[Pair[T]]


B = TypeVar("B", bound=Derived)
N = TypeVar("N", int, str)


class Bounded(Config, Generic[B]):
    x: Param[B]


class Constrained(Config, Generic[N]):
    x: Param[N]


def test_a_type_variable_binds_one_type() -> None:
    h = Holder.C(x=2)
    h.x = 3
    with pytest.raises(ValidationError, match="type variable T is bound to int and cannot also be str"):
        h.x = "a"
    assert h.x == 3  # nothing half written
    Holder.C(x="a")  # bindings belong to one configuration
    with pytest.raises(ValidationError, match=r"Pair.y: cannot take 'a'"):
        Pair.C(x=1, y="a")


def test_a_binding_widens_to_a_base_class() -> None:
    p = Pair.C(x=Derived.C())
    p.y = Base.C()
    p.x = Derived.C()
    with pytest.raises(ValidationError):
        p.x = 1


def test_bindings_reach_the_configurations_held() -> None:
    Outer.C(h=Holder.C(x=1), p=Pair.C(x=2, y=3))
    with pytest.raises(ValidationError, match="Outer.p"):
        Outer.C(h=Holder.C(x=1), p=Pair.C(x="a", y="b"))
    outer = Outer.C(h=Holder.C(x=1), p=Pair.C(x=2, y=3))
    with pytest.raises(ValidationError, match="Holder.x"):
        outer.h.x = "s"


def test_bound_and_constraints_are_checked() -> None:
    assert isinstance(Bounded.C(x=Derived.C()).x, Derived)
    with pytest.raises(ValidationError, match=r"expected B \(bound to Derived\), got Base.C\(\)"):
        Bounded.C(x=Base.C())
    Constrained.C(x=1)
    Constrained.C(x="a")
    with pytest.raises(ValidationError, match=r"expected N \(one of int, str\), got 1.5"):
        Constrained.C(x=1.5)


class PairwiseSample:
    pass


class BatchwiseSample:
    pass


class Sampler(Config, Generic[T]):
    pass


class BatchSampler(Sampler[BatchwiseSample]):
    pass


class PairSampler(Sampler[PairwiseSample]):
    pass


def test_parameterized_generic_parameter_checks_type_arguments() -> None:
    class Container(Config):
        sampler: Param[Sampler[PairwiseSample]]

    Container.C(sampler=PairSampler.C())
    Container.C(sampler=Sampler.C())  # gives no type argument: accepted
    with pytest.raises(ValidationError, match=r"expected Sampler\[PairwiseSample\]"):
        Container.C(sampler=BatchSampler.C())


# --- overrides ----------------------------------------------------------------------------------


class Unrelated(Config):
    pass



def test_an_override_must_narrow_the_type() -> None:
    class Parent(Config):
        holder: Param[Holder[Base]]
        n: Param[int] = field(default=1)

    class Narrower(Parent):
        holder: Param[Holder[Derived]] = field(overrides=True)

    Narrower.C(holder=Holder.C(x=Derived.C()))

    class Wrong(Parent):
        holder: Param[Holder[Unrelated]] = field(overrides=True)

    with pytest.raises(TypeError, match=r"Wrong.holder \(Holder\[Unrelated\]\) overrides "
                       r".*Parent.holder \(Holder\[Base\]\) with a type that is not a subtype"):
        Wrong.C()

    class OtherType(Parent):
        n: Param[str] = field(default="1", overrides=True)

    with pytest.raises(TypeError, match="OtherType.n"):
        OtherType.C()


# --- Annotated, legacy field(ignore_default=value) ----------------------------------------------


def test_annotated_declares_parameters_as_in_2x(tmp_path: Path) -> None:
    class A(Task):
        x: Annotated[int, help("the x")]
        out: Annotated[Path, pathgenerator("out.txt")]
        plain: Annotated[int, 0] = 0

    assert set(arguments(A).__dir__()) == {"x", "out"}
    assert arguments(A).x.help == "the x"
    task = A.C(x=1).submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path)
    assert task.out == task.__xpm__.job.path / "out.txt"


def test_field_ignore_default_value_is_the_deprecated_default() -> None:
    with pytest.warns(DeprecationWarning, match=r"write field\(default=0.5, ignore_default=True\)"):

        class A(Config):
            x: Param[float] = field(ignore_default=0.5)

    assert A.C().x == 0.5
    with pytest.raises(TypeError, match="ignore_default is True or False"):
        field(default=1, ignore_default=0.5)


def test_choices_checked_at_the_line_that_gives_the_value() -> None:
    class A(Config):
        a: Annotated[str, Choices(["a", "b"])]

    A.C(a="a").__xpm__.validate()
    with pytest.raises(ValidationError, match=r"A.a: 'c' is not a valid value: expected one of 'a', 'b'"):
        A.C(a="c")
    with pytest.raises(ValueError):  # as in 2.x
        A.C(a="c")
    a = A.C(a="b")
    with pytest.raises(ValidationError):
        a.a = "c"
    assert a.a == "b"


def test_validate_names_a_missing_parameter() -> None:
    class A(Config):
        a: Param[int]

    with pytest.raises(ValidationError, match=r"A.a \(int\) is required but was never set"):
        A.C().__xpm__.validate()
    assert not A.C().__xpm__.sealed


# --- Identifier -----------------------------------------------------------------------------------


def test_identifier_builds_lowercase_dotted_type_ids() -> None:
    ns = Identifier("MyLab")
    assert str(ns.Models.bm25) == "mylab.models.bm25"
    assert ns["models"]("bm25") == ns.models.bm25 == "mylab.models.bm25"
    assert copy.deepcopy(ns.a) == ns.a and pickle.loads(pickle.dumps(ns.a)) == ns.a

    class A(Config):
        __xpmid__ = ns.models.A
        x: Param[int]

    assert A.C(x=1).__xpm__.xpmtype.typeid == "mylab.models.a"
    assert A.__getxpmtype__().identifier == A.C(x=1).__xpmtype__.identifier == ns.models.a


# --- forwardoption.name(Cls, "option") ------------------------------------------------------------


class Model(Config):
    layers: Param[int] = 3
    """Number of layers"""


class Learn(Config):
    epochs: Param[int] = 10
    model: Param[Model]


def test_forwardoption_2x_spelling() -> None:
    @click.command()
    @forwardoption.epochs(Learn, "my-epochs")
    @forwardoption.model.layers(Learn)
    @forwardoption(arguments(Learn).epochs, "--also")
    def main(my_epochs: int, layers: int, also: int) -> None:
        click.echo(f"{my_epochs} {layers} {also}")

    runner = CliRunner()
    assert runner.invoke(main, []).output == "10 3 10\n"
    assert runner.invoke(main, ["--my-epochs", "4", "--layers", "5"]).output == "4 5 10\n"
    assert "Number of layers" in runner.invoke(main, ["--help"]).output
    with pytest.raises(TypeError, match="Learn.epochs \\(int\\) is not a configuration"):
        forwardoption.epochs.x(Learn)
    with pytest.raises(AttributeError, match="Learn has no parameter 'nope'"):
        forwardoption.nope(Learn)


def test_optional_generic_tree() -> None:
    class Tree(Config, Generic[T]):
        x: Param[T]
        left: Param[Optional["Tree[T]"]] = None

    tree = Tree.C(x=1)
    tree.left = Tree.C(x=2)
    with pytest.raises(ValidationError):
        tree.left.x = "s"
