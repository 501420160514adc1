"""Reading one YAML file: its data, and the line of every key (for error messages).

``load_yaml(path)`` parses the file once (PyYAML's safe loader) and returns the data with the line
of each key path: ``{("model", "layers"): 7, ("seeds", 0): 9}``. Malformed YAML is a
:class:`ConfigurationError` naming the file, the line and the column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

#: A path to a value: mapping keys (str) and list indexes (int).
KeyPath = tuple[Union[str, int], ...]


class ConfigurationError(Exception):
    """Bad input in an experiment's configuration (YAML, ``-c``, schema, settings): the message
    names the key, the file and line where known, and the fix."""


def format_key(path: KeyPath) -> str:
    """``("model", "layers")`` -> ``model.layers``; ``("seeds", 0)`` -> ``seeds.0``."""
    return ".".join(str(p) for p in path) if path else "(top level)"


@dataclass
class YamlDocument:
    """One YAML file: its data (a mapping) and the line (from 1) of each key path in it."""

    path: Path
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def where(self, key: KeyPath) -> str:
        """``file:line`` of a key path (the file alone when the line is unknown)."""
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line is not None else str(self.path)


def load_yaml(path: Path) -> YamlDocument:
    """Parse ``path``; an empty file is an empty mapping. Raises :class:`ConfigurationError` for
    a missing file, malformed YAML, or a top level that is not a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    loader = yaml.SafeLoader(text)
    loader.name = str(path)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigurationError(f"{where}: malformed YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: malformed YAML: {exc}") from None
    finally:
        loader.dispose()
    if data is None:
        return YamlDocument(path, {})
    if not isinstance(data, dict):
        line = node.start_mark.line + 1
        raise ConfigurationError(
            f"{path}:{line}: the top level must be a mapping of keys to values "
            f"(got a {type(data).__name__})"
        )
    lines: dict[KeyPath, int] = {}
    _key_lines(node, (), lines)
    return YamlDocument(path, data, lines)


def _key_lines(node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int]) -> None:
    """Record the line of each key (and list item) under ``node``."""
    stack = [(node, prefix)]
    while stack:
        current, at = stack.pop()
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue
                path = (*at, key.value)
                lines[path] = key.start_mark.line + 1
                stack.append((value, path))
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                path = (*at, index)
                lines[path] = item.start_mark.line + 1
                stack.append((item, path))
