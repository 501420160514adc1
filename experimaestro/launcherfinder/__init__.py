"""The launcher finder: one script, run on a laptop or a cluster, picks its launchers from what
its jobs need (``find_launcher("duration=4h & cuda(mem=16G)*2 | cpu(cores=4, mem=8G)")``).

The names of experimaestro 2.x's ``experimaestro.launcherfinder`` that ``launchers.py`` files use
are here: requirements (``HostRequirement``, ``cpu``, ``cuda_gpu``, ``duration``...), host
specifications (``HostSpecification``, ``CPUSpecification``, ``CudaSpecification``...), ``parse``
and ``find_launcher``. See docs/launchers.md.
"""

from .parser import RequirementSyntaxError, parse
from .registry import (
    LauncherChoice,
    LauncherConfigError,
    LauncherRegistry,
    explain_launcher,
    find_launcher,
    set_config_dir,
)
from .specs import (
    AcceleratorSpecification,
    AcceleratorType,
    CPUSpecification,
    CudaSpecification,
    HostRequirement,
    HostSimpleRequirement,
    HostSpecification,
    MatchRequirement,
    MPSSpecification,
    RequirementUnion,
    cpu,
    cuda_gpu,
    duration,
    gpu,
    mps_gpu,
)

__all__ = [
    "AcceleratorSpecification",
    "AcceleratorType",
    "CPUSpecification",
    "CudaSpecification",
    "HostRequirement",
    "HostSimpleRequirement",
    "HostSpecification",
    "LauncherChoice",
    "LauncherConfigError",
    "LauncherRegistry",
    "MPSSpecification",
    "MatchRequirement",
    "RequirementSyntaxError",
    "RequirementUnion",
    "cpu",
    "cuda_gpu",
    "duration",
    "explain_launcher",
    "find_launcher",
    "gpu",
    "mps_gpu",
    "parse",
    "set_config_dir",
]
