"""Requirements (what a job needs) and host specifications (what a launcher offers), and matching.

A ``launchers.py`` file receives a :class:`HostRequirement` and asks it, host after host,
``requirements.match(HostSpecification(...))``: the answer is a :class:`MatchRequirement` (the
alternative that fits, with the host's priority as score) or None. These names and their behaviour
are those of experimaestro 2.x, so that a 2.x ``launchers.py`` works unchanged.

Matching an alternative against a host (all must hold):

- GPUs: the host has at least as many accelerators as requested; both lists sorted by memory,
  largest first, are paired one to one, and each host accelerator must be of the requested type
  (``cuda``/``mps``; ``gpu`` accepts any), have at least the requested memory, and a ``min_memory``
  not above it;
- the host's ``min_gpu`` is not above the number of requested GPUs;
- the host's CPU has at least the requested memory and cores;
- unified-memory accelerators (MPS): CPU memory plus their requested memory fits the host's memory;
- the duration is not above the host's ``max_duration`` (0: no limit).
"""

from __future__ import annotations

import abc
import copy
import enum
import math
from dataclasses import dataclass, field
from typing import ClassVar, Iterable, Optional, Union

from .units import format_duration, format_size, parse_duration, parse_size

GIB = 1024**3


class AcceleratorType(enum.Enum):
    """The kinds of accelerators."""

    CUDA = "cuda"
    MPS = "mps"
    ROCM = "rocm"


@dataclass
class AcceleratorSpecification:
    """An accelerator (GPU) of any type: as a requirement (``gpu(mem=...)``), it accepts any type.

    ``memory`` and ``min_memory`` are in bytes; ``min_memory`` is, on a host, the smallest request
    this accelerator may serve.
    """

    memory: int = 0
    model: str = ""
    min_memory: int = 0

    kind: ClassVar[Optional[AcceleratorType]] = None
    grammar_name: ClassVar[str] = "gpu"

    @property
    def accelerator_type(self) -> Optional[AcceleratorType]:
        """The required type (None: any)."""
        return self.kind

    @property
    def unified_memory(self) -> bool:
        """True when the accelerator's memory is the host's memory (Apple MPS)."""
        return False

    def match(self, spec: AcceleratorSpecification) -> bool:
        """Whether this (host) accelerator can serve the requested ``spec``."""
        if spec.accelerator_type is not None and spec.accelerator_type != self.accelerator_type:
            return False
        return self.memory >= spec.memory and self.min_memory <= spec.memory

    def __repr__(self) -> str:
        model = f"{self.model}, " if self.model else ""
        minimum = f", min={format_size(self.min_memory)}" if self.min_memory else ""
        return f"{type(self).__name__}({model}mem={format_size(self.memory)}{minimum})"


@dataclass(repr=False)
class CudaSpecification(AcceleratorSpecification):
    """An NVIDIA CUDA GPU: as a requirement (``cuda(mem=...)``), only CUDA GPUs serve it."""

    kind: ClassVar[Optional[AcceleratorType]] = AcceleratorType.CUDA
    grammar_name: ClassVar[str] = "cuda"


@dataclass(repr=False)
class MPSSpecification(AcceleratorSpecification):
    """An Apple MPS GPU, whose memory is the host's memory (``mps(mem=...)``)."""

    kind: ClassVar[Optional[AcceleratorType]] = AcceleratorType.MPS
    grammar_name: ClassVar[str] = "mps"

    @property
    def unified_memory(self) -> bool:
        return True


@dataclass
class CPUSpecification:
    """CPU memory (bytes) and cores; ``mem_per_cpu`` and ``cpu_per_gpu`` describe cluster nodes
    (0: not set) for :meth:`total_memory`."""

    memory: int = 0
    cores: int = 0
    mem_per_cpu: int = 0
    cpu_per_gpu: int = 0

    def match(self, other: CPUSpecification) -> bool:
        """Whether this (host) CPU has at least ``other``'s memory and cores."""
        return self.memory >= other.memory and self.cores >= other.cores

    def total_memory(self, gpus: int = 0) -> int:
        """The memory a job gets: the largest of ``memory``, ``mem_per_cpu`` x cores and
        ``mem_per_cpu`` x ``cpu_per_gpu`` x ``gpus``."""
        return max(
            self.memory, self.mem_per_cpu * self.cores, self.cpu_per_gpu * self.mem_per_cpu * gpus
        )

    def __repr__(self) -> str:
        return f"CPU(mem={format_size(self.memory)}, cores={self.cores})"


@dataclass(kw_only=True, repr=False)
class HostSpecification:
    """What a launcher offers. Keyword arguments only.

    ``cuda`` (the 2.x spelling) is merged into ``accelerators``, which is kept sorted by memory,
    largest first. ``priority``: the score of a match (higher is better, see
    :meth:`RequirementUnion.match`); ``max_duration`` in seconds (0: no limit); ``min_gpu``: refuse
    requests for fewer GPUs.
    """

    accelerators: list[AcceleratorSpecification] = field(default_factory=list)
    cuda: list[CudaSpecification] = field(default_factory=list)
    cpu: CPUSpecification = field(default_factory=CPUSpecification)
    priority: int = 0
    max_duration: int = 0
    min_gpu: int = 0

    def __post_init__(self) -> None:
        merged = list(self.accelerators) + list(self.cuda)
        self.cuda = []
        self.accelerators = sorted(merged, key=lambda a: -a.memory)

    def __repr__(self) -> str:
        parts = [f"cpu={self.cpu!r}"]
        groups: dict[str, int] = {}
        for accelerator in self.accelerators:
            groups[repr(accelerator)] = groups.get(repr(accelerator), 0) + 1
        if groups:
            listed = ", ".join(f"{n} x {text}" if n > 1 else text for text, n in groups.items())
            parts.append(f"accelerators=[{listed}]")
        if self.max_duration:
            parts.append(f"max_duration={format_duration(self.max_duration)}")
        parts += [f"{name}={getattr(self, name)}" for name in ("priority", "min_gpu")
                  if getattr(self, name)]
        return f"HostSpecification({', '.join(parts)})"


@dataclass
class MatchRequirement:
    """A successful match: the host's priority (``score``) and the alternative that fits."""

    score: float
    requirement: HostSimpleRequirement


class HostRequirement(abc.ABC):
    """A requirement: alternatives (``requirements``), in order of preference."""

    requirements: list[HostSimpleRequirement]

    @abc.abstractmethod
    def match(self, host: HostSpecification) -> Optional[MatchRequirement]:
        """The alternative that ``host`` satisfies (see the module's rules), or None."""

    @abc.abstractmethod
    def multiply_duration(self, coefficient: float) -> HostRequirement:
        """A copy whose durations are multiplied by ``coefficient`` (rounded up)."""

    def __or__(self, other: HostRequirement) -> RequirementUnion:
        return RequirementUnion(*self.requirements, *other.requirements)

    def __str__(self) -> str:
        return " | ".join(r.spec() for r in self.requirements)


class HostSimpleRequirement(HostRequirement):
    """One alternative: CPU, accelerators and duration, all required together.

    ``a & b`` takes the larger CPU memory, cores and duration, and both lists of accelerators;
    ``a * n`` repeats the accelerators ``n`` times. ``HostSimpleRequirement(a, b)`` is ``a & b``.
    """

    def __init__(self, *requirements: HostSimpleRequirement) -> None:
        self.cpu = CPUSpecification()
        self.accelerators: list[AcceleratorSpecification] = []
        self.duration = 0
        for requirement in requirements:
            self._add(requirement)

    @property
    def requirements(self) -> list[HostSimpleRequirement]:  # type: ignore[override]
        return [self]

    def _add(self, other: HostSimpleRequirement) -> None:
        self.cpu = CPUSpecification(
            memory=max(self.cpu.memory, other.cpu.memory), cores=max(self.cpu.cores, other.cpu.cores)
        )
        self.duration = max(self.duration, other.duration)
        self.accelerators = sorted(
            [*self.accelerators, *(copy.copy(a) for a in other.accelerators)], key=lambda a: -a.memory
        )

    def __and__(self, other: HostSimpleRequirement) -> HostSimpleRequirement:
        if not isinstance(other, HostSimpleRequirement):
            return NotImplemented
        return HostSimpleRequirement(self, other)

    def __mul__(self, count: int) -> HostSimpleRequirement:
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"a requirement can be multiplied by a count of at least 1, not {count!r}")
        result = HostSimpleRequirement(self)
        result.accelerators = sorted(
            [copy.copy(a) for _ in range(count) for a in self.accelerators], key=lambda a: -a.memory
        )
        return result

    @property
    def cuda_gpus(self) -> list[CudaSpecification]:
        """The requested CUDA GPUs (2.x name)."""
        return [a for a in self.accelerators if isinstance(a, CudaSpecification)]

    def match(self, host: HostSpecification) -> Optional[MatchRequirement]:
        if self.accelerators:
            if len(host.accelerators) < len(self.accelerators):
                return None
            offered = sorted(host.accelerators, key=lambda a: -a.memory)
            for available, wanted in zip(offered, self.accelerators):
                if not available.match(wanted):
                    return None
        if len(self.accelerators) < host.min_gpu:
            return None
        if not host.cpu.match(self.cpu):
            return None
        unified = sum(a.memory for a in self.accelerators if a.unified_memory)
        if unified and self.cpu.memory + unified > host.cpu.memory:
            return None
        if host.max_duration > 0 and self.duration > host.max_duration:
            return None
        return MatchRequirement(host.priority, self)

    def multiply_duration(self, coefficient: float) -> HostSimpleRequirement:
        result = HostSimpleRequirement(self)
        result.duration = math.ceil(self.duration * coefficient)
        return result

    def spec(self) -> str:
        """This alternative in the requirement grammar (``duration=4h & cuda(mem=16G)*2``)."""
        terms = []
        if self.duration:
            terms.append(f"duration={format_duration(self.duration)}")
        if self.cpu.cores or self.cpu.memory:
            args = [f"cores={self.cpu.cores}"] if self.cpu.cores else []
            args += [f"mem={format_size(self.cpu.memory)}"] if self.cpu.memory else []
            terms.append(f"cpu({', '.join(args)})")
        groups: dict[tuple[str, int], int] = {}
        for accelerator in self.accelerators:
            key = (accelerator.grammar_name, accelerator.memory)
            groups[key] = groups.get(key, 0) + 1
        for (name, memory), count in groups.items():
            args = f"mem={format_size(memory)}" if memory else ""
            terms.append(f"{name}({args})" + (f"*{count}" if count > 1 else ""))
        return " & ".join(terms) or "cpu()"

    def __repr__(self) -> str:
        return (
            f"Req(cpu={self.cpu!r}, accelerators={self.accelerators!r}, "
            f"duration={self.duration})"
        )


class RequirementUnion(HostRequirement):
    """Alternatives, in order of preference: what a requirement string with ``|`` gives.

    :meth:`match` returns the alternative the host satisfies; when several do, the one with the
    best score (all have the host's priority, so: the first). It also remembers the last successful
    match and the host (``last_match``, ``last_host``), so that ``experimaestro launchers find``
    can say which alternative a ``launchers.py`` chose.
    """

    def __init__(self, *requirements: HostSimpleRequirement) -> None:
        self.requirements = list(requirements)
        self.last_match: Optional[MatchRequirement] = None
        self.last_host: Optional[HostSpecification] = None

    def add(self, requirement: HostRequirement) -> RequirementUnion:
        """Append the alternatives of ``requirement``; returns self."""
        self.requirements.extend(requirement.requirements)
        return self

    def match(self, host: HostSpecification) -> Optional[MatchRequirement]:
        best: Optional[MatchRequirement] = None
        for requirement in self.requirements:
            found = requirement.match(host)
            if found is not None and (best is None or found.score > best.score):
                best = MatchRequirement(found.score, requirement)
        if best is not None:
            self.last_match, self.last_host = best, host
        return best

    def multiply_duration(self, coefficient: float) -> RequirementUnion:
        return RequirementUnion(*(r.multiply_duration(coefficient) for r in self.requirements))

    def __repr__(self) -> str:
        return " | ".join(repr(r) for r in self.requirements)


def as_union(requirement: Union[HostRequirement, Iterable[HostSimpleRequirement]]) -> RequirementUnion:
    """``requirement`` as a fresh :class:`RequirementUnion`."""
    alternatives = requirement.requirements if isinstance(requirement, HostRequirement) else requirement
    return RequirementUnion(*alternatives)


# --- Building requirements in Python (the same terms as the grammar)


def cpu(*, mem: Optional[Union[str, int]] = None, cores: int = 1) -> HostSimpleRequirement:
    """CPU memory (``"8G"``; see :mod:`.units`) and cores."""
    requirement = HostSimpleRequirement()
    requirement.cpu = CPUSpecification(memory=parse_size(mem) if mem is not None else 0, cores=cores)
    return requirement


def _accelerator(
    kind: type[AcceleratorSpecification], mem: Optional[Union[str, int]]
) -> HostSimpleRequirement:
    requirement = HostSimpleRequirement()
    requirement.accelerators.append(kind(memory=parse_size(mem) if mem is not None else 0))
    return requirement


def cuda_gpu(*, mem: Optional[Union[str, int]] = None) -> HostSimpleRequirement:
    """One CUDA GPU with at least ``mem`` memory (``cuda_gpu(mem="16G") * 2`` for two)."""
    return _accelerator(CudaSpecification, mem)


def mps_gpu(*, mem: Optional[Union[str, int]] = None) -> HostSimpleRequirement:
    """One Apple MPS GPU with at least ``mem`` (unified) memory."""
    return _accelerator(MPSSpecification, mem)


def gpu(*, mem: Optional[Union[str, int]] = None) -> HostSimpleRequirement:
    """One accelerator of any type with at least ``mem`` memory."""
    return _accelerator(AcceleratorSpecification, mem)


def duration(timespec: Union[str, int, float]) -> HostSimpleRequirement:
    """A running time: ``"4h"``, ``"30m"``, ``"2 days"``, or a number of seconds."""
    requirement = HostSimpleRequirement()
    requirement.duration = parse_duration(timespec)
    return requirement
