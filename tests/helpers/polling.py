"""Waiting in tests and in test jobs: on a condition with a deadline, never a fixed time.

Imported by the test process (conftest), by controllers and by job processes (helpers on their
PYTHONPATH), so it depends on nothing but the standard library.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

#: How often a condition is checked.
INTERVAL = 0.01


def poll(predicate: Callable[[], T], timeout: float, interval: float = INTERVAL) -> T:
    """The first true value of ``predicate()``; raises TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def work(seconds: float) -> None:
    """Simulated work of a test job: it lasts ``seconds`` (this is not waiting for anything)."""
    time.sleep(seconds)
