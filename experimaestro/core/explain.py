"""Why a configuration has its identifier: what each parameter contributes to the encoding.

``explain(cfg)`` lists the configuration and every sub-configuration its identifier encodes (preorder,
each once): type id, identifier, and for each declared parameter either the bytes it contributes or the
reason it is left out. ``str(explanation)`` is the text ``experimaestro explain-id`` prints.

The bytes come from the encoder of :mod:`.identifier` itself, never from a copy of it. Pure module:
no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from .config import Config
from .identifier import (
    config_digest,
    configs_in,
    parameter_encodings,
    skip_reason,
    static_skip_reason,
)
from .types import NOTSET

#: Left-out reasons, as ``ParameterExplanation.reason`` gives them.
REASONS = {
    "meta": "a Meta[...] parameter",
    "ignored": "declared with field(ignored=True)",
    "Path": "a Path parameter: paths locate data, they do not define it",
    "default": "the value equals its default (bare default, or ignore_default=True)",
    "none": "an Optional parameter whose value and default are None",
    "meta config": "the value is a configuration marked meta (setmeta)",
    "unset": "no value was set",
}

#: Encodings longer than this many bytes are shortened by ``str()`` (the full hex stays available).
_SHOWN_BYTES = 48


@dataclass(frozen=True)
class ParameterExplanation:
    """One declared parameter of a configuration."""

    name: str
    #: Hex of the value's encoding, or ``"config <type id> <identifier>"`` for a configuration value;
    #: None when the parameter is left out.
    encoding: Optional[str]
    #: Why the parameter is left out (a key of :data:`REASONS`); None when it is included.
    reason: Optional[str] = None

    @property
    def included(self) -> bool:
        return self.reason is None

    def __str__(self) -> str:
        if self.reason is not None:
            return f"- {self.name}: left out ({self.reason}): {REASONS[self.reason]}"
        assert self.encoding is not None
        return f"+ {self.name} = {_shorten(self.encoding)}"


@dataclass(frozen=True)
class ConfigExplanation:
    """One configuration: its type id, identifier, parameters, producing task and init tasks."""

    typeid: str
    identifier: str
    parameters: tuple[ParameterExplanation, ...]
    #: ``"config <type id> <identifier>"`` of the task producing this output, if any.
    task: Optional[str] = None
    #: ``"config <type id> <identifier>"`` of each init task.
    init_tasks: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [f"{self.typeid} {self.identifier}"]
        if self.task is not None:
            lines.append(f"  output of task: {self.task}")
        lines.extend(f"  {p}" for p in self.parameters)
        if not self.parameters:
            lines.append("  (no parameters)")
        lines.extend(f"  init task: {t}" for t in self.init_tasks)
        return "\n".join(lines)


@dataclass(frozen=True)
class Explanation:
    """The explanation of a configuration graph: the root first, then sub-configurations (preorder)."""

    configs: tuple[ConfigExplanation, ...] = field(default_factory=tuple)

    @property
    def root(self) -> ConfigExplanation:
        return self.configs[0]

    def __str__(self) -> str:
        return "\n\n".join(str(c) for c in self.configs)


def explain(config: Config) -> Explanation:
    """Explain the identifier of ``config`` and of every sub-configuration it encodes."""
    return Explanation(tuple(_explain_graph(config)))


def describe_config(config: Config) -> str:
    """``"config <type id> <identifier>"``: how a configuration value is shown."""
    return f"config {config.__xpm__.xpmtype.typeid} {config_digest(config).hex()}"


# --- Internals ----------------------------------------------------------------------------------


def _parameter(
    cfg: Config, name: str, arg: Any, encodings: dict[str, bytes]
) -> tuple[ParameterExplanation, Any]:
    """The explanation of one parameter, and the value when it is encoded (else NOTSET)."""
    value = cfg.__dict__.get(name, NOTSET)
    if not arg.in_identifier:
        reason = static_skip_reason(arg)
    elif value is NOTSET:
        reason = "unset"
    else:
        reason = skip_reason(arg, value)
    if reason is not None:
        return ParameterExplanation(name, None, reason), NOTSET
    if isinstance(value, Config):
        return ParameterExplanation(name, describe_config(value)), value
    return ParameterExplanation(name, encodings[name].hex()), value


def _explain_one(cfg: Config) -> tuple[ConfigExplanation, list[Config]]:
    """The explanation of one configuration, and the configurations its encoding refers to (in
    encoding order: producing task, parameters sorted by name, init tasks)."""
    info = cfg.__xpm__
    t = info.xpmtype
    parameters = []
    children: list[Config] = []
    if info.task is not None:
        children.append(info.task)
    encodings = parameter_encodings(cfg)
    for name, arg in sorted(t.arguments.items()):
        explained, value = _parameter(cfg, name, arg, encodings)
        parameters.append(explained)
        if value is not NOTSET:
            children.extend(configs_in([value]))
    children.extend(info.init_tasks)
    explanation = ConfigExplanation(
        typeid=t.typeid,
        identifier=config_digest(cfg).hex(),
        parameters=tuple(parameters),
        task=describe_config(info.task) if info.task is not None else None,
        init_tasks=tuple(describe_config(i) for i in info.init_tasks),
    )
    return explanation, children


def _explain_graph(root: Config) -> Iterator[ConfigExplanation]:
    """Explanations of ``root`` and of every configuration its encoding refers to: preorder, each
    once, iteratively (no recursion limit)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        cfg = stack.pop()
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        explanation, children = _explain_one(cfg)
        yield explanation
        stack.extend(reversed([c for c in children if id(c) not in seen]))


def _shorten(encoding: str) -> str:
    if encoding.startswith("config ") or len(encoding) <= 2 * _SHOWN_BYTES:
        return encoding
    return f"{encoding[: 2 * _SHOWN_BYTES]}... ({len(encoding) // 2} bytes)"


__all__ = [
    "REASONS",
    "ConfigExplanation",
    "Explanation",
    "ParameterExplanation",
    "describe_config",
    "explain",
]
