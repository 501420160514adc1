"""params.json: a graph written here is rebuilt by a fresh Python process with the same identifier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from experimaestro import RunMode, tag
from experimaestro.core.serialization import (
    FORMAT_VERSION,
    ParamsFormatError,
    dumps,
    loads,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE = "xpm_serialization_mod"

MODULE_SOURCE = '''
from enum import Enum
from pathlib import Path
from typing import Dict, List, Optional
from experimaestro import Config, Task, LightweightTask, InstanceConfig, Param, Meta, field


class Color(Enum):
    RED = 1
    BLUE = 2


class Inner(Config):
    x: Param[int]
    color: Param[Color] = Color.RED


class Shared(InstanceConfig):
    size: Param[int] = field(default=1)


class Out(Config):
    v: Param[int]


class Producer(Task):
    v: Param[int]

    def task_outputs(self, dep):
        return dep(Out.C(v=self.v))


class Warmup(LightweightTask):
    steps: Param[int]

    def execute(self):
        pass


class Root(Task):
    inner: Param[Inner]
    items: Param[List[Inner]]
    table: Param[Dict[str, float]]
    keyed: Param[dict] = field(default_factory=dict)
    out: Param[Out]
    pair: Param[List[Shared]] = field(default_factory=list)
    t: Param[tuple] = ()
    s: Param[set] = field(default_factory=set)
    big: Param[int] = 0
    in_job: Meta[Optional[Path]] = None
    in_workspace: Meta[Optional[Path]] = None
    elsewhere: Meta[Optional[Path]] = None
    relative: Meta[Optional[Path]] = None
'''

#: Run in the fresh process: load the document and print what it holds.
LOADER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from experimaestro.core.serialization import loads
    text, job, workspace = sys.argv[1:4]
    root = loads(Path(text).read_text(), job=Path(job), workspace=Path(workspace))
    print(json.dumps({
        "identifier": root.__xpm__.identifier.hex(),
        "sealed": root.__xpm__.sealed,
        "tags": root.tags(),
        "paths": [str(root.in_job), str(root.in_workspace), str(root.elsewhere), str(root.relative)],
        "items": [[i.x, i.color.name] for i in root.items],
        "table": root.table,
        "keyed": [[k, v] for k, v in sorted(root.keyed.items())],
        "t": repr(root.t),
        "s": sorted(root.s),
        "big": root.big,
        "out_task": type(root.out.__xpm__.task).__name__,
        "out_identifier": root.out.__xpm__.identifier.hex(),
        "init_tasks": [w.steps for w in root.__xpm__.init_tasks],
        "shared_is_shared": root.pair[0] is root.pair[2],
    }))
    """
)


@pytest.fixture
def mod(source_module: Any) -> Any:
    """The test module, written to ``tmp_path/src`` and imported."""
    return source_module(MODULE, MODULE_SOURCE)


def build(mod: Any, workspace: Path) -> Any:
    """A submitted Root task using most kinds of values."""
    out = mod.Producer.C(v=2).submit(run_mode=RunMode.DRY_RUN, workspace=workspace)
    shared = mod.Shared.C()
    inner = mod.Inner.C(x=tag(1))
    root = mod.Root.C(
        inner=inner,
        items=[inner, mod.Inner.C(x=2, color=mod.Color.BLUE)],
        table={"b": 0.5, "a": 1.0},
        keyed={3: "three", 1: "one"},
        out=out,
        pair=[shared, mod.Shared.C(), shared],
        t=(1, "a", (2.5,)),
        s={"y", "x"},
        big=2**70,
    )
    root.tag("run", "a/b")
    root.submit(
        run_mode=RunMode.DRY_RUN,
        workspace=workspace,
        init_tasks=[mod.Warmup.C(steps=5)],
    )
    job = root.jobpath
    root.__dict__.update(
        in_job=job / "model.pt",
        in_workspace=workspace / "data" / "train.txt",
        elsewhere=Path("/opt/shared/file"),
        relative=Path("rel/file"),
    )
    return root


def run_loader(tmp_path: Path, text: str, job: Path, workspace: Path) -> dict[str, Any]:
    document = tmp_path / "params.json"
    document.write_text(text)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "src"), str(REPO_ROOT)])
    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(document), str(job), str(workspace)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_round_trip_in_a_fresh_process(mod: Any, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    root = build(mod, workspace)
    job = root.jobpath
    text = dumps(root, job=job, workspace=workspace)

    # Loaded from a workspace moved elsewhere: relative paths follow it.
    moved = tmp_path / "moved"
    moved_job = moved / job.relative_to(workspace)
    loaded = run_loader(tmp_path, text, moved_job, moved)

    assert loaded["identifier"] == root.__xpm__.identifier.hex()
    assert loaded["out_identifier"] == root.out.__xpm__.identifier.hex()
    assert loaded["sealed"] is True
    assert loaded["tags"] == {"run": "a/b", "x": 1}
    assert loaded["paths"] == [
        str(moved_job / "model.pt"),
        str(moved / "data" / "train.txt"),
        "/opt/shared/file",
        "rel/file",
    ]
    assert loaded["items"] == [[1, "RED"], [2, "BLUE"]]
    assert loaded["table"] == {"b": 0.5, "a": 1.0}
    assert loaded["keyed"] == [[1, "one"], [3, "three"]]
    assert loaded["t"] == "(1, 'a', (2.5,))"
    assert loaded["s"] == ["x", "y"]
    assert loaded["big"] == 2**70
    assert loaded["out_task"] == "Producer"
    assert loaded["init_tasks"] == [5]
    assert loaded["shared_is_shared"] is True


def test_paths_are_stored_relative_to_job_and_workspace(mod: Any, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    root = build(mod, workspace)
    document = json.loads(dumps(root, job=root.jobpath, workspace=workspace))
    assert document["xpm_format"] == FORMAT_VERSION
    assert document["identifier"] == root.__xpm__.identifier.hex()
    fields = document["objects"][document["root"]]["fields"]
    assert fields["in_job"] == {"$path": "model.pt", "base": "job"}
    assert fields["in_workspace"] == {"$path": "data/train.txt", "base": "workspace"}
    assert fields["elsewhere"] == {"$path": "/opt/shared/file", "base": None}
    assert fields["relative"] == {"$path": "rel/file", "base": None}
    assert str(tmp_path) not in json.dumps(fields)


def test_graph_is_listed_dependencies_first(mod: Any, tmp_path: Path) -> None:
    root = build(mod, tmp_path / "ws")
    document = json.loads(dumps(root))
    objects = document["objects"]
    assert document["root"] == len(objects) - 1
    types = [o["type"] for o in objects]
    assert types.count("Inner") == 2  # the shared inner config is written once
    assert types.count("Shared") == 2
    for position, record in enumerate(objects):
        refs = [record["task"], *record["init_tasks"]]
        assert all(ref is None or ref < position for ref in refs)


def test_round_trip_in_process(mod: Any, tmp_path: Path) -> None:
    root = build(mod, tmp_path / "ws")
    again = loads(dumps(root))
    assert again is not root
    assert again.__xpm__.identifier == root.__xpm__.identifier
    assert again.__xpm__.sealed


def test_newer_format_asks_to_upgrade() -> None:
    with pytest.raises(ParamsFormatError, match="upgrade experimaestro"):
        loads(json.dumps({"xpm_format": 99, "root": 0, "objects": []}))


def test_270_document_is_refused_clearly() -> None:
    text = json.dumps({"version": 3, "objects": [], "experimaestro": "2.7.0"})
    with pytest.raises(ParamsFormatError, match=r"written by experimaestro 2\.7\.0"):
        loads(text)


@pytest.mark.parametrize("text", ["{not json", "", '{"objects": '])
def test_damaged_document(text: str) -> None:
    with pytest.raises(ParamsFormatError, match="damaged"):
        loads(text, source="x/params.json")


def test_not_a_params_document() -> None:
    with pytest.raises(ParamsFormatError, match="does not hold a params document"):
        loads("[1, 2]")


def test_missing_module_is_explained() -> None:
    document = {
        "xpm_format": FORMAT_VERSION,
        "root": 0,
        "objects": [{"module": "no_such_module_xpm", "type": "A", "typeid": "no_such_module_xpm.a"}],
    }
    with pytest.raises(ParamsFormatError, match="cannot import module 'no_such_module_xpm'"):
        loads(json.dumps(document))
