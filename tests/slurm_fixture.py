"""Temporary: the Slurm cluster of the tests, until slurm-test's fixtures land."""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest


def slurm_launcher_factory() -> Callable[..., Any]:
    """``make(**kwargs)``: a SlurmLauncher of the test cluster that polls fast; skips without one."""
    conf = os.environ.get("XPM_TEST_SLURM_CONF")
    if not conf:
        pytest.skip("no Slurm cluster (XPM_TEST_SLURM_CONF)")
    from experimaestro.launchers.slurm import SlurmLauncher

    def make(**kwargs: Any) -> SlurmLauncher:
        kwargs.setdefault("poll_interval", 0.1)
        kwargs.setdefault("max_poll_interval", 0.5)
        return SlurmLauncher(slurm_conf=conf, **kwargs)

    return make
