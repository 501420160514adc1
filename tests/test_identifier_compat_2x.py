"""The 2.x configuration API that touches identifiers, against experimaestro 2.7.0's own output
(``tests/data/ids_270_compat.json``, written by ``tests/data/make_ids_270_compat.py``).

Partial identifiers (``param_group``, ``partial``, ``field(groups=...)``) and the folders they give,
generic configurations, ``field(overrides=..., ignore_generated=..., ignore_default=<value>)``,
parameters declared with ``Annotated`` and type ids built with ``Identifier``: every case must give
2.7.0's identifier, and for submitted cases the same path relative to the workspace.
"""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path
from typing import Any

import pytest
from pbids_module import fresh_pbids

from experimaestro import RunMode

DATA = json.loads((Path(__file__).parent / "data" / "ids_270_compat.json").read_text())
CASES: dict[str, dict[str, Any]] = {case["name"]: case for case in DATA["cases"]}

pbids = pytest.fixture(fresh_pbids, name="pbids")
pytestmark = pytest.mark.filterwarnings("ignore:field\\(ignore_default=:DeprecationWarning")


def run_case(case: dict[str, Any], module: types.ModuleType, workspace: Path) -> dict[str, str]:
    """Run a case as the generator did with 2.7.0: its identifier, and its path when submitted."""
    source = DATA["prelude"] + case["source"]
    namespace = module.__dict__
    exec(compile(source, "pbids", "exec"), namespace)
    value = eval(case["expr"], namespace)
    if case["kind"] == "id":
        return {"identifier": value.__xpm__.identifier.hex()}
    if case["kind"] == "partial":
        spec = eval(case["partial"], namespace)
        return {"identifier": value.__xpm__.get_partial_identifier(spec).hex()}
    task = value.submit(run_mode=RunMode.DRY_RUN, workspace=workspace)
    path = eval(case["path"], {**namespace, "t": task})
    return {
        "identifier": task.__xpm__.identifier.hex(),
        "relative_path": str(Path(path).relative_to(workspace)),
    }


def test_data_file_is_the_270_reference() -> None:
    assert DATA["experimaestro_version"] == "2.7.0"
    assert len(CASES) == len(DATA["cases"]) >= 45
    assert all(case["identifier"] and len(case["identifier"]) == 64 for case in CASES.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_as_270(name: str, pbids: types.ModuleType, tmp_path: Path) -> None:
    case = CASES[name]
    expected = {"identifier": case["identifier"]}
    if case["kind"] == "path":
        expected["relative_path"] = case["relative_path"]
    assert run_case(case, pbids, tmp_path) == expected


def test_partial_shares_what_it_leaves_out() -> None:
    """The reference data itself shows the contract: tasks differing only in excluded groups share
    a partial identifier (and folder); a sub-configuration counts whole (its groups are not
    filtered)."""
    ids = {name: case["identifier"] for name, case in CASES.items()}
    assert ids["partial_learn_full_iter1"] != ids["partial_learn_full_iter2"]
    assert ids["partial_learn_checkpoints_iter1"] == ids["partial_learn_checkpoints_iter2"]
    assert ids["partial_learn_checkpoints_iter1"] != ids["partial_learn_checkpoints_lr2"]
    assert ids["partial_learn_checkpoints_sub"] != ids["partial_learn_checkpoints_sub_a3"]
    assert ids["partial_learn_models"] == ids["partial_learn_models_iter2_lr2"]
    assert ids["partial_learn_inline_partial"] == ids["partial_learn_full_iter1"]
    path = {name: case.get("relative_path") for name, case in CASES.items()}
    assert path["partial_path_iter5"] == path["partial_path_iter6"]
    assert path["partial_path_iter5"] != path["partial_path_lr3"]
    assert path["partial_path_iter5"].startswith("partials/pbids.learn/checkpoints/")


def test_override_without_flag_warns(pbids: types.ModuleType, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, logger="experimaestro"):
        run_case(CASES["field_overrides_without_flag"], pbids, Path("/nonexistent"))
    assert "B.x overrides the parameter of A: declare it with field(overrides=True)" in caplog.text


def test_override_with_flag_is_silent(pbids: types.ModuleType, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, logger="experimaestro"):
        run_case(CASES["field_overrides_default"], pbids, Path("/nonexistent"))
    assert "overrides" not in caplog.text
