"""SlurmOptions: checked when built, normalised to sbatch's forms (no cluster needed)."""

from __future__ import annotations

import pytest

from experimaestro.launchers.slurm import SlurmLauncher, SlurmOptionError, SlurmOptions
from experimaestro.launchers.slurm.options import parse_time


@pytest.mark.parametrize(
    "given, expected",
    [
        ("4h", "4:00:00"), ("90m", "1:30:00"), ("1h30m", "1:30:00"), ("45s", "0:00:45"),
        ("2d", "2-0:00:00"), ("1d12h", "1-12:00:00"), (240, "4:00:00"),
        ("30", "30"), ("10:00", "10:00"), ("4:00:00", "4:00:00"), ("1-12", "1-12"),
        ("2-04:30:00", "2-04:30:00"),
    ],
)
def test_time_forms(given: object, expected: str) -> None:
    assert SlurmOptions(time=given).time == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["4 hours", "4hours", "", "h", "-1", 0, -5, 1.5, True, "4h30"])
def test_bad_time_names_the_option_and_the_forms(bad: object) -> None:
    with pytest.raises(SlurmOptionError) as info:
        SlurmOptions(time=bad)  # type: ignore[arg-type]
    message = str(info.value)
    assert f"time={bad!r}" in message
    assert '"4h"' in message and "HH:MM:SS" in message


@pytest.mark.parametrize(
    "given, expected", [("16G", "16G"), ("16g", "16G"), ("16GB", "16G"), ("512M", "512M"),
                        (2048, "2048M"), ("1T", "1T"), ("100", "100M")],
)
def test_memory_forms(given: object, expected: str) -> None:
    assert SlurmOptions(mem=given).mem == expected  # type: ignore[arg-type]
    assert SlurmOptions(mem_per_gpu=given).mem_per_gpu == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "option, bad, fragment",
    [
        ("mem", "16 GB", "16G"), ("mem", "lots", "16G"), ("mem", 0, "16G"),
        ("nodes", 0, "int >= 1"), ("cpus_per_task", "4", "int >= 1"),
        ("gpus_per_node", -1, "int >= 0"), ("partition", "gpu debug", "partition name"),
        ("qos", "", "QOS name"), ("account", "a;b", "account name"),
        ("exclude", ["node1", "bad node"], "node names"),
        ("extra", ["mail-type=END"], "--flag=value"), ("extra", ["--a\n--b"], "--flag=value"),
        ("constraint", "", "node features"),
    ],
)
def test_bad_values_name_the_option(option: str, bad: object, fragment: str) -> None:
    with pytest.raises(SlurmOptionError) as info:
        SlurmOptions(**{option: bad})
    assert f"SlurmOptions({option}=" in str(info.value)
    assert fragment in str(info.value)


def test_mem_and_mem_per_gpu_exclude_each_other() -> None:
    with pytest.raises(SlurmOptionError, match="only one of them"):
        SlurmOptions(mem="16G", mem_per_gpu="8G")


def test_flags_in_a_stable_order() -> None:
    options = SlurmOptions(
        time="4h", gpus_per_node="a100:2", mem="16G", partition="gpu", qos="high", account="lab",
        constraint="a100|v100", exclude=["n1", "n2"], nodes=1, cpus_per_task=4,
        extra=["--mail-type=END", "--exclusive"],
    )
    assert options.sbatch_flags() == [
        "--nodes=1", "--time=4:00:00", "--cpus-per-task=4", "--mem=16G", "--gpus-per-node=a100:2",
        "--partition=gpu", "--qos=high", "--account=lab", "--constraint=a100|v100",
        "--exclude=n1,n2", "--mail-type=END", "--exclusive",
    ]
    assert SlurmOptions().sbatch_flags() == []
    assert options.merge(time="1h").time == "1:00:00"


def test_launcher_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="SlurmOptions"):
        SlurmLauncher(options={"time": "4h"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_jobs"):
        SlurmLauncher(max_jobs=0)
    with pytest.raises(ValueError, match="one per item"):
        SlurmLauncher(setup=["a\nb"])


def test_parse_time_is_the_one_used() -> None:
    assert parse_time("1d") == "1-0:00:00"
