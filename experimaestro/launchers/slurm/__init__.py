"""The Slurm launcher: ``from experimaestro.launchers.slurm import SlurmLauncher, SlurmOptions``."""

from .commands import SlurmCommandError
from .launcher import SlurmLauncher, SlurmLauncherError, attach_record, from_spec, record_alive
from .options import SlurmOptionError, SlurmOptions

__all__ = [
    "SlurmCommandError",
    "SlurmLauncher",
    "SlurmLauncherError",
    "SlurmOptionError",
    "SlurmOptions",
    "attach_record",
    "from_spec",
    "record_alive",
]
