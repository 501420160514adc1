"""The requirement grammar and matching (experimaestro.launcherfinder.parser / specs)."""

from __future__ import annotations

import pytest

from experimaestro.launcherfinder import (
    AcceleratorSpecification,
    CPUSpecification,
    CudaSpecification,
    HostSpecification,
    MPSSpecification,
    RequirementSyntaxError,
    cpu,
    cuda_gpu,
    duration,
    parse,
)
from experimaestro.launcherfinder.units import parse_duration, parse_size

GiB = 1024**3


def test_the_issue_example_parses_into_two_alternatives() -> None:
    union = parse("duration=4h & cuda(mem=16G)*2 | cpu(cores=4, mem=8G)")
    first, second = union.requirements
    assert first.duration == 4 * 3600
    assert [type(a) for a in first.accelerators] == [CudaSpecification, CudaSpecification]
    assert [a.memory for a in first.accelerators] == [16 * 10**9] * 2
    assert (first.cpu.cores, first.cpu.memory) == (0, 0)
    assert (second.cpu.cores, second.cpu.memory, second.duration) == (4, 8 * 10**9, 0)
    assert second.accelerators == []
    assert str(union) == "duration=4h & cuda(mem=16G)*2 | cpu(cores=4, mem=8G)"


@pytest.mark.parametrize(
    "text, seconds",
    [("30s", 30), ("90m", 5400), ("4h", 14400), ("2d", 172800), ("4 days", 345600),
     ("1 hour", 3600), ("10 mins", 600), ("1.5h", 5400), ("2H", 7200)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse(f"duration={text}").requirements[0].duration == seconds
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text, size",
    [("16G", 16 * 10**9), ("16GB", 16 * 10**9), ("16GiB", 16 * GiB), ("512M", 512 * 10**6),
     ("512MiB", 512 * 2**20), ("1.5GiB", 3 * GiB // 2), ("1.5G", 1_500_000_000),
     ("2T", 2 * 10**12), ("4KiB", 4096), ("100B", 100), ("16g", 16 * 10**9), ("8 GiB", 8 * GiB)],
)
def test_sizes_are_exact_decimal_or_binary(text: str, size: int) -> None:
    assert parse(f"cuda(mem={text})").requirements[0].accelerators[0].memory == size
    assert parse(f"cpu(mem={text})").requirements[0].cpu.memory == size
    assert parse_size(text) == size


def test_terms_combine_within_an_alternative() -> None:
    (req,) = parse(
        " duration = 2h & cpu(mem=4G) & cpu(cores=8) & cuda(mem=8G) & cuda(mem=24G) * 2 "
        "& duration=1d & gpu() & mps(mem=1G)"
    ).requirements
    assert req.duration == 86400  # the largest
    assert (req.cpu.cores, req.cpu.memory) == (8, 4 * 10**9)
    # all accelerators, largest memory first
    assert [(type(a).__name__, a.memory) for a in req.accelerators] == [
        ("CudaSpecification", 24 * 10**9), ("CudaSpecification", 24 * 10**9),
        ("CudaSpecification", 8 * 10**9), ("MPSSpecification", 10**9),
        ("AcceleratorSpecification", 0),
    ]
    assert len(req.cuda_gpus) == 3


def test_cpu_without_cores_asks_for_one_core() -> None:
    assert parse("cpu(mem=1G)").requirements[0].cpu.cores == 1
    assert parse("cpu()").requirements[0].cpu.cores == 1


def test_the_python_builders_give_what_the_grammar_gives() -> None:
    built = duration("4h") & cuda_gpu(mem="16G") * 2 | cpu(cores=4, mem="8G")
    assert repr(built) == repr(parse("duration=4h & cuda(mem=16G)*2 | cpu(cores=4, mem=8G)"))


@pytest.mark.parametrize(
    "text, position, expected",
    [
        ("cuda(mem=16)*2", 11, "expected a size unit after '16'"),
        ("cuda(mem=16X)", 11, "expected a size unit after '16'"),
        ("duration=4", 10, "expected a duration unit after '4'"),
        ("duration=4 weeks", 11, "expected a duration unit after '4'"),
        ("duration 4h", 9, "expected '=' after 'duration'"),
        ("cpu(cores=4", 11, "expected ',' or ')' in cpu(...)"),
        ("cpu(cores=4, gpus=2)", 13, "expected cores= or mem= in cpu(...)"),
        ("cpu(cores=2, cores=4)", 13, "cores= is given twice in cpu(...)"),
        ("cpu(cores=0)", 10, "cores must be at least 1"),
        ("cpu(cores=1.5)", 11, "expected ',' or ')' in cpu(...)"),
        ("cuda(mem=4G)*0", 13, "the number of cuda GPUs must be at least 1"),
        ("cuda(mem=4G)*", 13, "expected a whole number (the number of cuda GPUs)"),
        ("cuda(cores=2)", 5, "expected mem= in cuda(...)"),
        ("cuda mem=4G", 5, "expected '(' after 'cuda'"),
        ("cuda(mem=4G) |", 14, "expected duration=..., cpu(...), cuda(...), gpu(...) or mps(...)"),
        ("cuda(mem=4G) && cpu()", 14, "expected duration=..., cpu(...)"),
        ("cuda(mem=4G) cpu()", 13, "expected '&', '|' or the end"),
        ("tpu(mem=4G)", 0, "expected duration=..., cpu(...)"),
        ("", 0, "expected duration=..., cpu(...)"),
    ],
)
def test_a_malformed_string_shows_where_parsing_stopped(
    text: str, position: int, expected: str
) -> None:
    with pytest.raises(RequirementSyntaxError) as caught:
        parse(text)
    error = caught.value
    assert error.position == position
    assert expected in error.expected
    lines = str(error).splitlines()
    assert lines[0] == f"invalid requirement at character {position + 1}: {error.expected}"
    assert lines[1] == f"  {text}"
    assert lines[2] == "  " + " " * position + "^"


def test_python_builders_refuse_a_size_without_unit() -> None:
    with pytest.raises(ValueError, match=r"'16' is not a size: .*'16G'"):
        cuda_gpu(mem="16")
    with pytest.raises(ValueError, match="unknown duration unit 'weeks'"):
        duration("2 weeks")


# --- matching: requirements.match(HostSpecification(...))

GPU_HOST = HostSpecification(
    cpu=CPUSpecification(cores=32, memory=128 * GiB),
    cuda=[CudaSpecification(memory=24 * GiB) for _ in range(4)],
    max_duration=48 * 3600,
)


@pytest.mark.parametrize(
    "spec, fits",
    [
        ("cuda(mem=16G)*4", True),
        ("cuda(mem=16G)*5", False),          # more GPUs than the host has
        ("cuda(mem=24GiB)", True),
        ("cuda(mem=25G)", True),             # 25 * 10**9 < 24 GiB
        ("cuda(mem=25GiB)", False),
        ("gpu(mem=8G)*2", True),             # gpu() takes any type
        ("mps(mem=8G)", False),              # an MPS requirement needs an MPS host
        ("cpu(cores=32, mem=128GiB)", True),
        ("cpu(cores=33)", False),
        ("cpu(mem=129GiB)", False),
        ("duration=2d", True),
        ("duration=49h", False),             # beyond max_duration
    ],
)
def test_matching_rules(spec: str, fits: bool) -> None:
    assert (parse(spec).match(GPU_HOST) is not None) is fits


def test_a_host_without_gpus_does_not_serve_gpu_requests_nor_cpu_ones_beyond_it() -> None:
    laptop = HostSpecification(cuda=[])  # as 2.x launchers.py write it: no CPU given = 0 cores
    assert parse("duration=1h").match(laptop) is not None
    assert parse("cuda(mem=1G)").match(laptop) is None
    assert parse("cpu(cores=1)").match(laptop) is None


def test_min_gpu_and_min_memory_keep_small_requests_off_big_hosts() -> None:
    big = HostSpecification(
        cpu=CPUSpecification(cores=8, memory=64 * GiB), min_gpu=1,
        cuda=[CudaSpecification(memory=80 * GiB, min_memory=40 * GiB)],
    )
    assert parse("cpu(cores=1)").match(big) is None            # no GPU asked: min_gpu=1
    assert parse("cuda(mem=16G)").match(big) is None           # below min_memory
    assert parse("cuda(mem=48G)").match(big) is not None


def test_unified_memory_counts_gpu_memory_against_the_host_memory() -> None:
    mac = HostSpecification(
        cpu=CPUSpecification(cores=8, memory=32 * GiB), accelerators=[MPSSpecification(memory=32 * GiB)]
    )
    assert parse("mps(mem=16GiB) & cpu(mem=16GiB)").match(mac) is not None
    assert parse("mps(mem=16GiB) & cpu(mem=17GiB)").match(mac) is None
    assert parse("cuda(mem=1G)").match(mac) is None
    assert parse("gpu(mem=1G)").match(mac) is not None


def test_the_first_alternative_that_fits_is_returned_with_the_host_priority() -> None:
    union = parse("cuda(mem=48G)*2 | cuda(mem=16G)*2 & duration=4h | cpu(cores=2)")
    host = HostSpecification(
        cpu=CPUSpecification(cores=32, memory=128 * GiB), priority=3,
        accelerators=[CudaSpecification(memory=24 * GiB)] * 2,
    )
    match = union.match(host)
    assert match is not None and match.score == 3
    assert match.requirement is union.requirements[1]
    assert union.last_match is match and union.last_host is host


def test_host_specification_merges_cuda_into_accelerators_largest_first() -> None:
    host = HostSpecification(
        accelerators=[AcceleratorSpecification(memory=8 * GiB)],
        cuda=[CudaSpecification(memory=4 * GiB), CudaSpecification(memory=16 * GiB)],
    )
    assert [a.memory for a in host.accelerators] == [16 * GiB, 8 * GiB, 4 * GiB]
    assert host.cuda == []


def test_multiply_duration_rounds_up_and_copies() -> None:
    union = parse("duration=1h & cuda(mem=4G) | duration=3s")
    doubled = union.multiply_duration(1.5)
    assert [r.duration for r in doubled.requirements] == [5400, 5]
    assert [r.duration for r in union.requirements] == [3600, 3]
    assert len(doubled.requirements[0].accelerators) == 1
