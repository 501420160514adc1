"""Configurations: building, validation, sealing, declarations, tags, tasks and the accepted types."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any, Callable, Dict, List, Optional, Set, Tuple, Union

import pytest

from experimaestro import (
    Config,
    Constant,
    InstanceConfig,
    LightweightTask,
    Meta,
    Option,
    Param,
    RunMode,
    SealedError,
    Task,
    ValidationError,
    field,
    help,
    tag,
    tags,
    tagspath,
)
from experimaestro.core.config import xpmtype


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Model(Config):
    layers: Param[int] = 3
    """Number of layers"""

    width: Param[Annotated[int, help("Hidden width")]] = 16
    name: Meta[str] = "m"


class Learn(Task):
    model: Param[Model]
    epochs: Param[int]


class Out(Config):
    v: Param[int]


class Producer(Task):
    v: Param[int]

    def task_outputs(self, dep: Callable[[Config], Config]) -> Config:
        return dep(Out.C(v=self.v))


class Consumer(Config):
    out: Param[Out]


class WithConstant(Config):
    version: Constant[int] = 2


class Init(LightweightTask):
    n: Param[int]

    def execute(self) -> None:
        pass


class Inst(InstanceConfig):
    v: Param[int] = field(default=1)


class Holder(Config):
    items: Param[List[Config]] = field(default_factory=list)


class SubModel(Model):
    extra: Param[int] = 0


def dry(task: Task, **kwargs: Any) -> Any:
    return task.submit(run_mode=RunMode.DRY_RUN, **kwargs)


# --- Validation --------------------------------------------------------------------------------------


def test_wrong_type_at_construction_names_everything() -> None:
    with pytest.raises(ValidationError) as info:
        Model.C(layers="three")
    message = str(info.value)
    assert "Model.layers" in message
    assert "expected int" in message
    assert "'three'" in message and "str" in message


def test_wrong_type_at_assignment_names_everything() -> None:
    model = Model.C()
    with pytest.raises(ValidationError, match=r"Model\.width: expected int, got 2\.5 \(of type float\)"):
        model.width = 2.5
    assert model.width == 16


def test_validation_error_is_a_type_error() -> None:
    assert issubclass(ValidationError, TypeError)


def test_unknown_parameter_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as info:
        Model.C(layer=3)
    assert "'layer'" in str(info.value)
    assert "layers, name, width" in str(info.value)


def test_required_parameter_unset_at_submit() -> None:
    with pytest.raises(ValidationError, match=r"Learn\.epochs \(int\) is required"):
        dry(Learn.C(model=Model.C()))


class Needs(Config):
    x: Param[int]


class Wraps(Config):
    needs: Param[Needs]


def test_required_parameter_unset_in_a_sub_config_at_seal() -> None:
    with pytest.raises(ValidationError, match=r"Needs\.x \(int\) is required"):
        Wraps.C(needs=Needs.C()).__xpm__.seal()


def test_reading_an_unset_required_parameter() -> None:
    learn = Learn.C(model=Model.C())
    with pytest.raises(AttributeError, match=r"Learn\.epochs is not set") as info:
        learn.epochs
    assert not isinstance(info.value, KeyError)


def test_reading_an_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        Model.C().nope


def test_direct_call_tells_to_use_C() -> None:
    with pytest.raises(TypeError, match=r"write Model\.C\(\.\.\.\)"):
        Model(layers=3)


# --- Sealing -----------------------------------------------------------------------------------------


def test_submitted_task_is_sealed() -> None:
    model = Model.C()
    learn = Learn.C(model=model, epochs=1)
    dry(learn)
    with pytest.raises(SealedError, match=r"cannot set Learn\.epochs: the configuration is sealed"):
        learn.epochs = 2
    with pytest.raises(SealedError, match=r"Model\.layers"):
        model.layers = 4
    assert isinstance(SealedError("x"), AttributeError)


def test_cannot_submit_twice() -> None:
    learn = Learn.C(model=Model.C(), epochs=1)
    dry(learn)
    with pytest.raises(RuntimeError, match="already submitted"):
        dry(learn)


def test_non_parameter_attributes_stay_settable_after_sealing() -> None:
    learn = Learn.C(model=Model.C(), epochs=1)
    dry(learn)
    learn.note = "free"
    assert learn.note == "free"


# --- Declarations ------------------------------------------------------------------------------------


def test_option_is_a_deprecated_meta() -> None:
    # Annotations are strings here (``from __future__ import annotations``): they are evaluated,
    # and the warning given, when the class is first used.
    with pytest.warns(DeprecationWarning, match=r"Option\[\.\.\.\] is deprecated"):

        class WithOption(Config):
            x: Option[int] = 1

        kind = xpmtype(WithOption).arguments["x"].kind

    assert kind.value == "meta"


def test_constant_cannot_be_set() -> None:
    assert WithConstant.C().version == 2
    with pytest.raises(ValidationError, match=r"WithConstant\.version is a Constant"):
        WithConstant.C(version=3)
    cfg = WithConstant.C()
    with pytest.raises(ValidationError, match="Constant"):
        cfg.version = 3


def test_constant_needs_a_default() -> None:
    class NoDefault(Config):
        version: Constant[int]

    with pytest.raises(TypeError, match="needs a default"):
        NoDefault.C()


def test_help_from_the_string_after_the_declaration() -> None:
    assert xpmtype(Model).arguments["layers"].help == "Number of layers"


def test_help_from_annotated() -> None:
    assert xpmtype(Model).arguments["width"].help == "Hidden width"
    assert xpmtype(Model).arguments["name"].help is None


def test_defaults_are_fresh_per_config() -> None:
    a, b = Holder.C(), Holder.C()
    a.items.append(Model.C())
    assert b.items == []


# --- Tags --------------------------------------------------------------------------------------------


def test_tag_marks_a_parameter_value() -> None:
    model = Model.C(layers=tag(4))
    assert model.layers == 4
    assert model.tags() == {"layers": 4}


def test_tags_do_not_change_the_identifier() -> None:
    assert Model.C(layers=tag(4)).__xpm__.identifier == Model.C(layers=4).__xpm__.identifier


def test_config_tag_method_and_graph_tags() -> None:
    model = Model.C(layers=tag(2)).tag("arch", "cnn/v2")
    learn = Learn.C(model=model, epochs=tag(10))
    assert tags(learn) == {"arch": "cnn/v2", "epochs": 10, "layers": 2}
    assert list(tags(learn)) == ["arch", "epochs", "layers"]
    assert tagspath(learn) == "arch=cnn-v2_epochs=10_layers=2"


def test_tag_refuses_non_scalars() -> None:
    with pytest.raises(ValidationError, match="a tag value must be"):
        tag([1])


def test_cannot_tag_a_sealed_config() -> None:
    learn = Learn.C(model=Model.C(), epochs=1)
    dry(learn)
    with pytest.raises(SealedError):
        learn.tag("k", 1)


# --- Tasks -------------------------------------------------------------------------------------------


def test_submit_returns_the_task_outputs() -> None:
    producer = Producer.C(v=3)
    out = dry(producer)
    assert isinstance(out, Out) and out.v == 3
    assert out.__xpm__.task is producer
    assert out.__xpm__.sealed
    consumer = Consumer.C(out=out)
    assert consumer.__xpm__.identifier != Consumer.C(out=Out.C(v=3)).__xpm__.identifier


def test_submit_returns_the_task_itself_without_task_outputs() -> None:
    learn = Learn.C(model=Model.C(), epochs=1)
    assert dry(learn) is learn


def test_unsubmitted_task_cannot_be_a_parameter() -> None:
    class UsesTask(Config):
        t: Param[Learn]

    with pytest.raises(ValidationError, match="must be submitted"):
        UsesTask.C(t=Learn.C(model=Model.C(), epochs=1))


def test_dry_run_gives_the_job_path_and_writes_nothing(tmp_path: Path) -> None:
    learn = Learn.C(model=Model.C(), epochs=1)
    out = learn.submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path)
    typeid = f"{__name__}.learn".lower()
    assert typeid == xpmtype(Learn).typeid
    assert learn.jobpath == tmp_path / "jobs" / typeid / learn.__xpm__.identifier.hex()
    assert out is learn
    assert list(tmp_path.iterdir()) == []


def test_task_output_shares_the_producer_job_path(tmp_path: Path) -> None:
    producer = Producer.C(v=1)
    out = producer.submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path)
    assert out.jobpath == producer.jobpath
    assert list(tmp_path.iterdir()) == []


def test_plain_config_has_no_job_path() -> None:
    with pytest.raises(RuntimeError, match="Model has no job path"):
        Model.C().jobpath


def test_instance_configs_differ_by_identity() -> None:
    shared = Inst.C()
    same = Holder.C(items=[shared, shared]).__xpm__.identifier
    distinct = Holder.C(items=[Inst.C(), Inst.C()]).__xpm__.identifier
    assert same != distinct
    assert Inst.C().__xpm__.identifier == Inst.C().__xpm__.identifier


def test_init_tasks_change_the_identifier() -> None:
    plain = Learn.C(model=Model.C(), epochs=1)
    with_init = Learn.C(model=Model.C(), epochs=1)
    before = with_init.__xpm__.identifier
    dry(with_init, init_tasks=[Init.C(n=1)])
    assert with_init.__xpm__.init_tasks[0].n == 1
    assert with_init.__xpm__.identifier != before == plain.__xpm__.identifier


def test_init_tasks_must_be_lightweight_tasks() -> None:
    with pytest.raises(ValidationError, match="LightweightTask"):
        dry(Learn.C(model=Model.C(), epochs=1), init_tasks=[Model.C()])


# --- Types -------------------------------------------------------------------------------------------


class Types(Config):
    i: Param[int] = 0
    f: Param[float] = 0.0
    s: Param[str] = ""
    b: Param[bool] = False
    p: Param[Path] = Path(".")
    c: Param[Color] = Color.RED
    l_bare: Param[list] = field(default_factory=list)
    l_int: Param[List[int]] = field(default_factory=list)
    d_bare: Param[dict] = field(default_factory=dict)
    d_typed: Param[Dict[str, int]] = field(default_factory=dict)
    st: Param[Set[int]] = field(default_factory=set)
    t_bare: Param[tuple] = ()
    t_typed: Param[Tuple[int, str]] = (0, "")
    t_var: Param[Tuple[int, ...]] = ()
    o: Param[Optional[int]] = None
    u: Param[Union[int, str]] = 0
    a: Param[Any] = None
    m: Param[Optional[Model]] = None


ACCEPTED: List[Tuple[str, Any, Any]] = [
    ("i", 3, 3),
    ("i", True, 1),
    ("f", 2.5, 2.5),
    ("f", 2, 2.0),
    ("s", "x", "x"),
    ("b", True, True),
    ("p", "a/b", Path("a/b")),
    ("p", Path("/c"), Path("/c")),
    ("c", Color.BLUE, Color.BLUE),
    ("l_bare", [1, "a"], [1, "a"]),
    ("l_int", (1, 2), [1, 2]),
    ("d_bare", {1: "a"}, {1: "a"}),
    ("d_typed", {"a": 1}, {"a": 1}),
    ("st", {1, 2}, {1, 2}),
    ("t_bare", [1, "a"], (1, "a")),
    ("t_typed", (1, "a"), (1, "a")),
    ("t_var", [1, 2, 3], (1, 2, 3)),
    ("o", None, None),
    ("o", 4, 4),
    ("u", 1, 1),
    ("u", "1", "1"),
    ("a", object, object),
]


@pytest.mark.parametrize(
    "name, value, stored", ACCEPTED, ids=[f"{n}={v!r}" for n, v, _ in ACCEPTED]
)
def test_accepted_value(name: str, value: Any, stored: Any) -> None:
    cfg = Types.C(**{name: value})
    assert getattr(cfg, name) == stored
    assert type(getattr(cfg, name)) is type(stored)


REJECTED: List[Tuple[str, Any, str]] = [
    ("i", "3", "int"),
    ("i", 3.0, "int"),
    ("f", "2", "float"),
    ("f", True, "float"),
    ("s", 1, "str"),
    ("b", 1, "bool"),
    ("p", 3, "Path"),
    ("c", "RED", "Color"),
    ("l_bare", "abc", "List[Any]"),
    ("l_int", [1, "2"], "List[int]"),
    ("d_typed", {1: 1}, "Dict[str, int]"),
    ("d_typed", {"a": "b"}, "Dict[str, int]"),
    ("st", [1], "Set[int]"),
    ("t_typed", (1, 2), "Tuple[int, str]"),
    ("t_typed", (1,), "Tuple[int, str]"),
    ("o", "x", "Union[int, None]"),
    ("u", 1.5, "Union[int, str]"),
    ("m", Out.C(v=1), "Union[Model, None]"),
]


@pytest.mark.parametrize(
    "name, value, expected", REJECTED, ids=[f"{n}={v!r}" for n, v, _ in REJECTED]
)
def test_rejected_value(name: str, value: Any, expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        Types.C(**{name: value})
    assert f"Types.{name}: expected {expected}, got {value!r}" in str(info.value)


def test_config_subclass_accepted_for_a_declared_base() -> None:
    sub = SubModel.C(extra=1)
    learn = Learn.C(model=sub, epochs=1)
    assert learn.model is sub
    assert Types.C(m=sub).m is sub


def test_subclass_inherits_parameters() -> None:
    assert list(xpmtype(SubModel).arguments) == ["layers", "width", "name", "extra"]
