"""Fixtures that make SlurmLaunchers of the test clusters (a pytest plugin, loaded by conftest.py).

- ``slurm_launcher``: ``make(**kwargs)`` builds a launcher of ``slurm_env``'s cluster (each profile in
  turn: with and without accounting), polling fast so that tests end quickly.
- ``plain_slurm_launcher``: the same on the cluster without accounting only (tests whose subject
  does not depend on accounting, and the slow ones).
- ``cgroup_slurm_launcher``: on the cluster with cgroups (``--mem`` enforced).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest


def _factory(conf: str) -> Callable[..., Any]:
    from experimaestro.launchers.slurm import SlurmLauncher

    def make(**kwargs: Any) -> SlurmLauncher:
        kwargs.setdefault("poll_interval", 0.1)
        kwargs.setdefault("max_poll_interval", 0.5)
        kwargs.setdefault("marker_grace", 1.0)  # local files: a marker is visible at once
        return SlurmLauncher(slurm_conf=conf, **kwargs)

    return make


@pytest.fixture
def slurm_launcher(slurm_env: Any) -> Callable[..., Any]:
    return _factory(str(slurm_env.conf))


@pytest.fixture
def plain_slurm_launcher(slurm_plain: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.setenv("SLURM_CONF", str(slurm_plain.conf))
    return _factory(str(slurm_plain.conf))


@pytest.fixture
def cgroup_slurm_launcher(slurm_cgroup: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """On the cluster with cgroups (``--mem`` enforced: OUT_OF_MEMORY)."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cgroup.conf))
    return _factory(str(slurm_cgroup.conf))
