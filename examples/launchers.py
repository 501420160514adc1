"""An example ``launchers.py``: copy it to ~/.config/experimaestro/ (or to the workspace) on the
cluster's login node, and adapt the hosts to your cluster.

``find_launcher(requirements, tags)`` is called by ``experimaestro.find_launcher(...)`` with the
parsed requirement; it asks ``requirements.match(host)`` for each kind of host it knows, best first,
and returns a launcher for the first that fits, or None (then the local launcher is used). The file
is written as for experimaestro 2.x: the same file works with both.
"""

import math
from typing import AbstractSet

from experimaestro.launcherfinder import (
    CPUSpecification,
    CudaSpecification,
    HostRequirement,
    HostSpecification,
)
from experimaestro.launchers.direct import DirectLauncher

GiB = 1024**3

# The cluster's GPU nodes: 4 GPUs with 24 GiB each, 32 cores, 128 GiB, jobs of at most 2 days.
GPU_NODE = HostSpecification(
    cpu=CPUSpecification(cores=32, memory=128 * GiB),
    cuda=[CudaSpecification(memory=24 * GiB) for _ in range(4)],
    max_duration=2 * 24 * 3600,
    priority=1,
)

# The login node itself: small CPU-only work runs there, 2 jobs at once.
LOGIN_NODE = HostSpecification(cpu=CPUSpecification(cores=2, memory=4 * GiB))


def find_launcher(requirements: HostRequirement, tags: AbstractSet[str] = frozenset()):
    """A Slurm launcher on the GPU partition for GPU work, the login node for small CPU work."""
    if match := requirements.match(GPU_NODE):
        wanted = match.requirement
        if wanted.cuda_gpus:
            # Imported here: this file also serves (CPU only) where Slurm is not installed.
            from experimaestro.launchers.slurm import SlurmLauncher, SlurmOptions

            return SlurmLauncher(
                options=SlurmOptions(
                    partition="gpu",
                    gpus_per_node=len(wanted.cuda_gpus),
                    # Slurm takes minutes and megabytes as numbers.
                    time=math.ceil(wanted.duration / 60) if wanted.duration else None,
                    mem=math.ceil(wanted.cpu.memory / 2**20) if wanted.cpu.memory else None,
                ),
            )

    if requirements.match(LOGIN_NODE):
        return DirectLauncher(max_jobs=2)

    return None  # nothing fits: experimaestro uses the local launcher and says so
