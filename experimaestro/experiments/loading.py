"""Building an experiment's configuration from YAML files and ``-c`` options.

Order: each ``--pre-yaml``, the experiment's file, each ``--post-yaml``; a file's ``parent: F`` or
``imports: [F, ...]`` are loaded before it, relative to it (both at once is an error). Mappings merge
deeply, the later one winning; lists and scalars are replaced. ``-c key.path=value`` applies last
(``-c seeds.0=3`` sets a list item). ``file:``, ``pythonpath`` entries and a ``pre_experiment``
path are made absolute, relative to the YAML file that names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from .schema import CommandLineValue, Origins
from .yamlfile import ConfigurationError, KeyPath, YamlDocument, format_key, load_yaml


def yaml_path(name: str | Path, relative_to: Optional[Path] = None) -> Path:
    """A YAML file named with or without its ``.yaml`` suffix (relative to a folder if given)."""
    path = Path(name).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if not path.exists() and path.suffix not in (".yaml", ".yml"):
        for suffix in (".yaml", ".yml"):
            if path.with_name(path.name + suffix).exists():
                return path.with_name(path.name + suffix)
    return path


def is_file_reference(value: str) -> bool:
    """Whether a ``pre_experiment`` value names a file (else a module)."""
    return "/" in value or "\\" in value or value.endswith(".py")


@dataclass
class MergedConfiguration:
    """The merged data, where each value came from, and what the files asked for."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: Origins = field(default_factory=dict)
    #: Every file loaded, in loading order.
    files: list[Path] = field(default_factory=list)
    #: ``pythonpath`` entries of all the files (absolute), in order.
    pythonpath: list[Path] = field(default_factory=list)
    #: The YAML file that gave ``module:`` (the last one that did).
    module_yaml: Optional[Path] = None

    # -- loading ---------------------------------------------------------------------------------

    def load(self, path: Path, _chain: tuple[Path, ...] = ()) -> None:
        """Load ``path`` (after what it imports) and merge it in."""
        resolved = path.resolve()
        if resolved in _chain:
            cycle = " -> ".join(str(p) for p in (*_chain, resolved))
            raise ConfigurationError(f"YAML files import each other in a cycle: {cycle}")
        if not path.is_file():
            by = f" (imported by {_chain[-1]})" if _chain else ""
            raise ConfigurationError(f"no YAML file {path}{by}")
        doc = load_yaml(path)
        data = doc.data
        folder = path.parent
        parent = data.pop("parent", None)
        imports = data.pop("imports", None)
        if parent is not None and imports is not None:
            raise ConfigurationError(
                f"{doc.where(('imports',))}: 'parent' ({doc.where(('parent',))}) and 'imports' "
                f"are both given: keep one (imports: [{parent}, ...])"
            )
        if parent is not None:
            imports = [parent]
            key = "parent"
        else:
            key = "imports"
        if imports is not None:
            if isinstance(imports, str):
                imports = [imports]
            if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
                raise ConfigurationError(
                    f"{doc.where((key,))}: {key} must be a file name or a list of file names"
                )
            for name in imports:
                self.load(yaml_path(name, folder), (*_chain, resolved))
        self._make_paths_absolute(doc)
        self.files.append(path)
        self._merge(doc)

    def _make_paths_absolute(self, doc: YamlDocument) -> None:
        data, folder = doc.data, doc.path.parent
        if "file" in data:
            if not isinstance(data["file"], str):
                raise ConfigurationError(f"{doc.where(('file',))}: file must be a file name")
            data["file"] = str((folder / Path(data["file"]).expanduser()).resolve())
        pre = data.get("pre_experiment")
        if isinstance(pre, str) and is_file_reference(pre):
            data["pre_experiment"] = str((folder / Path(pre).expanduser()).resolve())
        if "pythonpath" in data:
            entries = data["pythonpath"]
            if isinstance(entries, str):
                entries = [entries]
            if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
                raise ConfigurationError(
                    f"{doc.where(('pythonpath',))}: pythonpath must be a list of folders"
                )
            absolute = [str((folder / Path(e).expanduser()).resolve()) for e in entries]
            data["pythonpath"] = absolute
            for entry in absolute:
                if Path(entry) not in self.pythonpath:
                    self.pythonpath.append(Path(entry))
        if "module" in data:
            self.module_yaml = doc.path

    def _merge(self, doc: YamlDocument) -> None:
        stack: list[tuple[dict, dict, KeyPath]] = [(self.data, doc.data, ())]
        while stack:
            target, source, at = stack.pop()
            for key, value in source.items():
                path = (*at, key)
                if isinstance(value, dict) and isinstance(target.get(key), dict):
                    self.origins[path] = doc.where(path)
                    stack.append((target[key], value, path))
                    continue
                self._forget(path)
                target[key] = value
                for sub, line in doc.lines.items():
                    if sub[: len(path)] == path:
                        self.origins[sub] = f"{doc.path}:{line}"
                self.origins.setdefault(path, doc.where(path))

    def _forget(self, path: KeyPath) -> None:
        """Drop the origins of a value about to be replaced (and of what it held)."""
        for key in [k for k in self.origins if k[: len(path)] == path]:
            del self.origins[key]

    # -- -c key.path=value -----------------------------------------------------------------------

    def assign(self, assignment: str) -> None:
        """Apply one ``-c key.path=value``: mappings are created as needed; a number indexes a
        list (the next index appends)."""
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(
                f"-c {assignment!r}: expected key.path=value (e.g. -c learning_rate=0.01)"
            )
        parts = key.strip().split(".")
        if any(not p for p in parts):
            raise ConfigurationError(f"-c {assignment!r}: {key!r} has an empty part")
        value = CommandLineValue(text)
        container: Any = self.data
        path: KeyPath = ()
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(container, list):
                if not part.isdigit():
                    raise ConfigurationError(
                        f"-c {assignment!r}: {format_key(path)} is a list: index it with a "
                        f"number ({format_key(path)}.0)"
                    )
                index = int(part)
                if index > len(container):
                    raise ConfigurationError(
                        f"-c {assignment!r}: {format_key(path)} has {len(container)} items "
                        f"(indexes 0 to {len(container) - 1}; {len(container)} appends one)"
                    )
                if index == len(container):
                    container.append({} if not last else None)
                step: Any = index
            elif isinstance(container, dict):
                step = part
                if not last and not isinstance(container.get(part), (dict, list)):
                    container[part] = {}
            else:
                raise ConfigurationError(
                    f"-c {assignment!r}: {format_key(path)} is {container!r}, not a mapping or a list"
                )
            path = (*path, step)
            if last:
                self._forget(path)
                container[step] = value
                self.origins[path] = f"-c {assignment}"
            else:
                container = container[step]


def merge_configuration(
    main: Path,
    pre_yaml: Iterable[Path] = (),
    post_yaml: Iterable[Path] = (),
    assignments: Iterable[str] = (),
) -> MergedConfiguration:
    """Load and merge the files, then apply the ``-c`` assignments."""
    merged = MergedConfiguration()
    merged.origins[()] = str(main)  # where a missing top-level key should go
    for path in (*pre_yaml, main, *post_yaml):
        merged.load(path)
    for assignment in assignments:
        merged.assign(assignment)
    return merged
