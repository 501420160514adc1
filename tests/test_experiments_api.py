"""The ``experimaestro.experiments`` and ``experimaestro.settings`` names, used as 2.x projects use
them: ``@configuration`` schemas (and how YAML data and ``-c`` values become them), merging YAML
files, ``ExperimentHelper``, ``mock_modules``, ``settings.yaml`` workspaces."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Dict, List, Optional

import attrs
import pytest

from experimaestro.experiments import (
    ConfigurationBase,
    DirtyGitAction,
    ExperimentHelper,
    configuration,
    mock_modules,
)
from experimaestro.experiments.configuration import MISSING
from experimaestro.experiments.loading import merge_configuration
from experimaestro.experiments.schema import structure
from experimaestro.experiments.yamlfile import ConfigurationError


class Pooling(enum.Enum):
    MEAN = "mean"
    MAX = "max"


@configuration()
class Model:
    layers: int = 2
    pooling: Pooling = Pooling.MEAN
    dropout: Optional[float] = None


@configuration
class Config(ConfigurationBase):
    model: Model = attrs.Factory(Model)
    seeds: List[int]
    name: str = ""
    weights: Dict[str, float] = attrs.Factory(dict)
    output: Optional[Path] = None


def build(tmp_path: Path, text: str, *assignments: str, schema: type = Config) -> tuple[object, list[str]]:
    path = tmp_path / "xp.yaml"
    path.write_text(text)
    merged = merge_configuration(path, assignments=assignments)
    warnings: list[str] = []
    return structure(schema, merged.data, merged.origins, warn=warnings.append), warnings


def test_configuration_with_and_without_parentheses_is_keyword_only() -> None:
    config = Config(id="x", seeds=[1])  # a required field after the base's defaults
    assert config.file == "experiment" and config.dirty_git is DirtyGitAction.WARN
    with pytest.raises(TypeError):
        Model(3)  # type: ignore[misc]
    assert Model(layers=3).layers == 3
    assert hash(Model()) == hash(Model())  # hashable, compared by value, as in 2.x
    # The fields of ConfigurationBase, their order and defaults are 2.7.0's (but grid_search);
    # id defaults to MISSING (falsy) in Python, and is required in the YAML files.
    fields = [(f.name, f.default) for f in attrs.fields(ConfigurationBase)]
    assert fields == [
        ("id", MISSING), ("file", "experiment"), ("module", None), ("pythonpath", None),
        ("parent", None), ("imports", None), ("pre_experiment", None), ("title", ""),
        ("subtitle", ""), ("paper", ""), ("description", ""), ("add_timestamp", False),
        ("dirty_git", DirtyGitAction.WARN),
    ]
    assert not ConfigurationBase().id


def test_yaml_values_become_the_schema_types(tmp_path: Path) -> None:
    config, warnings = build(
        tmp_path,
        "id: a\nseeds: [1, 2]\nmodel: {layers: 4, pooling: max, dropout: 1}\n"
        "weights: {a: 1, b: 0.5}\noutput: out/x\ndirty_git: error\n",
    )
    assert warnings == []
    assert config.model == Model(layers=4, pooling=Pooling.MAX, dropout=1.0)
    assert isinstance(config.model.dropout, float)  # an int is a float
    assert config.weights == {"a": 1.0, "b": 0.5}
    assert config.output == Path("out/x")
    assert config.dirty_git is DirtyGitAction.ERROR


def test_command_line_values_take_the_schema_type(tmp_path: Path) -> None:
    config, _ = build(
        tmp_path, "id: a\nseeds: [1, 2]\nname: n\n",
        "name=123", "seeds.1=7", "seeds.2=8", "model.layers=5", "model.dropout=0.5", "id=2024",
    )
    assert config.name == "123" and config.id == "2024"  # text for str fields
    assert config.seeds == [1, 7, 8]  # an index replaces, the next one appends
    assert config.model.layers == 5 and config.model.dropout == 0.5
    config, _ = build(tmp_path, "id: a\n", "seeds=[3, 4]", "model.dropout=null")
    assert config.seeds == [3, 4] and config.model.dropout is None


def test_values_are_checked_as_2x_checks_them(tmp_path: Path) -> None:
    """Number text is a number (PyYAML reads 1e-4 as text; 2.7.0 takes it as a float), other
    mismatches are errors, all reported at once with their lines."""
    config, _ = build(tmp_path, "id: a\nseeds: ['3', 4.0]\nmodel: {dropout: 1e-4}\n")
    assert config.seeds == [3, 4] and config.model.dropout == 1e-4
    with pytest.raises(ConfigurationError) as error:
        build(tmp_path, "id: a\nseeds: [1, 2.5]\nmodel: {layers: three, pooling: min}\nname: 3\n"
              "weights: {a: true}\n")
    message = str(error.value)
    path = tmp_path / "xp.yaml"
    assert "5 errors in the configuration (Config)" in message
    assert f"{path}:2: seeds.1: expected int, got 2.5 (float)" in message
    assert f"{path}:3: model.layers: expected int, got 'three' (str)" in message
    assert f"{path}:3: model.pooling: expected one of 'mean', 'max', got 'min' (str)" in message
    assert f"{path}:4: name: expected str, got 3 (int)" in message
    assert f"{path}:5: weights.a: expected float, got True (bool)" in message


def test_merging_order_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.yaml").write_text(
        "id: base\nfile: code/xp\npythonpath: [lib]\nmodel: {layers: 1, dropout: 0.1}\nseeds: [1, 2, 3]\n"
    )
    (tmp_path / "pre.yaml").write_text("name: pre\nseeds: [9]\n")
    (tmp_path / "post.yaml").write_text("model: {layers: 3}\n")
    (tmp_path / "xp.yaml").write_text("imports: [sub/base.yaml]\nid: main\nseeds: [4]\n")
    merged = merge_configuration(
        tmp_path / "xp.yaml", [tmp_path / "pre.yaml"], [tmp_path / "post.yaml"], ["name=cli"]
    )
    data = merged.data
    assert data["id"] == "main" and data["name"] == "cli"
    assert data["seeds"] == [4]  # lists are replaced, not merged
    assert data["model"] == {"layers": 3, "dropout": 0.1}  # mappings merge deeply
    assert data["file"] == str((tmp_path / "sub" / "code" / "xp").resolve())
    assert merged.pythonpath == [(tmp_path / "sub" / "lib").resolve()]
    assert merged.origins[("model", "layers")] == f"{tmp_path / 'post.yaml'}:1"
    assert merged.origins[("model", "dropout")] == f"{tmp_path / 'sub' / 'base.yaml'}:4"
    assert merged.origins[("name",)] == "-c name=cli"
    assert "imports" not in data and "parent" not in data


def test_imports_in_a_cycle_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("imports: [b]\nid: a\n")
    (tmp_path / "b.yaml").write_text("parent: a.yaml\n")
    cycle = "YAML files import each other in a cycle: .*a.yaml -> .*b.yaml -> .*a.yaml"
    with pytest.raises(ConfigurationError, match=cycle):
        merge_configuration(tmp_path / "a.yaml")


def test_a_missing_import_names_the_importing_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("imports: [nothere.yaml]\nid: a\n")
    with pytest.raises(ConfigurationError, match=r"no YAML file .*nothere.yaml \(imported by .*a.yaml\)"):
        merge_configuration(tmp_path / "a.yaml")


def test_a_top_level_that_is_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigurationError, match=r"a.yaml:1: the top level must be a mapping"):
        merge_configuration(tmp_path / "a.yaml")


def test_helper_decorator_with_and_without_parentheses() -> None:
    calls = []

    class Helper(ExperimentHelper):
        def __init__(self, callable, label="none"):
            super().__init__(callable)
            self.label = label

    @Helper.decorator
    def run_a(helper, cfg):
        calls.append(("a", helper.label, cfg))

    @Helper.decorator(label="given")
    def run_b(helper, cfg):
        calls.append(("b", helper.label, cfg))

    assert isinstance(run_a, Helper) and isinstance(run_b, Helper)
    run_a.run([], 1)
    run_b.run([], 2)
    assert calls == [("a", "none", 1), ("b", "given", 2)]


def test_mock_modules_stand_ins() -> None:
    finder = mock_modules(["xpm_fake_torch"])
    try:
        import xpm_fake_torch
        import xpm_fake_torch.nn as nn
        from xpm_fake_torch.nn import functional

        @xpm_fake_torch.no_grad()
        def f(x):
            return x + 1

        @xpm_fake_torch.compile
        def g(x):
            return x * 2

        class Net(nn.Module, nn.Mixin):
            def __init__(self):
                super().__init__()
                self.layer = nn.Linear(3, 4)

        def typed(x: xpm_fake_torch.Tensor | None, y: xpm_fake_torch.Tensor[int]) -> None: ...

        assert f(1) == 2 and g(2) == 4
        assert isinstance(Net(), Net) and Net().layer is not None
        assert functional.relu(3) is not None
        assert "xpm_fake_torch.nn" in sys.modules
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.startswith("xpm_fake_torch")]:
            del sys.modules[name]
    with pytest.raises(ImportError):
        import xpm_fake_torch  # noqa: F401,F811 - real imports again once the finder is gone


def test_mock_modules_autograd_functions_and_the_2x_decorators_argument() -> None:
    with pytest.warns(DeprecationWarning, match="decorators=...\\) is not needed"):
        finder = mock_modules(["xpm_fake_torch2"], decorators=["xpm_fake_torch2.no_grad"])
    try:
        import xpm_fake_torch2

        class Double(xpm_fake_torch2.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return 2 * x

        assert Double.apply(3) is not None  # used as MyFunction.apply(...) in torch code
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.startswith("xpm_fake_torch2")]:
            del sys.modules[name]


def test_the_missing_id_names_the_main_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as error:
        build(tmp_path, "seeds: [1]\n")
    assert f"{tmp_path / 'xp.yaml'}: id: required field missing (Config.id, str)" in str(error.value)


# --- settings.yaml ---------------------------------------------------------------------------


@pytest.fixture
def config_dir(tmp_path: Path):
    from experimaestro.launcherfinder.registry import set_config_dir

    folder = tmp_path / "config"
    folder.mkdir()
    set_config_dir(folder)
    yield folder
    set_config_dir(None)


def test_settings_workspaces(config_dir: Path) -> None:
    from experimaestro.settings import find_workspace, get_settings, get_workspace

    (config_dir / "settings.yaml").write_text(
        "workspaces:\n"
        "  - id: first\n    path: ../ws1\n    env: {N: 1, S: text}\n"
        "  - id: second\n    path: /abs/ws2\n    triggers: ['nlp-*', 'ir-*']\n"
        "env: {A: 2}\n"
    )
    settings = get_settings()
    assert [w.id for w in settings.workspaces] == ["first", "second"]
    first = get_workspace("first")
    assert first.path == (config_dir.parent / "ws1").resolve()  # relative to settings.yaml
    assert first.env == {"N": "1", "S": "text"} and settings.env == {"A": "2"}  # numbers as text
    assert get_workspace() is first and get_workspace("nope") is None
    assert find_workspace(experiment_id="ir-bm25").id == "second"  # a trigger
    assert find_workspace(experiment_id="other").id == "first"  # else the first one
    assert find_workspace(workspace="second", workdir="/elsewhere").path == Path("/elsewhere")
    explicit = find_workspace(workdir="/w", experiment_id="ir-x")  # --workdir before triggers
    assert explicit.path == Path("/w") and explicit.id == ""


def test_settings_errors_name_key_and_line(config_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from experimaestro.settings import get_settings

    settings = config_dir / "settings.yaml"
    settings.write_text("workspaces:\n  - id: a\n    paht: /x\n")
    with pytest.raises(ConfigurationError) as error:
        get_settings()
    assert f"{settings}:2: workspaces.0.path: required field missing" in str(error.value)
    assert f"{settings}:3: unknown key 'workspaces.0.paht'" in caplog.text
