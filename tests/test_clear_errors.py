"""Bad input is refused at the user's line, with a message that names the class, the parameter (with
its path when nested), the cause and the fix (issue 6, "Clear errors")."""

from __future__ import annotations

import enum
import sys
import types
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from experimaestro import Config, Param, RunMode, Task, ValidationError, experiment
from experimaestro.core.serialization import dumps, loads

from conftest import run_controller


class Model(Config):
    layers: Param[int] = 2


class Learn(Task):
    model: Param[Model]

    def execute(self) -> None:
        pass


class Holder(Config):
    value: Param[Any]


class Many(Config):
    holders: Param[List[Holder]]


class Run(Task):
    data: Param[Any] = None
    many: Param[Many] = None

    def execute(self) -> None:
        pass


class Out(Config):
    n: Param[int]


class Produce(Task):
    n: Param[int]

    def task_outputs(self, dep: Callable[[Config], Config]) -> Config:
        return dep(Out.C(n=self.n))

    def execute(self) -> None:
        pass


class Consume(Task):
    out: Param[Out]

    def execute(self) -> None:
        pass


def job_folders(workdir: Path) -> list[Path]:
    return sorted(workdir.glob("jobs/*/*"))


# --- A class the job process cannot find again --------------------------------------------------


def local_task_class() -> type:
    class Local(Task):
        x: Param[int]

        def execute(self) -> None:
            pass

    return Local


def test_task_defined_in_a_function_is_refused_at_submit(tmp_path: Path) -> None:
    Local = local_task_class()
    with experiment(tmp_path / "ws", "xp"):
        with pytest.raises(ValidationError) as caught:
            Local.C(x=1).submit()
    message = str(caught.value)
    assert "local_task_class.<locals>.Local is defined inside the function local_task_class()" in (
        message
    )
    assert "the job process would not find it again" in message
    assert "define Local at module level" in message
    assert job_folders(tmp_path / "ws") == []  # nothing written


def test_config_defined_in_a_function_names_where_it_is_used(tmp_path: Path) -> None:
    class LocalModel(Model):
        pass

    with experiment(tmp_path / "ws", "xp", run_mode=RunMode.GENERATE_ONLY):
        with pytest.raises(ValidationError) as caught:
            Run.C(many=Many.C(holders=[Holder.C(value=1), Holder.C(value=LocalModel.C())])).submit()
    message = str(caught.value)
    assert message.startswith("Run.many.holders[1].value holds a ")
    assert "LocalModel is defined inside the function " in message
    assert "define LocalModel at module level" in message
    assert job_folders(tmp_path / "ws") == []


def test_enum_defined_in_a_function_is_refused(tmp_path: Path) -> None:
    class Color(enum.Enum):
        RED = 1

    with experiment(tmp_path / "ws", "xp", run_mode=RunMode.GENERATE_ONLY):
        with pytest.raises(ValidationError) as caught:
            Run.C(data={"c": [Color.RED]}).submit()
    message = str(caught.value)
    assert message.startswith("Run.data['c'][0] holds a ")
    assert "define Color at module level" in message


def test_class_of_a_module_made_at_run_time_is_refused() -> None:
    module = types.ModuleType("made_at_run_time")
    exec(
        "from experimaestro import Config, Param\nclass Dyn(Config):\n    x: Param[int] = 1\n",
        module.__dict__,
    )
    sys.modules["made_at_run_time"] = module
    try:
        with pytest.raises(ValidationError) as caught:
            dumps(Run.C(data=module.Dyn.C()))
    finally:
        del sys.modules["made_at_run_time"]
    message = str(caught.value)
    assert message.startswith("Run.data holds a Dyn, and Dyn is defined in the module ")
    assert "'made_at_run_time', which was created at run time and cannot be imported" in message
    assert "define Dyn in a module file" in message


class Redefined(Config):
    x: Param[int] = 1


FirstRedefined = Redefined


class Redefined(Config):  # type: ignore[no-redef]  # noqa: F811 - on purpose: a second class
    y: Param[int] = 1


def test_class_whose_name_now_names_another_class_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        dumps(Run.C(data=FirstRedefined.C()))
    message = str(caught.value)
    assert "Run.data holds a Redefined, and Redefined is no longer what " in message
    assert f"{__name__}.Redefined names (the class was defined again" in message
    assert "define Redefined once, at module level" in message


def test_class_defined_in_the_main_block_of_a_script_is_refused(tmp_path: Path) -> None:
    """The job process loads the script without running its main block: the class is not there."""
    script = """
        from experimaestro import Param, Task, experiment

        class Outside(Task):
            x: Param[int]

            def execute(self):
                pass

        if __name__ == "__main__":
            class Inside(Task):
                x: Param[int]

                def execute(self):
                    pass

            with experiment("ws", "xp"):
                Outside.C(x=1).submit()  # fine: defined at module level
                Inside.C(x=1).submit()
    """
    code, output = run_controller(script, tmp_path)
    assert code != 0
    assert (
        'ValidationError: Inside is defined inside the `if __name__ == "__main__":` block, which '
        "the job process does not run" in output
    )
    assert "Fix: define Inside at module level, above that block." in output
    assert not (tmp_path / "ws" / "jobs" / "__main__.inside").exists()


def test_dry_run_accepts_a_class_defined_in_a_function(tmp_path: Path) -> None:
    """A dry run starts no job process: identifiers are all it computes."""
    Local = local_task_class()
    task = Local.C(x=1).submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path)
    assert task.__xpm__.job.path.parent.name == f"{__name__}.local_task_class.<locals>.local"


# --- Values that cannot be encoded in an identifier ---------------------------------------------


def test_lambda_in_any_names_class_and_parameter() -> None:
    with pytest.raises(ValidationError) as caught:
        Run.C(data=lambda: 1).submit(run_mode=RunMode.DRY_RUN)
    message = str(caught.value)
    assert message.startswith("Run.data: cannot compute the identifier: <function ")
    assert "(of type function) cannot be encoded: an identifier encodes only None, bool" in message
    assert "Give such a value, or a configuration that describes this one" in message


def test_unencodable_value_nested_in_sub_configurations_gives_its_path() -> None:
    run = Run.C(many=Many.C(holders=[Holder.C(value=1), Holder.C(value={"k": [2, object()]})]))
    with pytest.raises(ValidationError) as caught:
        run.__xpm__.identifier
    message = str(caught.value)
    assert message.startswith("Holder.value (at Run.many.holders[1].value['k'][1]): ")
    assert "<object object at " in message


class Keyed(Config):
    d: Param[Dict[Any, int]]


def test_dict_keys_of_mixed_types_name_the_parameter() -> None:
    with pytest.raises(ValidationError) as caught:
        Keyed.C(d={1: 2, "a": 3}).__xpm__.identifier
    assert str(caught.value) == (
        "Keyed.d: cannot compute the identifier: dict keys must be sortable together, and the "
        "keys of {1: 2, 'a': 3} mix int and str: use keys of one type"
    )


def test_lone_surrogate_names_the_parameter_and_the_character() -> None:
    with pytest.raises(ValidationError) as caught:
        Run.C(data=["ok", "file\udcff.txt"]).__xpm__.identifier
    message = str(caught.value)
    assert message.startswith("Run.data (at Run.data[1]): cannot compute the identifier: ")
    assert "holds a lone surrogate ('\\udcff' at index 4), which UTF-8 cannot encode" in message
    assert "decode the bytes properly, or replace the surrogate" in message


# --- Dependencies that would never run -----------------------------------------------------------


def test_unsubmitted_task_given_to_add_dependencies(tmp_path: Path) -> None:
    with experiment(tmp_path / "ws", "xp"):
        learn = Learn.C(model=Model.C())
        learn.add_dependencies(Produce.C(n=1))
        with pytest.raises(ValidationError) as caught:
            learn.submit()
    assert str(caught.value) == (
        "Learn.add_dependencies() was given the task Produce, which was never submitted, so it "
        "would never run. Fix: call submit() on Produce before Learn.submit()"
    )
    assert job_folders(tmp_path / "ws") == []


def test_unsubmitted_task_inside_a_parameter_is_refused(tmp_path: Path) -> None:
    """A task directly in a parameter is refused when assigned; one inside a list used to be
    silently read as a plain configuration (it never ran)."""
    with experiment(tmp_path / "ws", "xp"):
        with pytest.raises(ValidationError) as caught:
            Run.C(data=[1, Produce.C(n=1)]).submit()
    message = str(caught.value)
    assert message.startswith("Run.data[1] holds the task Produce, which was never submitted")
    assert "call submit() on Produce before Run.submit()" in message
    assert "dry" not in message


def test_plain_configuration_given_to_add_dependencies(tmp_path: Path) -> None:
    with experiment(tmp_path / "ws", "xp"):
        learn = Learn.C(model=Model.C())
        learn.add_dependencies(Model.C())
        with pytest.raises(ValidationError) as caught:
            learn.submit()
    assert str(caught.value) == (
        "Learn.add_dependencies() was given Model, a configuration that no task produces: give "
        "tasks, task outputs or token.dependency(n)"
    )


def test_dependency_submitted_in_dry_run(tmp_path: Path) -> None:
    """It used to be accepted, and the dependent waited for ever."""
    with experiment(tmp_path / "ws", "xp"):
        out = Produce.C(n=1).submit(run_mode=RunMode.DRY_RUN)
        with pytest.raises(ValidationError) as caught:
            Consume.C(out=out).submit()
    assert str(caught.value) == (
        "Consume.out is an output of the task Produce, which was submitted in dry run "
        "(RunMode.DRY_RUN): a dry run runs nothing, so Consume would wait for ever. Fix: submit "
        "Produce without the dry run, or Consume in dry run too"
    )


def test_dependency_submitted_generate_only(tmp_path: Path) -> None:
    """It used to be accepted, and the dependent waited for ever."""
    with experiment(tmp_path / "ws", "xp"):
        produce = Produce.C(n=2)
        produce.submit(run_mode=RunMode.GENERATE_ONLY)
        run = Run.C(data={"p": produce})
        with pytest.raises(ValidationError) as caught:
            run.submit()
        message = str(caught.value)
        assert message.startswith(
            "Run.data['p'] holds the task Produce, which was submitted with RunMode.GENERATE_ONLY"
        )
        assert "submit Produce without run_mode (a done job is reused)" in message
        assert "dry" not in message
        # Both generated only: nothing waits, so it is accepted.
        Run.C(data={"p": produce}).submit(run_mode=RunMode.GENERATE_ONLY)


# --- True given to an int parameter -------------------------------------------------------------

#: Computed by experimaestro 2.7.0 (PyPI) for ``A.C(x=True)`` and ``A.C(x=1)`` (the same value),
#: with ``class A(Config): x: Param[int]`` in a module named ``pbids`` (type id ``pbids.a``).
ID_270_INT_TRUE_AND_1 = "692090d2dda16e95a7e6bd34b71337ebb6378c2eede4f5387358f1a37037119f"
#: Computed by 2.7.0 for ``B.C(x=True)`` and ``B.C(x=1)``, ``x: Param[Any]`` (2.7.0's own ``Any``),
#: type id ``pbids.b``: 2.7.0 keeps ``True`` there, with the identifier of ``1``.
ID_270_ANY_TRUE_AND_1 = "99038159aeb797c3a6479c5b6ff7c58573d627a3668dce4bfaa0c7a4daec362b"


class A(Config):
    __xpmid__ = "pbids.a"
    x: Param[int]


class B(Config):
    __xpmid__ = "pbids.b"
    x: Param[Any]


def test_true_for_an_int_parameter_is_the_int_1_as_in_270() -> None:
    """docs/identifier.md: accepted (as 2.7.0 does), stored as the int 1, the job of ``x=1``."""
    given_true, given_1 = A.C(x=True), A.C(x=1)
    assert type(given_true.x) is int and given_true.x == 1
    assert given_true.__xpm__.identifier.hex() == ID_270_INT_TRUE_AND_1
    assert given_1.__xpm__.identifier.hex() == ID_270_INT_TRUE_AND_1
    # The job process sees the int too.
    assert type(loads(dumps(given_true)).x) is int


def test_true_under_any_keeps_its_type_and_shares_the_identifier_of_1() -> None:
    given_true = B.C(x=True)
    assert given_true.x is True
    assert given_true.__xpm__.identifier.hex() == ID_270_ANY_TRUE_AND_1
    assert B.C(x=1).__xpm__.identifier.hex() == ID_270_ANY_TRUE_AND_1
