"""``config.instance()``: a configuration as the plain object the job process builds, in the
controller (experimaestro 2.x's API, about 54 uses in 2.x projects).

What 2.7.0 does, run by hand (docs/migrating.md), written here as data:
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pytest
from xpm_runtime import Describe, Learn, Model, Sub, Top, UsesUses, describe, submit_upstream_chain

from experimaestro import Config, Param, RunMode, SealedError, ValidationError, experiment

#: 2.7.0 on ``Top.C(a=s, b=s, lst=[s, Sub.C(x=4)], d={"k": 1})`` with ``s = Sub.C(x=tag(3))``.
EXPECTED_270 = {
    "type_is_class": True,  # type(i) is Top
    "a_is_b": True,  # a shared sub-configuration stays one object
    "a_is_lst0": True,
    "a_is_config": False,  # a fresh object, not the configuration
    "m": 3,  # Meta values are there too
    "d": {"k": 1},
    "config_kept": True,  # i.__config__ is the configuration
    "post_init_order": "Sub 3, Sub 4, then Top",  # the held objects first, each once
    "assign_after": "error",  # the configuration is sealed by instance()
    "second_call_fresh": True,
    "instance_mutable": True,  # i.a.x = 10 works on the object
}


def _graph() -> Top:
    s = Sub.C(x=3)
    return Top.C(a=s, b=s, lst=[s, Sub.C(x=4)], d={"k": 1})


def test_instance_as_2_7_0_builds_it() -> None:
    top = _graph()
    i = top.instance()
    got = {
        "type_is_class": type(i) is Top,
        "a_is_b": i.a is i.b,
        "a_is_lst0": i.a is i.lst[0],
        "a_is_config": i.a is top.a,
        "m": i.m,
        "d": i.d,
        "config_kept": i.__config__ is top,
    }
    assert got == {k: EXPECTED_270[k] for k in got}
    # __post_init__ ran once per object, those held first (Top saw its children initialised).
    assert i.a.calls == 1 and i.lst[1].calls == 1
    assert i.seen == (6, [6, 8])
    # The configuration is sealed, as 2.7.0 leaves it.
    with pytest.raises(SealedError):
        top.m = 4
    # Each call builds new objects.
    j = top.instance()
    assert j is not i and j.a is not i.a and j.a is j.b
    # The object is plain and mutable (checked values still).
    i.a.x = 10
    assert i.a.x == 10 and top.a.x == 3
    with pytest.raises(ValidationError):
        i.a.x = "ten"
    assert i.tags() == {} and top.tags() == {}
    assert i.__xpm__.tags() == {}


def test_instance_keep_false_and_shared_objects_between_calls() -> None:
    top = _graph()
    i = top.instance(keep=False)
    assert "__config__" not in i.__dict__
    objects: dict = {}
    first = top.instance(objects=objects)
    again = top.a.instance(objects=objects)
    assert again is first.a  # built once for both calls
    assert again.calls == 1


def test_instance_needs_required_values() -> None:
    class Req(Config):
        y: Param[int]

    with pytest.raises(ValidationError, match=r"Req\.y .* is required"):
        Req.C().instance()


def test_instance_of_task_before_and_after_submit(tmp_path: Path) -> None:
    # 2.7.0: an error before submit ("does not define a path"); after submit, the real path.
    with pytest.raises(ValueError, match=r"Learn\.out is a path inside the job folder .* after submit"):
        Learn.C(model=Model.C()).instance()
    learn = Learn.C(model=Model.C(n=5))
    out = learn.submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path)
    li = learn.instance()
    assert type(li) is Learn
    assert li.out == learn.__xpm__.job.path / "model.pt"
    assert li.jobpath == learn.__xpm__.job.path
    oi = out.instance()
    assert type(oi) is Model and oi.n == 6
    assert oi.jobpath == learn.__xpm__.job.path  # an output knows the job that makes it


def test_instance_is_what_the_job_process_builds(tmp_path: Path) -> None:
    """The same graph, as objects: built by the job process from params.json, and by instance()
    in the controller."""
    with experiment(tmp_path / "ws", "instance") as xp:
        task = Describe.C(top=_graph())
        task.submit()
    assert xp.counts()["done"] == 1
    in_job = json.loads(task.out.read_text())
    in_controller = json.loads(json.dumps(describe(task.top.instance())))
    assert in_controller == in_job
    assert in_job["a_is_b"] and in_job["a_is_lst0"] and in_job["calls"] == [1, 1]


def test_instance_of_an_upstream_task_in_a_job(tmp_path: Path) -> None:
    """In the job process, an upstream task is read from its params.json when first used:
    instance() reads it too."""
    with experiment(tmp_path / "ws", "upstream"):
        learn, uses, deeper = submit_upstream_chain(7, UsesUses)
    assert json.loads(uses.out.read_text()) == {"n": 7, "out": str(learn.out)}
    assert json.loads(deeper.out.read_text()) == {"n": 7, "out": str(learn.out)}


def test_instance_of_a_cycle_is_refused() -> None:
    class Node(Config):
        other: Param[Optional["Node"]] = None

    a, b = Node.C(), Node.C()
    a.other = b
    b.other = a
    with pytest.raises(ValidationError, match=r"has a cycle: .*Node\.other -> .*Node\.other -> .*Node; "):
        a.instance()
