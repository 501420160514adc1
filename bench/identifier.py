"""Identifier computation speed. Run from the repository root: ``python bench/identifier.py``.

Prints one JSON object:

* ``small_config_us``: µs per identifier of a small config (int, float and str parameters), over
  10,000 freshly built configs (only the identifier computation is timed);
* ``small_config_build_us``: µs per ``Small.C(...)`` for the same configs;
* ``list_1000_ms``: ms for the identifier of a config holding a list of 1,000 sub-configs (fresh,
  unsealed objects each repeat; median of 5);
* ``chain_10000_ms``: ms for the identifier of a 10,000-deep chain of configs (median of 5);
* ``python``, ``machine``: where it ran.

Targets: small_config_us <= 15, list_1000_ms <= 25.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experimaestro import Config, Param  # noqa: E402

SMALL_COUNT = 10_000
LIST_SIZE = 1_000
CHAIN_DEPTH = 10_000
REPEATS = 5


class Small(Config):
    n: Param[int]
    lr: Param[float]
    name: Param[str]


class Many(Config):
    items: Param[List[Small]]


class Link(Config):
    n: Param[int]
    previous: Param[Optional["Link"]] = None


def small_configs() -> tuple[float, float]:
    """(µs per build, µs per identifier) over SMALL_COUNT fresh configs."""
    start = time.perf_counter()
    configs = [Small.C(n=i, lr=0.001 * i, name=f"run-{i}") for i in range(SMALL_COUNT)]
    built = time.perf_counter()
    for cfg in configs:
        cfg.__xpm__.identifier
    done = time.perf_counter()
    return (built - start) / SMALL_COUNT * 1e6, (done - built) / SMALL_COUNT * 1e6


def median_ms(build: Callable[[], Config]) -> float:
    """Median over REPEATS of the identifier time of a freshly built graph, in ms."""
    times = []
    for _ in range(REPEATS):
        cfg = build()
        start = time.perf_counter()
        cfg.__xpm__.identifier
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def build_list() -> Config:
    return Many.C(items=[Small.C(n=i, lr=0.5, name="x") for i in range(LIST_SIZE)])


def build_chain() -> Config:
    link = Link.C(n=0)
    for i in range(1, CHAIN_DEPTH):
        link = Link.C(n=i, previous=link)
    return link


def main() -> None:
    # Warm up: class information, lazy annotations, code paths.
    Small.C(n=0, lr=0.0, name="").__xpm__.identifier
    build_list().__xpm__.identifier
    build_us, small_us = small_configs()
    result = {
        "small_config_us": round(small_us, 2),
        "small_config_build_us": round(build_us, 2),
        "list_1000_ms": round(median_ms(build_list), 2),
        "chain_10000_ms": round(median_ms(build_chain), 2),
        "python": platform.python_version(),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
