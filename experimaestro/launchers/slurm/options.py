"""SlurmOptions: the sbatch resources of a job, checked when they are built.

A bad value is an error at the user's line, naming the option and the accepted forms, instead of an
``sbatch: error`` at submission time. Values are normalised to the form sbatch takes
(``time="4h"`` -> ``--time=4:00:00``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Optional, Sequence, Union

_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_COMPACT = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
# Slurm's own forms: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
_SLURM_TIME = re.compile(r"^(?:\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+(?::\d{1,2}(?::\d{1,2})?)?)$")
_SIZE = re.compile(r"^(\d+)([KMGT]?)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_.\-:+@\[\],]+$")

TIME_FORMS = (
    'a duration such as "4h", "90m", "1h30m", "2d", "45s", minutes as an int (240), '
    'or Slurm\'s "MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM:SS"'
)
SIZE_FORMS = 'a size such as "16G", "512M", "1T", or megabytes as an int (16384)'


class SlurmOptionError(ValueError):
    """A Slurm option has a value sbatch would not accept."""


def _fail(option: str, value: object, forms: str) -> SlurmOptionError:
    return SlurmOptionError(f"SlurmOptions({option}={value!r}): give {forms}")


def parse_time(value: Union[str, int], option: str = "time") -> str:
    """A duration in sbatch's ``--time`` form (``D-HH:MM:SS`` or ``HH:MM:SS``)."""
    if isinstance(value, bool):
        raise _fail(option, value, TIME_FORMS)
    if isinstance(value, int):
        if value <= 0:
            raise _fail(option, value, TIME_FORMS)
        seconds = value * 60
    elif isinstance(value, str):
        text = value.strip().lower()
        match = _COMPACT.match(text)
        if text and match and any(match.groups()):
            seconds = sum(
                int(n) * _DURATION_UNITS[u] for n, u in zip(match.groups(), "dhms") if n
            )
        elif _SLURM_TIME.match(text):
            return text
        else:
            raise _fail(option, value, TIME_FORMS)
        if seconds <= 0:
            raise _fail(option, value, TIME_FORMS)
    else:
        raise _fail(option, value, TIME_FORMS)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def parse_size(value: Union[str, int], option: str) -> str:
    """A memory size in sbatch's form (``16G``; a bare number is megabytes)."""
    if isinstance(value, bool):
        raise _fail(option, value, SIZE_FORMS)
    if isinstance(value, int):
        if value <= 0:
            raise _fail(option, value, SIZE_FORMS)
        return f"{value}M"
    if isinstance(value, str):
        text = value.strip()
        if text.upper().endswith("B") and len(text) > 1 and text[-2].upper() in "KMGT":
            text = text[:-1]  # "16GB" -> "16G"
        match = _SIZE.match(text)
        if match and int(match.group(1)) > 0:
            return f"{match.group(1)}{(match.group(2) or 'M').upper()}"
    raise _fail(option, value, SIZE_FORMS)


def _positive(option: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(option, value, f"an int >= {minimum}")
    return value


def _name(option: str, value: object, what: str) -> str:
    if not isinstance(value, str) or not value or not _NAME.match(value):
        raise _fail(option, value, f"{what} (letters, digits, _ . - : , [ ]; no spaces)")
    return value


@dataclass(frozen=True)
class SlurmOptions:
    """sbatch resources of the jobs of a :class:`SlurmLauncher`; checked when built.

    :param nodes: ``--nodes``
    :param time: ``--time``: ``"4h"``, ``"90m"``, ``"1d12h"``, minutes as an int, or Slurm's forms
    :param cpus_per_task: ``--cpus-per-task``
    :param mem: ``--mem`` (per node): ``"16G"``, ``"512M"``, or megabytes as an int
    :param mem_per_gpu: ``--mem-per-gpu``
    :param gpus_per_node: ``--gpus-per-node``: a count, or ``"type:count"`` (``"a100:2"``)
    :param partition: ``--partition`` (a comma-separated list is allowed)
    :param qos: ``--qos``
    :param account: ``--account``
    :param constraint: ``--constraint`` (node features, e.g. ``"a100|v100"``)
    :param exclude: ``--exclude``: node names (a list, or Slurm's comma-separated form)
    :param extra: raw sbatch flags, each one ``--flag=value`` or ``--flag`` (``["--mail-type=END"]``)
    """

    nodes: Optional[int] = None
    time: Optional[Union[str, int]] = None
    cpus_per_task: Optional[int] = None
    mem: Optional[Union[str, int]] = None
    mem_per_gpu: Optional[Union[str, int]] = None
    gpus_per_node: Optional[Union[int, str]] = None
    partition: Optional[str] = None
    qos: Optional[str] = None
    account: Optional[str] = None
    constraint: Optional[str] = None
    exclude: Optional[Union[str, Sequence[str]]] = None
    extra: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.nodes is not None:
            _positive("nodes", self.nodes)
        if self.time is not None:
            set_(self, "time", parse_time(self.time))
        if self.cpus_per_task is not None:
            _positive("cpus_per_task", self.cpus_per_task)
        if self.mem is not None:
            set_(self, "mem", parse_size(self.mem, "mem"))
        if self.mem_per_gpu is not None:
            set_(self, "mem_per_gpu", parse_size(self.mem_per_gpu, "mem_per_gpu"))
        if self.mem is not None and self.mem_per_gpu is not None:
            raise SlurmOptionError(
                "SlurmOptions(mem=..., mem_per_gpu=...): sbatch takes only one of them; give one"
            )
        if self.gpus_per_node is not None:
            gpus = self.gpus_per_node
            if isinstance(gpus, str) and re.match(r"^[A-Za-z0-9_\-]+:\d+$", gpus):
                _positive("gpus_per_node", int(gpus.rsplit(":", 1)[1]))
            else:
                _positive("gpus_per_node", gpus, 0)
        for option, what in (("partition", "a partition name"), ("qos", "a QOS name"),
                             ("account", "an account name")):
            value = getattr(self, option)
            if value is not None:
                _name(option, value, what)
        if self.constraint is not None:
            if not isinstance(self.constraint, str) or not self.constraint.strip() or "\n" in (
                self.constraint
            ):
                raise _fail("constraint", self.constraint, 'node features such as "a100|v100"')
        if self.exclude is not None:
            nodes = [self.exclude] if isinstance(self.exclude, str) else list(self.exclude)
            for node in nodes:
                _name("exclude", node, "node names")
            set_(self, "exclude", ",".join(nodes))
        extra = [self.extra] if isinstance(self.extra, str) else list(self.extra)
        for flag in extra:
            if not isinstance(flag, str) or not re.match(r"^--[a-z][a-z0-9\-]*(=.*)?$", flag, re.S) or (
                "\n" in flag
            ):
                raise _fail("extra", flag, 'sbatch flags, each "--flag=value" or "--flag" on one line')
        set_(self, "extra", tuple(extra))

    def sbatch_flags(self) -> list[str]:
        """The flags, in a stable order: ``["--time=4:00:00", "--mem=16G", ...]``."""
        flags = []
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is not None:
                flags.append(f"--{f.name.replace('_', '-')}={value}")
        flags.extend(self.extra)
        return flags

    def merge(self, **changes: object) -> "SlurmOptions":
        """A copy with some options changed (checked again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return SlurmOptions(**values)  # type: ignore[arg-type]
