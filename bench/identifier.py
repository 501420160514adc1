"""Identifier computation speed. Run from the repository root:

    .venv/bin/python bench/identifier.py [--tiny] [--compare-python /tmp/xpm270/bin/python]

Prints one JSON object:

* ``small_config_us``: µs per identifier of a small config (int, float and str parameters), over
  10,000 freshly built configs (only the identifier computation is timed);
* ``small_config_build_us``: µs per ``Small.C(...)`` for the same configs;
* ``list_1000_ms``: ms for the identifier of a config holding a list of 1,000 sub-configs (fresh,
  unsealed objects each repeat; median of 5);
* ``chain_10000_ms``: ms for the identifier of a 10,000-deep chain of configs (median of 5);
* ``python``, ``machine``: where it ran.

``--tiny`` runs the same measurements on small sizes (a test runs it, so that the script keeps
working). ``--compare-python PY`` runs this script again with the Python ``PY`` (for instance a venv
with experimaestro 2.7.0 installed), importing the experimaestro installed there (only the public
``Config``/``Param``/``.C()``/``__xpm__.identifier`` API is used), and adds its figures under
``compare``; an error there (2.7.0 cannot hash a 10,000-deep chain) is reported as such.

Targets: small_config_us <= 15, list_1000_ms <= 25.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Union

if "--installed" not in sys.argv:  # by default, the experimaestro of this repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experimaestro import Config, Param  # noqa: E402

SMALL_COUNT = 10_000
LIST_SIZE = 1_000
CHAIN_DEPTH = 10_000
REPEATS = 5
#: The sizes of ``--tiny``.
TINY = {"SMALL_COUNT": 200, "LIST_SIZE": 50, "CHAIN_DEPTH": 200, "REPEATS": 2}


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


def _attempt(measure: Callable[[], float]) -> Union[float, str]:
    """The measure rounded, or the error it raised (as ``"RecursionError: ..."``)."""
    try:
        return round(measure(), 2)
    except (RecursionError, MemoryError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:120]}"


def measure() -> dict:
    """Every figure of this benchmark, with the experimaestro this interpreter imported."""
    import experimaestro

    # Warm up: class information, lazy annotations, code paths.
    Small.C(n=0, lr=0.0, name="").__xpm__.identifier
    build_list().__xpm__.identifier
    build_us, small_us = small_configs()
    return {
        "small_config_us": round(small_us, 2),
        "small_config_build_us": round(build_us, 2),
        "list_1000_ms": round(median_ms(build_list), 2),
        "chain_10000_ms": _attempt(lambda: median_ms(build_chain)),
        "experimaestro": _version(experimaestro),
        "python": platform.python_version(),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "sizes": {"small": SMALL_COUNT, "list": LIST_SIZE, "chain": CHAIN_DEPTH,
                  "repeats": REPEATS},
    }


def _version(module: object) -> str:
    """The installed version of experimaestro, or where it was imported from."""
    try:
        from importlib.metadata import version

        return version("experimaestro")
    except Exception:  # not installed: the repository's sources
        return f"sources at {Path(getattr(module, '__file__', '?')).parent}"


def compare(python: str, tiny: bool) -> dict:
    """Run this script with another Python (and the experimaestro installed there)."""
    cmd = [python, str(Path(__file__).resolve()), "--installed"] + (["--tiny"] if tiny else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"python_path": python, "error": f"{type(exc).__name__}: {exc}"}
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            return {"python_path": python, **json.loads(line)}
        except ValueError:
            continue
    return {"python_path": python, "error": f"exit code {proc.returncode}",
            "stderr_tail": proc.stderr[-1500:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="small sizes (seconds in all)")
    ap.add_argument("--compare-python", metavar="PYTHON",
                    help="also measure with this Python's installed experimaestro")
    ap.add_argument("--installed", action="store_true",
                    help="import the installed experimaestro, not this repository's")
    args = ap.parse_args()
    if args.tiny:
        globals().update(TINY)
    result = measure()
    if args.compare_python:
        result["compare"] = compare(args.compare_python, args.tiny)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
