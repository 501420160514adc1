"""The launcher finder's file (2.x style): a local launcher running at most 3 jobs at once for
what fits a 4-core machine."""
from experimaestro.launcherfinder import CPUSpecification, HostSpecification
from experimaestro.launchers.direct import DirectLauncher

HOST = HostSpecification(cpu=CPUSpecification(cores=4, memory=8 * 1024**3))


def find_launcher(requirements, tags=frozenset()):
    if requirements.match(HOST):
        return DirectLauncher(3)
    return None
