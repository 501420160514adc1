"""Identifiers against experimaestro 2.7.0's own output (``tests/data/ids_270.json``).

Each case's source is executed, as 2.7.0's generator did, in a fresh module named ``pbids`` registered
in ``sys.modules`` (so type ids are ``pbids.<class name lowercased>``); the case's expression is then
evaluated and our identifier compared with 2.7.0's full 64-hex one.

Every case 2.7.0 can hash must give the same identifier, except the deliberate deviations listed in
:data:`DEVIATIONS`, whose behaviour (ours) is pinned here with its reason. Cases where 2.7.0 raised are
pinned in :data:`BEYOND_270` (identifier version 2, or our own error).
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Union

import pytest

from experimaestro import ValidationError
from pbids_module import fresh_pbids

pytestmark = pytest.mark.filterwarnings("ignore:Option\\[...\\] is deprecated:DeprecationWarning")

DATA = json.loads((Path(__file__).parent / "data" / "ids_270.json").read_text())
CASES: dict[str, dict[str, Any]] = {case["name"]: case for case in DATA["cases"]}

#: An expected error: the exception type and a fragment of its message.
Raises = tuple[type[BaseException], str]

#: Cases 2.7.0 hashes, where we deliberately differ. Value: our pinned identifier, or our error.
DEVIATIONS: dict[str, Union[str, Raises]] = {
    # 2.7.0 silently coerces a numeric string (or an integral float) for an int/float parameter,
    # so A.C(x="3") and A.C(x=3) are the same job there. We refuse the value: a typo in a
    # command-line option should not silently become a different job, nor the same one.
    "int_param_given_numeric_str": (ValidationError, "A.x: expected int, got '3'"),
    "int_param_given_float_integral": (ValidationError, "A.x: expected int, got 3.0"),
    "float_param_given_str": (ValidationError, "A.x: expected float, got '2'"),
    # Union[int, str] given "1": 2.7.0 converts it to the int 1 (same identifier as u=1); for us a
    # str that fits the union stays a str (the exact type is tried first).
    "union_str": "afe82cee646d82112a343ea8a262b5affd7ce909b7dfe67f867f23a98a8150b8",
    # 2.7.0 reuses a sealed config's identifier once ``__identifier__()`` was called on it, even when
    # an InstanceConfig inside would take another position in the new graph: the identifier then
    # depends on call history (without the call, 2.7.0 gives 846b56d6..., case
    # instance_nested_separate_w2_sealed). Ours never depends on history: the digest of a config
    # holding instances is not cached, and we give 846b56d6... in both cases.
    # (Our API has no ``__identifier__()``: the call is read as ``__xpm__.identifier``.)
    "instance_nested_separate_w2_sealed_and_cached": (
        "846b56d6e2fc26d7148f164ea7f092bcf26697b0a0e6bd0d4758dc63eada525e"
    ),
}

#: Cases where 2.7.0 raised: our identifier (version 2 encodings) or our error.
BEYOND_270: dict[str, Union[str, Raises]] = {
    # Version 2: ints outside the signed 64-bit range (tag 0x10).
    "int_2pow63": "10f65c4c1cd9fc8743bb2ad8c3b939582ad3c50ecfa9471e718cad6c42d78eb1",
    "int_huge": "594c19873c38cac8e74dc8f19a38b5d9eec48a4f91e1ea8b200bd487537f5ccd",
    # field(ignored=True) does not exist in 2.7.0: the parameter is left out, so the identifier is
    # that of the same config without it (sample_meta's A.C(x=1)).
    "field_ignored_true": "692090d2dda16e95a7e6bd34b71337ebb6378c2eede4f5387358f1a37037119f",
    # Both refuse an unsubmitted task as a parameter value.
    "task_without_outputs_as_param_unsubmitted": (
        ValidationError,
        "the task T must be submitted before it is used as a parameter",
    ),
    # typing.Any is accepted (2.7.0 only knows its own Any).
    "any_dict": "5f14e08b87b83baa06333ef382070327196f2453812cdc619e7a086bdaa93362",
    # Version 2: tuples (tag 0x0f); tuple and Tuple[int, int] hold the same value.
    "tuple_param": "d553789b4ca90875d657a266123b4fd06fef8c2dc50373f733ae337dc6531217",
    "tuple_typed_param": "d553789b4ca90875d657a266123b4fd06fef8c2dc50373f733ae337dc6531217",
    # Plain sets of configs: the same identifier as 2.7.0's sealed_set (case
    # set_of_configs_sealed_set), so no sealed_set() is needed.
    "set_of_configs": "39d67f7bba6dc669fc4ec6e87b9a7e97011a74ca0feb63bc40f92c31b6e2521e",
    "instance_in_set": "517599dc9ce0b423eb816bdaf3f55d64c001b020ff63155489a3a224c1261307",
}

#: Mismatches that are bugs of ours (strict xfail: fix the core, then remove the entry).
KNOWN_BUGS: dict[str, str] = {}


#: A fresh module named ``pbids``, registered in ``sys.modules`` for the test's duration.
pbids = pytest.fixture(fresh_pbids, name="pbids")


def identifier_of(case: dict[str, Any], module: types.ModuleType) -> str:
    """Run a case as 2.7.0's generator did, and return our identifier (64 hex digits)."""
    source = DATA["prelude"] + case["source"].replace("__identifier__()", "__xpm__.identifier")
    namespace = module.__dict__
    exec(compile(source, "pbids", "exec"), namespace)
    value = eval(case["expr"], namespace)
    return value.__xpm__.identifier.hex()


def check_pinned(case: dict[str, Any], module: types.ModuleType, expected: Union[str, Raises]) -> None:
    if isinstance(expected, str):
        assert identifier_of(case, module) == expected
    else:
        error, fragment = expected
        with pytest.raises(error) as info:
            identifier_of(case, module)
        assert fragment in str(info.value)


def _param(name: str) -> Any:
    marks = []
    if name in KNOWN_BUGS:
        marks.append(pytest.mark.xfail(reason=KNOWN_BUGS[name], strict=True))
    return pytest.param(name, id=name, marks=marks)


HASHED = [name for name, case in CASES.items() if case["identifier"] is not None]
RAISED = [name for name, case in CASES.items() if case["identifier"] is None]


def test_data_file_is_the_270_reference() -> None:
    assert DATA["experimaestro_version"] == "2.7.0"
    assert len(CASES) == len(DATA["cases"]) == 148
    assert all(len(CASES[n]["identifier"]) == 64 for n in HASHED)


def test_pinned_tables_name_real_cases() -> None:
    assert set(DEVIATIONS) <= set(HASHED)
    assert set(KNOWN_BUGS) <= set(HASHED)
    assert set(BEYOND_270) == set(RAISED)


@pytest.mark.parametrize("name", [_param(n) for n in HASHED if n not in DEVIATIONS])
def test_same_identifier_as_270(name: str, pbids: types.ModuleType) -> None:
    case = CASES[name]
    assert identifier_of(case, pbids) == case["identifier"]


@pytest.mark.parametrize("name", sorted(DEVIATIONS))
def test_deliberate_deviation(name: str, pbids: types.ModuleType) -> None:
    expected = DEVIATIONS[name]
    if isinstance(expected, str):
        assert expected != CASES[name]["identifier"]
    check_pinned(CASES[name], pbids, expected)


@pytest.mark.parametrize("name", sorted(BEYOND_270))
def test_where_270_raised(name: str, pbids: types.ModuleType) -> None:
    check_pinned(CASES[name], pbids, BEYOND_270[name])


def test_plain_set_of_configs_equals_270_sealed_set() -> None:
    assert BEYOND_270["set_of_configs"] == CASES["set_of_configs_sealed_set"]["identifier"]


def test_history_independent_instance_identifier() -> None:
    """Calling for an identifier earlier does not change a later one (unlike 2.7.0)."""
    assert (
        DEVIATIONS["instance_nested_separate_w2_sealed_and_cached"]
        == CASES["instance_nested_separate_w2_sealed"]["identifier"]
    )
