"""Every rule of the identifier encoding (``docs/identifier.md``), checked against bytes built by hand.

The expected digests are computed here by a tiny reference encoder written from the rules alone
(``hashlib`` + ``struct``), never by calling the implementation. The end of the file pins full
identifiers of a fixed module, so that no identifier changes between releases; every one of these pins
is also rebuilt by the reference encoder (none is only a record of the implementation's output).
"""

from __future__ import annotations

import enum
import hashlib
import math
import struct
import sys
import types
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import pytest

from experimaestro import (
    Config,
    Constant,
    InstanceConfig,
    LightweightTask,
    Meta,
    Param,
    RunMode,
    Task,
    field,
    setmeta,
)
from experimaestro.core.identifier import IdentifierError, config_digest

# --- The reference encoder (written from the rules, independent of experimaestro) ---------------


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def q(n: int) -> bytes:
    """``!q``: signed 64-bit big-endian."""
    return struct.pack("!q", n)


def d(x: float) -> bytes:
    """``!d``: IEEE double, big-endian."""
    return struct.pack("!d", x)


NONE = b"\x06"


def INT(n: int) -> bytes:
    return b"\x01" + q(n)


def FLOAT(x: float) -> bytes:
    return b"\x02" + d(x)


def STR(s: str) -> bytes:
    return b"\x03" + s.encode("utf-8")


def LIST(*items: bytes) -> bytes:
    return b"\x07" + d(len(items)) + b"".join(items)


def SET(*items: bytes) -> bytes:
    return b"\x0e" + d(len(items)) + b"".join(sorted(items, key=sha))


def DICT(*pairs: tuple[bytes, bytes], order: Sequence[int]) -> bytes:
    """``09`` + key, value for each pair taken in ``order`` (the sorted order of the Python keys)."""
    return b"\x09" + b"".join(pairs[i][0] + pairs[i][1] for i in order)


def ENUM(member: enum.Enum) -> bytes:
    cls = type(member)
    return b"\x0a" + f"{cls.__module__}.{cls.__qualname__}:{member.name}".encode("utf-8")


def REF(digest: bytes, position: int = 0) -> bytes:
    """A config used as a value; an InstanceConfig's later distinct twins carry ``0d`` + position."""
    return b"\x00" + digest + (b"\x0d" + q(position) if position else b"")


def CYCLE(levels: int) -> bytes:
    return b"\x00\x0b" + q(levels)


def TUPLE(*items: bytes) -> bytes:
    """Identifier version 2."""
    return b"\x0f" + q(len(items)) + b"".join(items)


def BIGINT(n: int) -> bytes:
    """Identifier version 2: two's complement, big-endian, on (bit_length + 8) // 8 bytes."""
    size = (n.bit_length() + 8) // 8
    return b"\x10" + q(size) + n.to_bytes(size, "big", signed=True)


def tid(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}".lower()


def DIGEST(
    typeid: str,
    params: Dict[str, bytes],
    *,
    task: Optional[bytes] = None,
    init: Iterable[bytes] = (),
) -> bytes:
    """A config's digest: 00 [08 00 task] typeid (03 name 05 value)* sorted by name [0c (00 init)*]."""
    out = b"\x00"
    if task is not None:
        out += b"\x08" + REF(task)
    out += typeid.encode("utf-8")
    for name in sorted(params):
        out += STR(name) + b"\x05" + params[name]
    init = list(init)
    if init:
        out += b"\x0c" + b"".join(REF(i) for i in init)
    return sha(out)


def digest_of(cls: type, **params: bytes) -> bytes:
    return DIGEST(tid(cls), params)


def ours(cfg: Config) -> bytes:
    return cfg.__xpm__.identifier.all


# --- Declarations ---------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class IntC(Config):
    x: Param[int]


class FloatC(Config):
    x: Param[float]


class StrC(Config):
    x: Param[str]


class BoolC(Config):
    x: Param[bool]


class AnyC(Config):
    v: Param[Any]


class ListC(Config):
    xs: Param[List[Any]]


class SetC(Config):
    s: Param[set]


class DictC(Config):
    d: Param[dict]


class TupleC(Config):
    t: Param[tuple]


class EnumC(Config):
    c: Param[Color]


class Holder(Config):
    a: Param[Config]
    b: Param[Optional[Config]] = None


class MetaHolder(Config):
    x: Param[int]
    m: Meta[Optional[Config]] = None


class Excluded(Config):
    x: Param[int]
    m: Meta[int] = 0
    p: Param[Path] = Path("/a")
    ig: Param[int] = field(default=0, ignored=True)


class Bare(Config):
    x: Param[int] = 3


class FieldDefault(Config):
    x: Param[int] = field(default=3)


class IgnoreDefault(Config):
    x: Param[int] = field(default=3, ignore_default=True)


class BareFloat(Config):
    x: Param[float] = 1.0


class FactoryDefault(Config):
    xs: Param[List[int]] = field(default_factory=lambda: [1], ignore_default=True)


class OptNone(Config):
    x: Param[Optional[int]] = None


class OptRequired(Config):
    x: Param[Optional[int]]


class OptBare3(Config):
    x: Param[Optional[int]] = 3


class OptField3(Config):
    x: Param[Optional[int]] = field(default=3)


class WithConstant(Config):
    x: Param[int]
    version: Constant[str] = "v1"


class Explicit(Config):
    __xpmid__ = "My.Custom.Id"
    x: Param[int]


class ExplicitSub(Explicit):
    pass


class Base(Config):
    a: Param[int]


class Sub(Base):
    b: Param[int] = field(default=2)


class Order(Config):
    beta: Param[int]
    Zeta: Param[int]
    alpha: Param[int]


class Node(Config):
    x: Param[int]
    child: Param[Optional["Node"]] = None


class Out(Config):
    v: Param[int]


class Producer(Task):
    v: Param[int]

    def task_outputs(self, dep: Callable[[Config], Config]) -> Config:
        return dep(Out.C(v=self.v))


class Learn(Task):
    e: Param[int]


class Init(LightweightTask):
    n: Param[int]

    def execute(self) -> None:
        pass


class Inst(InstanceConfig):
    v: Param[int] = field(default=100)


class InstHolder(Config):
    a: Param[Inst]
    b: Param[Config]


class InstLearn(Task):
    i: Param[Inst]


class InstInit(LightweightTask):
    i: Param[Inst]

    def execute(self) -> None:
        pass


def dry(task: Task, **kwargs: Any) -> Any:
    return task.submit(run_mode=RunMode.DRY_RUN, **kwargs)


# --- Scalars and containers -------------------------------------------------------------------------

Check = Tuple[Callable[[], Config], Callable[[], bytes]]

VALUE_CHECKS: Dict[str, Check] = {
    # int and bool: 01 + !q
    "int 0": (lambda: IntC.C(x=0), lambda: digest_of(IntC, x=INT(0))),
    "int 1": (lambda: IntC.C(x=1), lambda: digest_of(IntC, x=INT(1))),
    "int -1": (lambda: IntC.C(x=-1), lambda: digest_of(IntC, x=INT(-1))),
    "int max i64": (lambda: IntC.C(x=2**63 - 1), lambda: digest_of(IntC, x=INT(2**63 - 1))),
    "int min i64": (lambda: IntC.C(x=-(2**63)), lambda: digest_of(IntC, x=INT(-(2**63)))),
    "bool True is int 1": (lambda: BoolC.C(x=True), lambda: digest_of(BoolC, x=INT(1))),
    "bool False is int 0": (lambda: BoolC.C(x=False), lambda: digest_of(BoolC, x=INT(0))),
    "bool given to an int": (lambda: IntC.C(x=True), lambda: digest_of(IntC, x=INT(1))),
    # float: 02 + !d
    "float 0.1": (lambda: FloatC.C(x=0.1), lambda: digest_of(FloatC, x=FLOAT(0.1))),
    "float -0.0": (lambda: FloatC.C(x=-0.0), lambda: digest_of(FloatC, x=FLOAT(-0.0))),
    "float inf": (lambda: FloatC.C(x=math.inf), lambda: digest_of(FloatC, x=FLOAT(math.inf))),
    "float nan": (lambda: FloatC.C(x=math.nan), lambda: digest_of(FloatC, x=FLOAT(math.nan))),
    "float 1e-300": (lambda: FloatC.C(x=1e-300), lambda: digest_of(FloatC, x=FLOAT(1e-300))),
    "int given to a float": (lambda: FloatC.C(x=2), lambda: digest_of(FloatC, x=FLOAT(2.0))),
    # str: 03 + UTF-8
    "str empty": (lambda: StrC.C(x=""), lambda: digest_of(StrC, x=STR(""))),
    "str unicode": (lambda: StrC.C(x="é世🙂\n"), lambda: digest_of(StrC, x=STR("é世🙂\n"))),
    # None: 06 (Any, so that no Optional rule applies)
    "None in Any": (lambda: AnyC.C(v=None), lambda: digest_of(AnyC, v=NONE)),
    # list: 07 + count as !d + items
    "list empty": (lambda: ListC.C(xs=[]), lambda: digest_of(ListC, xs=LIST())),
    "list ints": (
        lambda: ListC.C(xs=[3, 1, 2]),
        lambda: digest_of(ListC, xs=LIST(INT(3), INT(1), INT(2))),
    ),
    "list mixed": (
        lambda: ListC.C(xs=[1, "a", 2.5, None, True]),
        lambda: digest_of(ListC, xs=LIST(INT(1), STR("a"), FLOAT(2.5), NONE, INT(1))),
    ),
    "list nested": (
        lambda: ListC.C(xs=[[1], [], [[2]]]),
        lambda: digest_of(ListC, xs=LIST(LIST(INT(1)), LIST(), LIST(LIST(INT(2))))),
    ),
    # set: 0e + count as !d + items sorted by the SHA-256 of their encoding
    "set empty": (lambda: SetC.C(s=set()), lambda: digest_of(SetC, s=SET())),
    "set ints": (
        lambda: SetC.C(s={3, 1, 2}),
        lambda: digest_of(SetC, s=SET(INT(1), INT(2), INT(3))),
    ),
    "set strs": (
        lambda: SetC.C(s={"b", "a", "c", "d"}),
        lambda: digest_of(SetC, s=SET(STR("a"), STR("b"), STR("c"), STR("d"))),
    ),
    "frozenset in Any": (
        lambda: AnyC.C(v=frozenset({1.5, "x"})),
        lambda: digest_of(AnyC, v=SET(FLOAT(1.5), STR("x"))),
    ),
    # dict: 09 + (key, value) by sorted keys, no count
    "dict empty": (lambda: DictC.C(d={}), lambda: digest_of(DictC, d=b"\x09")),
    "dict str keys sorted": (
        lambda: DictC.C(d={"b": 2, "a": 1}),
        lambda: digest_of(DictC, d=DICT((STR("b"), INT(2)), (STR("a"), INT(1)), order=[1, 0])),
    ),
    "dict int keys sorted numerically": (
        lambda: DictC.C(d={10: "x", 9: "y"}),
        lambda: digest_of(DictC, d=DICT((INT(10), STR("x")), (INT(9), STR("y")), order=[1, 0])),
    ),
    "dict nested values": (
        lambda: DictC.C(d={"k": {"z": [1]}}),
        lambda: digest_of(
            DictC, d=DICT((STR("k"), DICT((STR("z"), LIST(INT(1))), order=[0])), order=[0])
        ),
    ),
    # Enum: 0a + "<module>.<QualName>:<MEMBER>", not lowercased
    "enum": (lambda: EnumC.C(c=Color.BLUE), lambda: digest_of(EnumC, c=ENUM(Color.BLUE))),
    "enum in a list": (
        lambda: ListC.C(xs=[Color.RED, Color.BLUE]),
        lambda: digest_of(ListC, xs=LIST(ENUM(Color.RED), ENUM(Color.BLUE))),
    ),
    # Parameters are encoded sorted by name (code point order: upper case first)
    "parameters sorted by name": (
        lambda: Order.C(alpha=1, beta=2, Zeta=3),
        lambda: DIGEST(tid(Order), {"Zeta": INT(3), "alpha": INT(1), "beta": INT(2)}),
    ),
    # Which parameters count
    "meta, Path and ignored are left out": (
        lambda: Excluded.C(x=1, m=5, p=Path("/elsewhere"), ig=7),
        lambda: digest_of(Excluded, x=INT(1)),
    ),
    "bare default at default is left out": (lambda: Bare.C(x=3), lambda: digest_of(Bare)),
    "bare default unset is left out": (lambda: Bare.C(), lambda: digest_of(Bare)),
    "bare default, other value counts": (lambda: Bare.C(x=4), lambda: digest_of(Bare, x=INT(4))),
    "bare float default given an equal int": (lambda: BareFloat.C(x=1), lambda: digest_of(BareFloat)),
    "field(default) at default counts": (
        lambda: FieldDefault.C(x=3),
        lambda: digest_of(FieldDefault, x=INT(3)),
    ),
    "field(default) unset counts": (
        lambda: FieldDefault.C(),
        lambda: digest_of(FieldDefault, x=INT(3)),
    ),
    "ignore_default at default is left out": (
        lambda: IgnoreDefault.C(x=3),
        lambda: digest_of(IgnoreDefault),
    ),
    "ignore_default, other value counts": (
        lambda: IgnoreDefault.C(x=5),
        lambda: digest_of(IgnoreDefault, x=INT(5)),
    ),
    "default_factory with ignore_default, at default": (
        lambda: FactoryDefault.C(),
        lambda: digest_of(FactoryDefault),
    ),
    "default_factory with ignore_default, other value": (
        lambda: FactoryDefault.C(xs=[2]),
        lambda: digest_of(FactoryDefault, xs=LIST(INT(2))),
    ),
    "Optional default None, unset": (lambda: OptNone.C(), lambda: digest_of(OptNone)),
    "Optional default None, given None": (lambda: OptNone.C(x=None), lambda: digest_of(OptNone)),
    "Optional default None, given 1": (lambda: OptNone.C(x=1), lambda: digest_of(OptNone, x=INT(1))),
    "Optional without default, given None": (
        lambda: OptRequired.C(x=None),
        lambda: digest_of(OptRequired),
    ),
    "Optional bare default 3, given None": (
        lambda: OptBare3.C(x=None),
        lambda: digest_of(OptBare3, x=NONE),
    ),
    "Optional field(default=3), given None": (
        lambda: OptField3.C(x=None),
        lambda: digest_of(OptField3, x=NONE),
    ),
    "Constant is encoded": (
        lambda: WithConstant.C(x=1),
        lambda: digest_of(WithConstant, x=INT(1), version=STR("v1")),
    ),
    # Type id
    "__xpmid__ lowercased": (lambda: Explicit.C(x=1), lambda: DIGEST("my.custom.id", {"x": INT(1)})),
    "__xpmid__ of a base class is not inherited": (
        lambda: ExplicitSub.C(x=1),
        lambda: DIGEST(tid(ExplicitSub), {"x": INT(1)}),
    ),
    "subclass adds parameters": (
        lambda: Sub.C(a=1),
        lambda: DIGEST(tid(Sub), {"a": INT(1), "b": INT(2)}),
    ),
    "base class alone": (lambda: Base.C(a=1), lambda: DIGEST(tid(Base), {"a": INT(1)})),
    # Nested configs: 00 + digest
    "sub-config": (
        lambda: Holder.C(a=IntC.C(x=1)),
        lambda: digest_of(Holder, a=REF(digest_of(IntC, x=INT(1)))),
    ),
    "three levels": (
        lambda: Holder.C(a=Holder.C(a=IntC.C(x=1))),
        lambda: digest_of(Holder, a=REF(digest_of(Holder, a=REF(digest_of(IntC, x=INT(1)))))),
    ),
    "configs in a list": (
        lambda: ListC.C(xs=[IntC.C(x=1), StrC.C(x="s")]),
        lambda: digest_of(
            ListC, xs=LIST(REF(digest_of(IntC, x=INT(1))), REF(digest_of(StrC, x=STR("s"))))
        ),
    ),
    "configs as dict values": (
        lambda: DictC.C(d={"b": IntC.C(x=2), "a": IntC.C(x=1)}),
        lambda: digest_of(
            DictC,
            d=DICT(
                (STR("b"), REF(digest_of(IntC, x=INT(2)))),
                (STR("a"), REF(digest_of(IntC, x=INT(1)))),
                order=[1, 0],
            ),
        ),
    ),
    "configs in a set": (
        lambda: SetC.C(s={IntC.C(x=1), IntC.C(x=2)}),
        lambda: digest_of(
            SetC, s=SET(REF(digest_of(IntC, x=INT(1))), REF(digest_of(IntC, x=INT(2))))
        ),
    ),
    # Meta configs
    "setmeta config parameter is left out": (
        lambda: Holder.C(a=IntC.C(x=1), b=setmeta(IntC.C(x=2))),
        lambda: digest_of(Holder, a=REF(digest_of(IntC, x=INT(1)))),
    ),
    "setmeta configs are filtered from lists": (
        lambda: ListC.C(xs=[setmeta(IntC.C(x=1)), IntC.C(x=2)]),
        lambda: digest_of(ListC, xs=LIST(REF(digest_of(IntC, x=INT(2))))),
    ),
    "setmeta configs are filtered from dicts": (
        lambda: DictC.C(d={"a": setmeta(IntC.C(x=1)), "b": 2}),
        lambda: digest_of(DictC, d=DICT((STR("b"), INT(2)), order=[0])),
    ),
    "Meta config parameter is left out": (
        lambda: MetaHolder.C(x=1, m=IntC.C(x=2)),
        lambda: digest_of(MetaHolder, x=INT(1)),
    ),
    "Meta parameter holding setmeta(False) config counts": (
        lambda: MetaHolder.C(x=1, m=setmeta(IntC.C(x=2), False)),
        lambda: digest_of(MetaHolder, x=INT(1), m=REF(digest_of(IntC, x=INT(2)))),
    ),
    # InstanceConfig: later distinct twins get 0d + position
    "instances: a b a": (
        lambda: _instances_aba(),
        lambda: digest_of(
            ListC, xs=LIST(REF(_inst()), REF(_inst(), 1), REF(_inst()), REF(_inst(), 2))
        ),
    ),
    "instances with different values do not share positions": (
        lambda: ListC.C(xs=[Inst.C(v=1), Inst.C(v=2), Inst.C(v=1)]),
        lambda: digest_of(
            ListC, xs=LIST(REF(_inst(1)), REF(_inst(2)), REF(_inst(1), 1))
        ),
    ),
    "instance standalone": (lambda: Inst.C(), lambda: _inst()),
    # Cycles: 00 0b + levels up (self = 1)
    "cycle to self": (lambda: _self_cycle(), lambda: digest_of(Node, x=INT(1), child=CYCLE(1))),
    "cycle two levels": (
        lambda: _two_cycle(),
        lambda: digest_of(Node, x=INT(1), child=REF(digest_of(Node, x=INT(2), child=CYCLE(2)))),
    ),
    # Identifier version 2
    "v2 tuple": (
        lambda: TupleC.C(t=(1, "a")),
        lambda: digest_of(TupleC, t=TUPLE(INT(1), STR("a"))),
    ),
    "v2 empty tuple": (lambda: TupleC.C(t=()), lambda: digest_of(TupleC, t=TUPLE())),
    "v2 nested tuple in a list": (
        lambda: ListC.C(xs=[(1, (2.5,)), []]),
        lambda: digest_of(ListC, xs=LIST(TUPLE(INT(1), TUPLE(FLOAT(2.5))), LIST())),
    ),
    "v2 2**63": (lambda: IntC.C(x=2**63), lambda: digest_of(IntC, x=BIGINT(2**63))),
    "v2 -2**63 - 1": (lambda: IntC.C(x=-(2**63) - 1), lambda: digest_of(IntC, x=BIGINT(-(2**63) - 1))),
    "v2 10**30": (lambda: IntC.C(x=10**30), lambda: digest_of(IntC, x=BIGINT(10**30))),
    "v2 -10**30": (lambda: IntC.C(x=-(10**30)), lambda: digest_of(IntC, x=BIGINT(-(10**30)))),
    "v2 big int in a list": (
        lambda: ListC.C(xs=[2**64, 1]),
        lambda: digest_of(ListC, xs=LIST(BIGINT(2**64), INT(1))),
    ),
    "v2 set of tuples": (
        lambda: SetC.C(s={(1, 2), (3,)}),
        lambda: digest_of(SetC, s=SET(TUPLE(INT(1), INT(2)), TUPLE(INT(3)))),
    ),
}


def _inst(v: int = 100) -> bytes:
    return digest_of(Inst, v=INT(v))


def _instances_aba() -> Config:
    a, b, c = Inst.C(), Inst.C(), Inst.C()
    return ListC.C(xs=[a, b, a, c])


def _self_cycle() -> Config:
    node = Node.C(x=1)
    node.child = node
    return node


def _two_cycle() -> Config:
    one = Node.C(x=1)
    two = Node.C(x=2, child=one)
    one.child = two
    return one


@pytest.mark.parametrize("build, expected", list(VALUE_CHECKS.values()), ids=list(VALUE_CHECKS))
def test_rule(build: Callable[[], Config], expected: Callable[[], bytes]) -> None:
    assert ours(build()) == expected()


def test_big_int_byte_layout() -> None:
    """(bit_length + 8) // 8 bytes: always room for the sign bit."""
    assert BIGINT(2**63) == b"\x10" + q(9) + b"\x00\x80" + b"\x00" * 7
    assert BIGINT(-(2**63) - 1) == b"\x10" + q(9) + b"\xff\x7f" + b"\xff" * 7


def test_list_count_is_a_double() -> None:
    assert LIST(INT(1)) == b"\x07\x3f\xf0" + b"\x00" * 6 + INT(1)


def test_unsortable_dict_keys_are_refused() -> None:
    with pytest.raises(IdentifierError, match="sortable"):
        ours(DictC.C(d={1: "a", "b": 2}))


def test_unknown_value_type_is_refused() -> None:
    with pytest.raises(IdentifierError, match="object"):
        ours(AnyC.C(v=object()))


# --- Tasks: outputs and init tasks ------------------------------------------------------------------


def test_task_output_is_08_then_producer() -> None:
    out = dry(Producer.C(v=3))
    producer = digest_of(Producer, v=INT(3))
    assert ours(out) == DIGEST(tid(Out), {"v": INT(3)}, task=producer)
    assert ours(Holder.C(a=out)) == digest_of(Holder, a=REF(ours(out)))


def test_task_output_differs_from_the_same_config_built_by_hand() -> None:
    assert ours(dry(Producer.C(v=3))) != ours(Out.C(v=3))


def test_submitted_task_keeps_its_identifier() -> None:
    task = Learn.C(e=1)
    before = ours(task)
    assert dry(task) is task
    assert ours(task) == before == digest_of(Learn, e=INT(1))


def test_init_tasks_are_0c_then_each_digest() -> None:
    task = Learn.C(e=1)
    dry(task, init_tasks=[Init.C(n=1), Init.C(n=2)])
    expected = DIGEST(
        tid(Learn),
        {"e": INT(1)},
        init=[digest_of(Init, n=INT(1)), digest_of(Init, n=INT(2))],
    )
    assert ours(task) == expected
    assert ours(task) != digest_of(Learn, e=INT(1))


# --- InstanceConfig positions -----------------------------------------------------------------------


def test_instance_shared_object_has_no_position() -> None:
    shared = Inst.C()
    assert ours(ListC.C(xs=[shared, shared])) == digest_of(ListC, xs=LIST(REF(_inst()), REF(_inst())))


def test_instance_positions_follow_first_encounter_order() -> None:
    """a (sorted first) is met before the instance inside b: it takes position 0."""
    cfg = InstHolder.C(a=Inst.C(), b=Holder.C(a=Inst.C()))
    expected = digest_of(InstHolder, a=REF(_inst()), b=REF(digest_of(Holder, a=REF(_inst(), 1))))
    assert ours(cfg) == expected


def test_instance_positions_parameters_before_init_tasks() -> None:
    task = InstLearn.C(i=Inst.C())
    dry(task, init_tasks=[InstInit.C(i=Inst.C())])
    init = digest_of(InstInit, i=REF(_inst(), 1))
    assert ours(task) == DIGEST(tid(InstLearn), {"i": REF(_inst())}, init=[init])


def test_instance_positions_are_per_computation() -> None:
    """A sub-config holding an instance has its standalone digest when computed alone."""
    inner = Holder.C(a=Inst.C())
    holder = InstHolder.C(a=Inst.C(), b=inner)
    ours(holder)
    assert ours(inner) == digest_of(Holder, a=REF(_inst()))


# --- Scale, caching, sharing ------------------------------------------------------------------------


def test_deep_chain_without_recursion() -> None:
    limit = sys.getrecursionlimit()
    node = Node.C(x=0)
    expected = digest_of(Node, x=INT(0))
    for i in range(1, 10_000):
        node = Node.C(x=i, child=node)
        expected = digest_of(Node, x=INT(i), child=REF(expected))
    assert ours(node) == expected
    assert sys.getrecursionlimit() == limit


def test_list_of_1000_sub_configs() -> None:
    cfg = ListC.C(xs=[IntC.C(x=i) for i in range(1000)])
    expected = digest_of(ListC, xs=LIST(*(REF(digest_of(IntC, x=INT(i))) for i in range(1000))))
    assert ours(cfg) == expected


def test_sealed_config_returns_its_cached_digest() -> None:
    task = Learn.C(e=1)
    dry(task)
    first = ours(task)
    # Bypass the sealed-assignment guard: the cached digest is what a sealed config returns.
    task.__dict__["e"] = 2
    assert ours(task) == first == digest_of(Learn, e=INT(1))


def test_unsealed_config_digest_follows_assignments() -> None:
    cfg = IntC.C(x=1)
    assert ours(cfg) == digest_of(IntC, x=INT(1))
    cfg.x = 2
    assert ours(cfg) == digest_of(IntC, x=INT(2))


def test_unsealed_sub_config_change_is_seen_by_the_parent() -> None:
    inner = IntC.C(x=1)
    outer = Holder.C(a=inner)
    ours(outer)
    inner.x = 2
    assert ours(outer) == digest_of(Holder, a=REF(digest_of(IntC, x=INT(2))))


def test_shared_object_equals_two_equal_objects() -> None:
    shared = IntC.C(x=1)
    assert ours(Holder.C(a=shared, b=shared)) == ours(Holder.C(a=IntC.C(x=1), b=IntC.C(x=1)))
    assert ours(Holder.C(a=shared, b=shared)) == digest_of(
        Holder, a=REF(digest_of(IntC, x=INT(1))), b=REF(digest_of(IntC, x=INT(1)))
    )


def test_config_digest_is_the_identifier() -> None:
    cfg = IntC.C(x=1)
    assert config_digest(cfg) == ours(cfg)
    assert str(cfg.__xpm__.identifier) == cfg.__xpm__.identifier.hex() == ours(cfg).hex()


# --- Stability: identifiers pinned across releases -------------------------------------------------

STABLE_SOURCE = '''
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional
from experimaestro import Config, Task, LightweightTask, InstanceConfig, Param, Meta, Constant, field

class Mode(Enum):
    FAST = "fast"
    SLOW = "slow"

class Model(Config):
    layers: Param[int] = 3
    dropout: Param[float] = field(default=0.1)
    name: Param[str] = "mlp"
    mode: Param[Mode] = Mode.FAST

class Data(Config):
    path: Param[Path]
    names: Param[List[str]] = field(default_factory=list)
    weights: Param[Dict[str, float]] = field(default_factory=dict)
    seed: Meta[int] = 0

class Learn(Task):
    model: Param[Model]
    data: Param[Data]
    epochs: Param[int] = 100
    version: Constant[int] = 2
    def task_outputs(self, dep):
        return dep(Checkpoint.C(model=self.model))

class Checkpoint(Config):
    model: Param[Model]

class Evaluate(Task):
    checkpoint: Param[Checkpoint]
    extra: Param[Optional[Any]] = None

class Warmup(LightweightTask):
    steps: Param[int]
    def execute(self):
        pass

class Shared(InstanceConfig):
    size: Param[int] = field(default=1)

class Pair(Config):
    left: Param[Shared]
    right: Param[Shared]
'''

STABLE_CASES: Dict[str, str] = {
    "Model.C()": "Model.C()",
    "Model.C(layers=4)": "Model.C(layers=4)",
    "Model.C(dropout=0.5, mode=Mode.SLOW)": "Model.C(dropout=0.5, mode=Mode.SLOW)",
    "Model.C(name='cnn')": "Model.C(name='cnn')",
    "Data.C(path=Path('/d'))": "Data.C(path=Path('/d'), seed=5)",
    "Data.C(names=[...])": "Data.C(path=Path('/d'), names=['a', 'b'])",
    "Data.C(weights={...})": "Data.C(path=Path('/d'), weights={'z': 1.0, 'a': 0.5})",
    "Learn.C(...)": "Learn.C(model=Model.C(), data=Data.C(path=Path('/d')))",
    "Learn.C(epochs=10)": "Learn.C(model=Model.C(), data=Data.C(path=Path('/d')), epochs=10)",
    "checkpoint": "Learn.C(model=Model.C(), data=Data.C(path=Path('/d'))).submit(run_mode=RunMode.DRY_RUN)",
    "Evaluate": (
        "Evaluate.C(checkpoint=Learn.C(model=Model.C(), data=Data.C(path=Path('/d')))"
        ".submit(run_mode=RunMode.DRY_RUN))"
    ),
    "Evaluate extra dict": (
        "Evaluate.C(checkpoint=Learn.C(model=Model.C(), data=Data.C(path=Path('/d')))"
        ".submit(run_mode=RunMode.DRY_RUN), extra={'k': [1, 2.0, None]})"
    ),
    "Warmup": "Warmup.C(steps=10)",
    "Learn with init task": (
        "(lambda t: (t.submit(run_mode=RunMode.DRY_RUN, init_tasks=[Warmup.C(steps=5)]), t)[1])"
        "(Learn.C(model=Model.C(), data=Data.C(path=Path('/d'))))"
    ),
    "Pair shared": "(lambda s: Pair.C(left=s, right=s))(Shared.C())",
    "Pair distinct": "Pair.C(left=Shared.C(), right=Shared.C())",
    "Shared size 2": "Shared.C(size=2)",
    "v2 tuple in Any": "Evaluate.C(checkpoint=Checkpoint.C(model=Model.C()), extra=(1, 'a'))",
    "v2 big int": "Model.C(layers=2**70)",
    "v2 negative big int": "Model.C(layers=-(2**70))",
}

#: Independent pins: each is also rebuilt by the reference encoder (``_stable_references``); the
#: regression role (no identifier changes between releases) comes on top of that.
STABLE_IDS: Dict[str, str] = {
    'Model.C()': "daeda40dd369c4d3efee7bb8373b44feb32a362010ad22d68e678f2d39edebdb",
    'Model.C(layers=4)': "d09134e01ad06712f1c03407e407339c3c80a989acddd626225e791ef1c3b81a",
    "Model.C(dropout=0.5, mode=Mode.SLOW)": (
        "aca6002cb1c3e4fa35b08ec1f1e76399896d8ab7d0a724314d8d9af02a7973e2"
    ),
    "Model.C(name='cnn')": "dd67b838b67f429437b77d0121c645431a3bb1d353d9614a4cf87c9932ec24cf",
    "Data.C(path=Path('/d'))": "6669e43839499ed5626a27993b53a3b1da8b73bf82ecf605c561f64b7735bff6",
    'Data.C(names=[...])': "080b0a0b5ca48873e96270c0d1cc5f18b50145f08c4f66f5bfca5458621bb7a8",
    'Data.C(weights={...})': "f0f2b4be581ed3a4fbd6e4fc9189e9c5f2ca3af94bd2fd97af6dd4835c7b854f",
    'Learn.C(...)': "25981d1ce31a64bb73595151a7861b23da6ba93baef8829206f33d02393d104e",
    'Learn.C(epochs=10)': "546b4de1b9a536444a9acc45a2d608b26edc85770f1dc5db7c8a06d4ae1389f8",
    'checkpoint': "1bb3a3ff1e367f13cc310921bc9cb93d35261f5c0e74ccf790f2bdd02ae69f05",
    'Evaluate': "9440e17fe2e59b2a2ab4500c4b4ddd10661b27a304c85d9a51780ea036b6117a",
    'Evaluate extra dict': "c515bc1dfbeced6e7bc5ced5eab7eeeb841f4706286518699b575e95c28bc3c4",
    'Warmup': "34df717b5e1f030eaf202163aba289049ef0916ee696e40610f95450a3c5516f",
    'Learn with init task': "49a80f680ccf18dcdd9e1c878076f7c8fc7ce019f1043bfbf6533a23f4a84ed6",
    'Pair shared': "8fb4a7f7bac45e8000acff3bf9737fda13b0fef0f15bf305e053182a203f0d68",
    'Pair distinct': "2b82cddc1ec2d336cf6ca6bbd5aeb29701244a83443038fb63442e66db04a064",
    'Shared size 2': "6b5bdbd65d6e47001d63ca8023d948fe50f17fb7ee69e736d6a9e16220315b01",
    'v2 tuple in Any': "ee02500ef455b4afbc83c57b6847d065ff46eb2e9a57278047b37f7d2f7cf4bf",
    'v2 big int': "59d6bb8889758fa889553111c8bc73a135272fec425925b983aca32beebbad5f",
    'v2 negative big int': "13afa3a478645fecadd00dcba7213710f295c1dfe21486a2db5e574d9a03097c",
}


@pytest.fixture(scope="module")
def stable() -> Iterable[types.ModuleType]:
    module = types.ModuleType("xpmstable")
    sys.modules["xpmstable"] = module
    exec(compile(STABLE_SOURCE, "xpmstable", "exec"), module.__dict__)
    module.__dict__["RunMode"] = RunMode
    yield module
    sys.modules.pop("xpmstable", None)


@pytest.mark.parametrize("name", list(STABLE_CASES))
def test_stable_identifier(name: str, stable: types.ModuleType) -> None:
    value = eval(STABLE_CASES[name], stable.__dict__)
    assert value.__xpm__.identifier.hex() == STABLE_IDS[name]


def _stable_references(m: types.ModuleType) -> Dict[str, bytes]:
    """Every pinned identifier, rebuilt by the reference encoder from the declarations of
    ``STABLE_SOURCE`` (``m``): the pins are independent of the implementation, not its own output."""
    model = DIGEST("xpmstable.model", {"dropout": FLOAT(0.1)})
    data = DIGEST("xpmstable.data", {"names": LIST(), "weights": b"\x09"})
    learn_params = {"data": REF(data), "model": REF(model), "version": INT(2)}
    learn = DIGEST("xpmstable.learn", learn_params)
    checkpoint = DIGEST("xpmstable.checkpoint", {"model": REF(model)}, task=learn)
    shared = DIGEST("xpmstable.shared", {"size": INT(1)})

    def evaluate(**params: bytes) -> bytes:
        return DIGEST("xpmstable.evaluate", params)

    def with_model(**params: bytes) -> bytes:
        return DIGEST("xpmstable.model", {"dropout": FLOAT(0.1), **params})

    return {
        # Bare defaults (layers, name, mode) are left out at their default; field(default) counts.
        "Model.C()": model,
        "Model.C(layers=4)": with_model(layers=INT(4)),
        "Model.C(dropout=0.5, mode=Mode.SLOW)": DIGEST(
            "xpmstable.model", {"dropout": FLOAT(0.5), "mode": ENUM(m.Mode.SLOW)}
        ),
        "Model.C(name='cnn')": with_model(name=STR("cnn")),
        # A Path parameter and a Meta are left out; default_factory fields count.
        "Data.C(path=Path('/d'))": data,
        "Data.C(names=[...])": DIGEST(
            "xpmstable.data", {"names": LIST(STR("a"), STR("b")), "weights": b"\x09"}
        ),
        "Data.C(weights={...})": DIGEST(
            "xpmstable.data",
            {
                "names": LIST(),
                "weights": DICT((STR("z"), FLOAT(1.0)), (STR("a"), FLOAT(0.5)), order=[1, 0]),
            },
        ),
        "Learn.C(...)": learn,
        "Learn.C(epochs=10)": DIGEST("xpmstable.learn", {**learn_params, "epochs": INT(10)}),
        "checkpoint": checkpoint,
        "Evaluate": evaluate(checkpoint=REF(checkpoint)),
        "Evaluate extra dict": evaluate(
            checkpoint=REF(checkpoint),
            extra=DICT((STR("k"), LIST(INT(1), FLOAT(2.0), NONE)), order=[0]),
        ),
        "Warmup": DIGEST("xpmstable.warmup", {"steps": INT(10)}),
        "Learn with init task": DIGEST(
            "xpmstable.learn", learn_params, init=[DIGEST("xpmstable.warmup", {"steps": INT(5)})]
        ),
        "Pair shared": DIGEST("xpmstable.pair", {"left": REF(shared), "right": REF(shared)}),
        "Pair distinct": DIGEST("xpmstable.pair", {"left": REF(shared), "right": REF(shared, 1)}),
        "Shared size 2": DIGEST("xpmstable.shared", {"size": INT(2)}),
        # A Checkpoint built by hand (no producing task): no 08 prefix.
        "v2 tuple in Any": evaluate(
            checkpoint=REF(DIGEST("xpmstable.checkpoint", {"model": REF(model)})),
            extra=TUPLE(INT(1), STR("a")),
        ),
        "v2 big int": with_model(layers=BIGINT(2**70)),
        "v2 negative big int": with_model(layers=BIGINT(-(2**70))),
    }


def test_stable_identifiers_follow_the_rules(stable: types.ModuleType) -> None:
    """All the pinned identifiers are independent pins: the reference encoder gives each of them
    (so a pin that only recorded the implementation's output, right or wrong, would show here)."""
    references = _stable_references(stable)
    assert set(references) == set(STABLE_IDS)
    assert {name: digest.hex() for name, digest in references.items()} == STABLE_IDS


@pytest.mark.parametrize(
    "build, expected",
    [
        (
            lambda: SetC.C(s={setmeta(IntC.C(x=1)), IntC.C(x=2)}),
            lambda: digest_of(SetC, s=SET(REF(digest_of(IntC, x=INT(2))))),
        ),
        (
            lambda: TupleC.C(t=(setmeta(IntC.C(x=1)), 2)),
            lambda: digest_of(TupleC, t=TUPLE(INT(2))),
        ),
    ],
    ids=["set", "tuple"],
)
def test_meta_configs_are_filtered_from_sets_and_tuples(
    build: Callable[[], Config], expected: Callable[[], bytes]
) -> None:
    """As in lists and dicts, a meta config inside a set or a tuple is skipped (and not counted).
    (The encoder once skipped them when computing sub-digests but not when writing sets and
    tuples: a bare KeyError.)"""
    assert ours(build()) == expected()
