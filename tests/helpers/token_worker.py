"""A subprocess program for tests/test_tokens.py: holds a token, or loops acquiring one.

Usage:
    token_worker.py hold WORKSPACE NAME TOTAL COUNT KEY JOB_PREFIX
        Acquire COUNT units for job KEY (this process is the controller), print "ACQUIRED" (or
        "REFUSED" and exit 1), then sleep until killed (at most 60 s).
    token_worker.py loop WORKSPACE NAME TOTAL ITERATIONS LOG WORKER_ID JOB_DIR
        ITERATIONS times: acquire 1 unit (retrying every 2 ms, 20 s deadline), append
        "enter <id> <time>" to LOG, stay 20 ms, append "exit <id> <time>", release.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from polling import poll, work

from experimaestro.scheduler.tokens import (
    CounterToken,
    HolderInfo,
    TokenStore,
    acquire_all,
    release_all,
)


def _append(fd: int, line: str) -> None:
    os.write(fd, line.encode())  # one write on an O_APPEND fd: lines never interleave


def hold(workspace: str, name: str, total: str, count: str, key: str, job_prefix: str) -> int:
    store = TokenStore.open(Path(workspace), CounterToken(name, int(total)))
    if not acquire_all([(store, int(count))], HolderInfo.current_process(key, job_prefix)):
        print("REFUSED", flush=True)
        return 1
    print("ACQUIRED", flush=True)
    threading.Event().wait(60)  # hold the units until the test kills this process (60 s at most)
    return 0


def loop(
    workspace: str, name: str, total: str, iterations: str, log: str, worker: str, job_dir: str
) -> int:
    store = TokenStore.open(Path(workspace), CounterToken(name, int(total)))
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for i in range(int(iterations)):
        key = f"w{worker}-{i}"
        holder = HolderInfo.current_process(key, str(Path(job_dir) / key))
        try:
            poll(lambda h=holder: acquire_all([(store, 1)], h), timeout=20, interval=0.002)
        except TimeoutError:
            return 2
        _append(fd, f"enter {worker} {time.monotonic()}\n")
        work(0.02)  # the critical section
        _append(fd, f"exit {worker} {time.monotonic()}\n")
        release_all([store], key)
    os.close(fd)
    return 0


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    sys.exit({"hold": hold, "loop": loop}[mode](*args))
