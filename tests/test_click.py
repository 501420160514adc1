"""experimaestro.click: configuration parameters forwarded as click options."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import pytest
from click.testing import CliRunner

from experimaestro import Config, Constant, Meta, Param, field, help
from experimaestro.click import arguments, forwardoption


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Model(Config):
    epochs: Param[int] = 100
    "Number of training epochs"

    batch_size: Param[int] = 32
    "Examples per batch"

    learning_rate: Param[Annotated[float, help("The step size")]] = 0.001
    name: Param[str] = "model"
    shuffle: Param[bool] = True
    "Shuffle the examples"

    output: Meta[Path] = Path("out")
    color: Param[Color] = Color.GREEN
    "Which color"

    layers: Param[list[int]] = field(default_factory=lambda: [64, 32])
    "Layer sizes"

    seed: Param[Optional[int]] = None
    dataset: Param[str]
    "Where the data comes from"

    version: Constant[int] = 2


def run(command: click.Command, *args: str) -> click.testing.Result:
    return CliRunner().invoke(command, list(args), catch_exceptions=False)


def echo_params(**kwargs: Any) -> None:
    """A command body printing what it received, as JSON (enum members by name)."""
    click.echo(
        json.dumps(
            {
                k: (v.name if isinstance(v, enum.Enum) else str(v) if isinstance(v, Path) else v)
                for k, v in kwargs.items()
            }
        )
    )


def command(*decorators: Any) -> click.Command:
    fn = echo_params
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return click.command()(fn)


def option_of(cmd: click.Command, name: str) -> click.Option:
    (option,) = [p for p in cmd.params if p.name == name]
    assert isinstance(option, click.Option)
    return option


# --- arguments() -------------------------------------------------------------------------------


def test_arguments_gives_the_declared_parameters() -> None:
    args = arguments(Model)
    assert args.epochs.name == "epochs"
    assert args.epochs.default == 100
    assert args.epochs.help == "Number of training epochs"
    assert args.learning_rate.help == "The step size"
    assert args.dataset.required
    assert "batch_size" in dir(args)


def test_arguments_unknown_attribute_names_class_and_parameters() -> None:
    with pytest.raises(AttributeError) as info:
        arguments(Model).epoch
    message = str(info.value)
    assert "Model has no parameter 'epoch'" in message
    assert "epochs" in message and "batch_size" in message


def test_arguments_rejects_non_config() -> None:
    with pytest.raises(TypeError, match="configuration class"):
        arguments(int)  # type: ignore[arg-type]


# --- forwardoption() -----------------------------------------------------------------------------


def test_int_option_with_default_and_help() -> None:
    cmd = command(forwardoption(arguments(Model).epochs))
    option = option_of(cmd, "epochs")
    assert option.opts == ["--epochs"]
    assert option.type is click.INT
    assert option.default == 100
    assert not option.required
    assert json.loads(run(cmd).output) == {"epochs": 100}
    assert json.loads(run(cmd, "--epochs", "7").output) == {"epochs": 7}
    result = CliRunner().invoke(cmd, ["--epochs", "many"])
    assert result.exit_code == 2 and "'many' is not a valid integer" in result.output


def test_help_text_shows_help_and_default() -> None:
    cmd = command(
        forwardoption(arguments(Model).epochs), forwardoption(arguments(Model).learning_rate)
    )
    output = " ".join(run(cmd, "--help").output.split())
    assert "--epochs INTEGER Number of training epochs [default: 100]" in output
    assert "--learning-rate FLOAT The step size [default: 0.001]" in output


def test_underscores_become_dashes() -> None:
    cmd = command(forwardoption(arguments(Model).batch_size))
    assert option_of(cmd, "batch_size").opts == ["--batch-size"]
    assert json.loads(run(cmd, "--batch-size", "8").output) == {"batch_size": 8}


def test_renamed_option_and_function_parameter() -> None:
    cmd = command(forwardoption(arguments(Model).epochs, "--n-epochs"))
    option = option_of(cmd, "n_epochs")
    assert option.opts == ["--n-epochs"]
    assert option.help == "Number of training epochs"
    assert json.loads(run(cmd, "--n-epochs", "3").output) == {"n_epochs": 3}


def test_click_keyword_arguments_override() -> None:
    cmd = command(forwardoption(arguments(Model).epochs, help="Other help", default=5))
    assert option_of(cmd, "epochs").help == "Other help"
    assert json.loads(run(cmd).output) == {"epochs": 5}


def test_float_and_str_types() -> None:
    cmd = command(
        forwardoption(arguments(Model).learning_rate), forwardoption(arguments(Model).name)
    )
    assert option_of(cmd, "learning_rate").type is click.FLOAT
    assert option_of(cmd, "name").type is click.STRING
    assert json.loads(run(cmd, "--learning-rate", "0.5", "--name", "x").output) == {
        "learning_rate": 0.5,
        "name": "x",
    }


def test_bool_is_a_flag_pair() -> None:
    cmd = command(forwardoption(arguments(Model).shuffle))
    option = option_of(cmd, "shuffle")
    assert option.opts == ["--shuffle"] and option.secondary_opts == ["--no-shuffle"]
    assert json.loads(run(cmd).output) == {"shuffle": True}
    assert json.loads(run(cmd, "--no-shuffle").output) == {"shuffle": False}
    assert "--shuffle / --no-shuffle" in run(cmd, "--help").output


def test_renamed_bool_flag() -> None:
    cmd = command(forwardoption(arguments(Model).shuffle, "--mix"))
    option = option_of(cmd, "mix")
    assert option.opts == ["--mix"] and option.secondary_opts == ["--no-mix"]
    assert json.loads(run(cmd, "--no-mix").output) == {"mix": False}


def test_path_option() -> None:
    cmd = command(forwardoption(arguments(Model).output))
    option = option_of(cmd, "output")
    assert isinstance(option.type, click.Path)
    received: list[Any] = []
    cmd.callback = lambda output: received.append(output)  # type: ignore[assignment]
    run(cmd, "--output", "a/b")
    run(cmd)
    assert received == [Path("a/b"), Path("out")]


def test_enum_is_a_choice_of_member_names() -> None:
    cmd = command(forwardoption(arguments(Model).color))
    option = option_of(cmd, "color")
    assert list(option.type.choices) == ["RED", "GREEN"]  # type: ignore[attr-defined]
    received: list[Any] = []
    cmd.callback = lambda color: received.append(color)  # type: ignore[assignment]
    run(cmd, "--color", "RED")
    run(cmd)
    assert received == [Color.RED, Color.GREEN]
    result = CliRunner().invoke(cmd, ["--color", "BLUE"])
    assert result.exit_code == 2 and "'BLUE' is not one of 'RED', 'GREEN'" in result.output
    assert "[default: GREEN]" in run(cmd, "--help").output


def test_list_is_a_multiple_option() -> None:
    cmd = command(forwardoption(arguments(Model).layers))
    option = option_of(cmd, "layers")
    assert option.multiple and option.type is click.INT
    assert json.loads(run(cmd).output) == {"layers": [64, 32]}
    assert json.loads(run(cmd, "--layers", "1", "--layers", "2").output) == {"layers": [1, 2]}


def test_optional_parameter_is_not_required() -> None:
    cmd = command(forwardoption(arguments(Model).seed))
    option = option_of(cmd, "seed")
    assert option.type is click.INT and not option.required
    assert json.loads(run(cmd).output) == {"seed": None}


def test_parameter_without_default_is_required() -> None:
    cmd = command(forwardoption(arguments(Model).dataset))
    assert option_of(cmd, "dataset").required
    result = CliRunner().invoke(cmd, [])
    assert result.exit_code == 2 and "Missing option '--dataset'" in result.output
    assert "Where the data comes from" in run(cmd, "--help").output


def test_constant_cannot_be_an_option() -> None:
    with pytest.raises(TypeError, match="Model.version is a Constant"):
        forwardoption(arguments(Model).version)


def test_unsupported_type_is_refused() -> None:
    class Outer(Config):
        model: Param[Model]

    with pytest.raises(TypeError, match="Outer.model: a parameter of type Model cannot be"):
        forwardoption(arguments(Outer).model)
