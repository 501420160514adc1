"""``explain(cfg)`` and ``experimaestro explain-id``: what each parameter contributes to an identifier."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
from click.testing import CliRunner

from experimaestro import (
    Config,
    LightweightTask,
    Meta,
    Param,
    RunMode,
    Task,
    field,
    setmeta,
)
from experimaestro.cli.explain import explain_id
from experimaestro.core.explain import ConfigExplanation, Explanation, explain
from experimaestro.core.serialization import dumps


def INT(n: int) -> str:
    return (b"\x01" + struct.pack("!q", n)).hex()


def FLOAT(x: float) -> str:
    return (b"\x02" + struct.pack("!d", x)).hex()


class Model(Config):
    layers: Param[int] = 3
    dropout: Param[float] = field(default=0.1)
    ratio: Param[int] = field(default=1, ignore_default=True)
    opt: Param[Optional[int]]
    where: Param[Path] = Path("/data")
    name: Meta[str] = "m"
    skipped: Param[int] = field(default=0, ignored=True)


class Learn(Task):
    model: Param[Model]
    models: Param[List[Model]] = field(default_factory=list)
    table: Param[Dict[str, int]] = field(default_factory=dict)
    epochs: Param[int]
    monitor: Param[Optional[Config]] = None


class Out(Config):
    v: Param[int]


class Producer(Task):
    v: Param[int]

    def task_outputs(self, dep: Callable[[Config], Config]) -> Config:
        return dep(Out.C(v=self.v))


class Warmup(LightweightTask):
    steps: Param[int]

    def execute(self) -> None:
        pass


def by_name(config: ConfigExplanation) -> Dict[str, Any]:
    return {p.name: p for p in config.parameters}


def hexid(cfg: Config) -> str:
    return cfg.__xpm__.identifier.hex()


def typeid(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}".lower()


# --- explain() ---------------------------------------------------------------------------------------


def test_root_type_and_identifier() -> None:
    model = Model.C(layers=4, opt=None)
    explanation = explain(model)
    assert isinstance(explanation, Explanation)
    assert len(explanation.configs) == 1
    assert explanation.root.typeid == typeid(Model)
    assert explanation.root.identifier == hexid(model)


def test_included_parameters_show_their_bytes() -> None:
    params = by_name(explain(Model.C(layers=4, ratio=2, opt=7)).root)
    assert params["layers"].included and params["layers"].encoding == INT(4)
    assert params["dropout"].encoding == FLOAT(0.1)  # field(default=...) always counts
    assert params["ratio"].encoding == INT(2)
    assert params["opt"].encoding == INT(7)


@pytest.mark.parametrize(
    "name, reason",
    [
        ("layers", "default"),
        ("ratio", "default"),
        ("opt", "none"),
        ("where", "Path"),
        ("name", "meta"),
        ("skipped", "ignored"),
    ],
)
def test_left_out_parameters_give_their_reason(name: str, reason: str) -> None:
    params = by_name(explain(Model.C(opt=None, where=Path("/x"), name="n")).root)
    assert not params[name].included
    assert params[name].reason == reason
    assert params[name].encoding is None


def test_unset_parameter() -> None:
    params = by_name(explain(Learn.C(model=Model.C())).root)
    assert params["epochs"].reason == "unset"


def test_bytes_rebuild_the_identifier() -> None:
    """00 + type id + (03 name 05 bytes) of the included parameters hash to the identifier."""
    model = Model.C(layers=4, opt=7)
    root = explain(model).root
    data = b"\x00" + root.typeid.encode()
    for p in root.parameters:  # already sorted by name
        if p.included:
            data += b"\x03" + p.name.encode() + b"\x05" + bytes.fromhex(p.encoding)
    assert hashlib.sha256(data).hexdigest() == root.identifier


def test_sub_configs_preorder_each_once() -> None:
    first, second, third = Model.C(layers=1), Model.C(layers=2), Model.C(layers=5)
    monitor = setmeta(Model.C(layers=9))
    learn = Learn.C(model=first, models=[second, first, monitor, third], epochs=1, monitor=monitor)
    explanation = explain(learn)
    assert [c.identifier for c in explanation.configs] == [
        hexid(learn),
        hexid(first),
        hexid(second),
        hexid(third),
    ]
    params = by_name(explanation.root)
    assert params["model"].encoding == f"config {typeid(Model)} {hexid(first)}"
    assert params["monitor"].reason == "meta config"


def test_list_bytes_skip_meta_configs() -> None:
    first = Model.C(layers=1)
    learn = Learn.C(model=first, models=[first, setmeta(Model.C())], epochs=1)
    encoding = by_name(explain(learn).root)["models"].encoding
    expected = b"\x07" + struct.pack("!d", 1) + b"\x00" + first.__xpm__.identifier.all
    assert encoding == expected.hex()


def test_dict_bytes() -> None:
    learn = Learn.C(model=Model.C(), table={"b": 2, "a": 1}, epochs=1)
    encoding = by_name(explain(learn).root)["table"].encoding
    assert encoding == "09" + "0361" + INT(1) + "0362" + INT(2)


def test_task_output_and_init_tasks() -> None:
    out = Producer.C(v=3).submit(run_mode=RunMode.DRY_RUN)
    producer = out.__xpm__.task
    explanation = explain(out)
    assert explanation.root.task == f"config {typeid(Producer)} {hexid(producer)}"
    assert [c.typeid for c in explanation.configs] == [typeid(Out), typeid(Producer)]

    learn = Learn.C(model=Model.C(), epochs=1)
    warmup = Warmup.C(steps=5)
    learn.submit(run_mode=RunMode.DRY_RUN, init_tasks=[warmup])
    explanation = explain(learn)
    assert explanation.root.init_tasks == (f"config {typeid(Warmup)} {hexid(warmup)}",)
    assert explanation.configs[-1].identifier == hexid(warmup)


def test_text_rendering() -> None:
    learn = Learn.C(model=Model.C(layers=4), epochs=2, models=[Model.C()] * 30)
    text = str(explain(learn))
    assert text.startswith(f"{typeid(Learn)} {hexid(learn)}\n")
    assert f"  + epochs = {INT(2)}" in text
    assert "  - monitor: left out (default): the value equals its default" in text
    assert "  - opt: left out (none): an Optional parameter" in text
    assert "  - where: left out (Path): a Path parameter" in text
    assert "... (1000 bytes)" not in text
    assert "bytes)" in text  # the 30-item list is shortened
    assert f"\n\n{typeid(Model)} " in text


class Chain(Config):
    n: Param[int]
    previous: Param[Optional["Chain"]] = None


def test_deep_chain_is_explained_without_recursion() -> None:
    chain = Chain.C(n=0)
    for i in range(1, 2000):
        chain = Chain.C(n=i, previous=chain)
    chain.__xpm__.seal()  # sealed digests are cached: explaining stays linear
    explanation = explain(chain)
    assert [c.identifier for c in explanation.configs[:2]] == [hexid(chain), hexid(chain.previous)]
    assert len(explanation.configs) == 2000


# --- The command -------------------------------------------------------------------------------------

CLI_MODULE = "xpm_explain_cli_mod"
CLI_SOURCE = '''
from experimaestro import Config, Task, Param, Meta

class Inner(Config):
    x: Param[int] = 1

class Job(Task):
    inner: Param[Inner]
    lr: Param[float]
    note: Meta[str] = ""
'''


@pytest.fixture
def cli_module(source_module: Any) -> Any:
    return source_module(CLI_MODULE, CLI_SOURCE)


def test_cli_explains_a_params_file(cli_module: Any, tmp_path: Path) -> None:
    job = cli_module.Job.C(inner=cli_module.Inner.C(x=2), lr=0.5, note="n")
    params = tmp_path / "job" / "params.json"
    params.parent.mkdir()
    params.write_text(dumps(job, job=params.parent))

    result = CliRunner().invoke(explain_id, [str(params)])

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{CLI_MODULE}.job {hexid(job)}\n")
    assert f"  + lr = {FLOAT(0.5)}\n" in result.output
    assert "  - note: left out (meta)" in result.output
    assert f"{CLI_MODULE}.inner {hexid(job.inner)}\n  + x = {INT(2)}" in result.output


def test_cli_checks_the_identifier_against_todays_classes(cli_module: Any, tmp_path: Path) -> None:
    """"Why did my job rerun?": the identifier recomputed with today's declarations is compared
    with the one the job folder was created with."""
    job = cli_module.Job.C(inner=cli_module.Inner.C(x=2), lr=0.5)
    params = tmp_path / "job" / "params.json"
    params.parent.mkdir()
    params.write_text(dumps(job, job=params.parent))
    result = CliRunner().invoke(explain_id, [str(params)])
    assert "checked: today's class declarations give the same identifier" in result.output

    # The folder was made when the declarations were different (another identifier).
    document = json.loads(params.read_text())
    document["identifier"] = "ab" * 32
    params.write_text(json.dumps(document))
    result = CliRunner().invoke(explain_id, [str(params)])
    assert result.exit_code == 0, result.output
    assert f"give {hexid(job)}, not the folder's {'ab' * 32}" in result.output


def test_cli_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(explain_id, [str(tmp_path / "nope.json")])
    assert result.exit_code == 1
    assert "nope.json: no such file" in result.output


@pytest.mark.parametrize(
    "content, message",
    [
        ("{broken", "damaged"),
        (json.dumps({"xpm_format": 99, "root": 0, "objects": []}), "upgrade experimaestro"),
        (json.dumps({"version": 3, "objects": [], "experimaestro": "2.7.0"}), "2.7.0"),
    ],
)
def test_cli_unreadable_params(tmp_path: Path, content: str, message: str) -> None:
    params = tmp_path / "params.json"
    params.write_text(content)
    result = CliRunner().invoke(explain_id, [str(params)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert message in result.output
    assert "Traceback" not in result.output
