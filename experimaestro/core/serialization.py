"""``params.json``: the serialized configuration graph of a job (pure: text in, text out).

The document is an attrs model turned into JSON (and back) by a cattrs converter. Configurations are
listed dependencies first; values refer to them by position. Non-JSON values are tagged objects:

* ``{"$config": i}``: the i-th object; ``{"$path": "rel", "base": "job"|"workspace"|null}``;
* ``{"$enum": "module:QualName", "name": "MEMBER"}``; ``{"$dict": [[k, v], ...]}``;
* ``{"$set": [...]}``; ``{"$tuple": [...]}``. Lists, str, int, float, bool and None are plain JSON.

Reading imports each class by module and qualified name, so a fresh process rebuilds a graph with the
same identifiers. Classes defined in a script run as ``__main__`` are found again through the script's
file (its ``if __name__ == "__main__":`` block is not run).
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path, PurePath
from typing import Any, Callable, Optional

import attrs
import cattrs

from .config import (
    MAIN_ALIAS,
    Config,
    ConfigInformation,
    Task,
    graph_tags,
    iter_values,
    module_name,
    xpmtype,
)
from .findable import NotFindable, check_findable, enum_member, not_findable_error
from .types import ValidationError, _Reject

#: The format written by this version; a document with a larger number is refused with a clear error.
FORMAT_VERSION = 1


class ParamsFormatError(ValueError):
    """A params.json that cannot be read (newer format, another tool's format, or damaged)."""


@attrs.define
class ObjectRecord:
    """One configuration of the graph."""

    module: str
    type: str
    typeid: str
    fields: dict[str, Any] = attrs.field(factory=dict)
    tags: dict[str, Any] = attrs.field(factory=dict)
    task: Optional[int] = None
    init_tasks: list[int] = attrs.field(factory=list)
    meta: Optional[bool] = None
    file: Optional[str] = None
    #: The identifier (hex) of a task, so that the job process knows every task's job folder.
    identifier: Optional[str] = None
    #: For a task submitted earlier: its job folder, relative to the workspace. The record is then
    #: a reference: its values are read, when first needed, from that folder's own params.json.
    job: Optional[str] = None
    #: For a reference: the tags of its whole graph.
    graph_tags: Optional[dict[str, Any]] = None


@attrs.define
class ParamsDocument:
    """The whole params.json."""

    xpm_format: int
    root: int
    objects: list[ObjectRecord]
    identifier: Optional[str] = None
    workspace: Optional[str] = None
    job: Optional[str] = None
    experimaestro: str = ""
    #: The tags of the whole graph (``Config.tags()`` of the root), for tools that read the file.
    tags: dict[str, Any] = attrs.field(factory=dict)
    #: More roots, listed after ``root`` (``experimaestro.serialize``'s init tasks).
    others: list[int] = attrs.field(factory=list)
    #: Environment variables set in the job process before its classes are imported
    #: (``xp.setenv``, the launcher's, submit hooks'); not part of the identifier.
    environ: dict[str, str] = attrs.field(factory=dict)


_converter = cattrs.Converter(forbid_extra_keys=False)
_converter.register_unstructure_hook(Any, lambda v: v)


class _Bases:
    def __init__(self, job: Optional[Path], workspace: Optional[Path]) -> None:
        self.bases = [(n, Path(p)) for n, p in (("job", job), ("workspace", workspace)) if p]

    def relative(self, path: PurePath) -> dict[str, Any]:
        if path.is_absolute():
            for name, base in self.bases:
                try:
                    return {"$path": str(Path(path).relative_to(base)), "base": name}
                except ValueError:
                    continue
        return {"$path": str(path), "base": None}

    def absolute(self, data: dict[str, Any]) -> Path:
        base = data.get("base")
        for name, path in self.bases:
            if name == base:
                return path / data["$path"]
        return Path(data["$path"])


# --- Writing ----------------------------------------------------------------------------------


def _ordered_graph(
    root: Config, is_reference: Any, others: "tuple[Config, ...]" = ()
) -> list[Config]:
    """Every configuration reachable from ``root`` (values, producing tasks, init tasks), listed so
    that each comes after everything it refers to. Iterative post-order walk; a configuration for
    which ``is_reference`` is true is listed but not entered."""
    order: list[Config] = []
    state: dict[int, int] = {}  # 1 = on the stack, 2 = listed
    path: list[Config] = []  # the configurations on the stack, outermost first
    stack: list[tuple[Config, bool]] = [(r, False) for r in reversed((root, *others))]
    while stack:
        cfg, expanded = stack.pop()
        key = id(cfg)
        if expanded:
            if state.get(key) != 2:
                state[key] = 2
                order.append(cfg)
                path.pop()
            continue
        if key in state:
            continue
        state[key] = 1
        path.append(cfg)
        stack.append((cfg, True))
        if is_reference(cfg):
            continue
        info = cfg.__xpm__
        refs: list[Config] = []
        if info.task is not None and info.task is not cfg:
            refs.append(info.task)
        values = cfg.__dict__
        refs.extend(
            iter_values([values[n] for n in info.xpmtype.arguments if n in values])
        )
        refs.extend(info.init_tasks)
        for ref in reversed(refs):
            if state.get(id(ref)) == 1:
                raise _cycle_error(path + [ref])
            if id(ref) not in state:
                stack.append((ref, False))
    return order


def _cycle_error(walk: list[Config]) -> ValidationError:
    """A cycle (``a.other = b; b.other = a``): params.json cannot hold it, and the job could not
    rebuild it (whose ``__post_init__`` would run first?). Refused at ``submit()``. ``walk`` goes
    from the root to the configuration met again."""
    steps = []
    for cfg, nxt in zip(walk, walk[1:]):
        values = cfg.__dict__
        names = [
            n for n in cfg.__xpm__.xpmtype.arguments
            if n in values and any(v is nxt for v in iter_values([values[n]]))
        ]
        steps.append(f"{type(cfg).__qualname__}.{names[0]}" if names else type(cfg).__qualname__)
    steps.append(type(walk[-1]).__qualname__)
    return ValidationError(
        f"the configuration graph of {type(walk[0]).__qualname__} has a cycle: "
        f"{' -> '.join(steps)}; params.json cannot hold it, nor the job rebuild it: "
        f"break the cycle (a configuration cannot hold itself, even through others)"
    )


def _encode(value: Any, ids: dict[int, int], bases: _Bases) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)) and not isinstance(
        value, enum.Enum
    ):
        return value
    if isinstance(value, Config):
        return {"$config": ids[id(value)]}
    if isinstance(value, PurePath):
        return bases.relative(value)
    if isinstance(value, enum.Enum):
        cls = type(value)
        check_findable(cls)
        return {"$enum": f"{module_name(cls)}:{cls.__qualname__}", "name": value.name}
    if isinstance(value, list):
        return [_encode(v, ids, bases) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, ids, bases) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"$set": [_encode(v, ids, bases) for v in value]}
    if isinstance(value, dict):
        return {"$dict": [[_encode(k, ids, bases), _encode(v, ids, bases)] for k, v in value.items()]}
    raise ValidationError(f"cannot write a value of type {type(value).__qualname__} to params.json")


def _module_of(cls: type) -> tuple[str, Optional[str]]:
    check_findable(cls)
    module = module_name(cls)
    file = None
    if module == "__main__":
        file = getattr(sys.modules.get("__main__"), "__file__", None)
        if file is not None:
            file = str(Path(file).resolve())
    return module, file


def to_document(
    root: Config,
    *,
    job: Optional[Path] = None,
    workspace: Optional[Path] = None,
    environ: Optional[dict[str, str]] = None,
    others: "tuple[Config, ...]" = (),
    references: bool = True,
) -> ParamsDocument:
    """The params document of a configuration graph; ``others`` are more roots (sharing the
    graph); with ``references=False``, submitted tasks are written in full, not as references to
    their job folders."""
    from ..version import __version__
    from .identifier import config_digest

    def is_reference(cfg: Config) -> bool:
        return references and cfg is not root and _job_relpath(cfg) is not None

    order = _ordered_graph(root, is_reference, others)
    ids = {id(cfg): i for i, cfg in enumerate(order)}
    bases = _Bases(job, workspace)
    records = []
    for cfg in order:
        info = cfg.__xpm__
        t = info.xpmtype
        try:
            module, file = _module_of(type(cfg))
        except NotFindable as exc:
            raise not_findable_error(root, cfg, exc) from None
        record = ObjectRecord(
            module=module,
            type=type(cfg).__qualname__,
            typeid=t.typeid,
            tags=dict(info._tags),
            meta=info.meta,
            file=file,
            identifier=config_digest(cfg).hex() if isinstance(cfg, Task) else None,
        )
        if is_reference(cfg):
            record.job = str(_job_relpath(cfg))
            record.graph_tags = graph_tags(cfg)
        else:
            values = cfg.__dict__
            try:
                record.fields = {
                    name: _encode(values[name], ids, bases)
                    for name in t.arguments
                    if name in values
                }
            except NotFindable as exc:
                raise not_findable_error(root, enum_member(values, exc.cls), exc) from None
            record.task = ids[id(info.task)] if info.task is not None else None
            record.init_tasks = [ids[id(c)] for c in info.init_tasks]
        records.append(record)
    return ParamsDocument(
        xpm_format=FORMAT_VERSION,
        root=ids[id(root)],
        objects=records,
        identifier=config_digest(root).hex(),
        workspace=str(workspace) if workspace else None,
        job=str(job) if job else None,
        experimaestro=__version__,
        tags=dict(sorted(graph_tags(root).items())),
        environ=dict(environ or {}),
        others=[ids[id(c)] for c in others],
    )


def _job_relpath(cfg: Config) -> Optional[str]:
    """The workspace-relative job folder of a submitted task (its job says it), else None."""
    if not isinstance(cfg, Task):
        return None
    relpath = getattr(cfg.__xpm__.job, "relpath", None)
    return str(relpath) if relpath is not None else None


def dumps(
    root: Config,
    *,
    job: Optional[Path] = None,
    workspace: Optional[Path] = None,
    environ: Optional[dict[str, str]] = None,
) -> str:
    """params.json text for a configuration graph."""
    document = to_document(root, job=job, workspace=workspace, environ=environ)
    return json.dumps(_converter.unstructure(document))


# --- Reading ----------------------------------------------------------------------------------

_MAIN_ALIAS = MAIN_ALIAS


_classes: dict[tuple[str, str, Optional[str]], type] = {}


def _import_class(record: ObjectRecord) -> type:
    """The class of a record (cached: a document lists many objects of few classes)."""
    key = (record.module, record.type, record.file)
    cls = _classes.get(key)
    if cls is None:
        cls = _classes[key] = _find_class(record)
    return cls


def _find_class(record: ObjectRecord) -> type:
    module_path = record.module
    if module_path == "__main__":
        module = sys.modules.get(_MAIN_ALIAS)
        main = sys.modules.get("__main__")
        if module is None and main is not None and getattr(main, "__file__", None) == record.file:
            module = main
        if module is None:
            module = _load_script(record.file)
    else:
        try:
            module = importlib.import_module(module_path)
        except ImportError as exc:
            raise ParamsFormatError(
                f"cannot import module {module_path!r} for {record.type}: {exc} "
                f"(is the experiment's Python environment active?)"
            ) from exc
    obj: Any = module
    for part in record.type.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ParamsFormatError(
                f"module {module_path!r} has no class {record.type!r} (was it renamed or removed?)"
            )
    if not (isinstance(obj, type) and issubclass(obj, Config)):
        raise ParamsFormatError(f"{module_path}.{record.type} is not a configuration class")
    return obj


#: The environment variable naming the staged copies of the controller's import folders (set for
#: jobs on a remote host: connectors/staging.py STAGED_CODE_VARIABLE).
_STAGED_CODE = "XPM_STAGED_CODE"


def _staged_copy(file: str) -> Optional[str]:
    """Where the script ``file`` of the controller's machine is on this host, when the job's code
    was staged here (None: not staged, or not under a staged folder)."""
    try:
        roots = json.loads(os.environ.get(_STAGED_CODE) or "[]")
    except ValueError:
        return None
    for local, staged in roots:
        local = str(local).rstrip("/")
        if file.startswith(local + "/"):
            return str(staged) + file[len(local):]
    return None


def _load_script(file: Optional[str]) -> Any:
    """Load the experiment script that defined ``__main__`` classes, without running its main block
    (from its staged copy when the job runs on another host)."""
    if file is not None and not Path(file).exists():
        file = _staged_copy(file) or file
    if file is None or not Path(file).exists():
        raise ParamsFormatError(
            f"the classes were defined in a script run as __main__, and that script ({file}) "
            f"cannot be found: move the classes into a module"
        )
    global loading_script
    spec = importlib.util.spec_from_file_location(_MAIN_ALIAS, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MAIN_ALIAS] = module
    # Its classes keep the type ids they had in the controller (config.module_name).
    loading_script = file
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_MAIN_ALIAS]
        raise
    finally:
        loading_script = None
    return module


#: The experiment script being loaded in a job process, if any (an experiment started while it
#: loads means the script lacks its ``if __name__ == "__main__":`` guard).
loading_script: Optional[str] = None


def _decode(data: Any, objects: list[Config], bases: _Bases) -> Any:
    if isinstance(data, list):
        return [_decode(v, objects, bases) for v in data]
    if not isinstance(data, dict):
        return data
    if "$config" in data:
        return objects[data["$config"]]
    if "$path" in data:
        return bases.absolute(data)
    if "$enum" in data:
        module, qualname = data["$enum"].split(":", 1)
        cls: Any = (
            sys.modules.get(_MAIN_ALIAS) or sys.modules["__main__"]
            if module == "__main__"
            else importlib.import_module(module)
        )
        for part in qualname.split("."):
            cls = getattr(cls, part)
        return cls[data["name"]]
    if "$tuple" in data:
        return tuple(_decode(v, objects, bases) for v in data["$tuple"])
    if "$set" in data:
        return {_decode(v, objects, bases) for v in data["$set"]}
    if "$dict" in data:
        return {_decode(k, objects, bases): _decode(v, objects, bases) for k, v in data["$dict"]}
    raise ParamsFormatError(f"unknown value in params.json: {data!r}")


#: Reads the job folder (workspace-relative) of a referenced task and returns its configuration.
ReferenceLoader = Callable[[str], Config]


def _fill(placeholder: Config, loaded: Config) -> None:
    """Give a referenced task the values (and init tasks) of its own params.json."""
    values = {k: v for k, v in loaded.__dict__.items() if k != "__xpm__"}
    placeholder.__dict__.update(values)
    placeholder.__xpm__.init_tasks = loaded.__xpm__.init_tasks


def _no_loader(record: ObjectRecord) -> Callable[[], None]:
    def fail() -> None:
        raise ParamsFormatError(
            f"{record.type} refers to the job {record.job}, whose values are not available here "
            f"(read the document with a reference loader)"
        )

    return fail


def from_document(
    doc: ParamsDocument,
    *,
    job: Optional[Path] = None,
    workspace: Optional[Path] = None,
    load_reference: Optional[ReferenceLoader] = None,
) -> Config:
    """Rebuild the (sealed) configuration graph of a params document; returns its root (see
    :func:`build_objects` for all its objects).

    Tasks get no job here (``cfg.__xpm__.job`` stays None): the caller, who knows the workspace
    layout, attaches one, using each task record's ``identifier``. A referenced task (an upstream
    job) gets its values from ``load_reference(record.job)`` on first access.
    """
    objects = build_objects(doc, job=job, workspace=workspace, load_reference=load_reference)
    return objects[doc.root]


def build_objects(
    doc: ParamsDocument,
    *,
    job: Optional[Path] = None,
    workspace: Optional[Path] = None,
    load_reference: Optional[ReferenceLoader] = None,
) -> list[Config]:
    """Every configuration of a params document, in its order (see :func:`from_document`)."""
    bases = _Bases(job or (Path(doc.job) if doc.job else None), workspace or doc.workspace)
    objects: list[Config] = []
    for record in doc.objects:
        cls = _import_class(record)
        t = xpmtype(cls)
        cfg = object.__new__(cls)
        info = ConfigInformation(cfg)
        values = cfg.__dict__
        values["__xpm__"] = info
        if record.job is not None:
            info._tags = dict(record.tags)
            info.tags_cache = dict(record.graph_tags or record.tags)
            info.digest_cache = bytes.fromhex(record.identifier) if record.identifier else None
            info.sealed = True
            if load_reference is None:
                info.loader = _no_loader(record)
            else:
                reference = record.job
                info.loader = lambda cfg=cfg, reference=reference: _fill(  # type: ignore[misc]
                    cfg, load_reference(reference)
                )
            objects.append(cfg)
            continue
        for name, raw in record.fields.items():
            arg = t.arguments.get(name)
            if arg is None:
                raise ParamsFormatError(
                    f"{cls.__qualname__} has no parameter {name!r} any more, but params.json sets it"
                )
            try:
                values[name] = arg.type.convert(_decode(raw, objects, bases))
            except _Reject:
                raise ParamsFormatError(
                    f"{cls.__qualname__}.{name}: the stored value {raw!r} is not a "
                    f"{arg.type.describe()} any more"
                ) from None
        for arg in t.defaults:
            if arg.name not in values:
                values[arg.name] = arg.make_default() if arg.has_default else None
        info._tags = dict(record.tags)
        info.meta = record.meta
        if record.identifier:
            # Computed when the document was written; trusted, so the job process needs no hashing.
            info.digest_cache = bytes.fromhex(record.identifier)
        info.init_tasks = [objects[i] for i in record.init_tasks]  # type: ignore[misc]
        objects.append(cfg)
    for record, cfg in zip(doc.objects, objects):
        if record.task is not None:
            task = objects[record.task]
            if task is not cfg:
                cfg.__xpm__.task = task  # type: ignore[assignment]
        cfg.__xpm__.sealed = True
    return objects


def absolute_paths(text: str) -> list[str]:
    """The absolute paths a params.json text names outside its job folder and workspace (the data
    a job reads where it runs: checked on a remote host at submit)."""
    found: list[str] = []
    stack: list[Any] = [json.loads(text)]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "$path" in value and value.get("base") is None and str(value["$path"]).startswith("/"):
                found.append(str(value["$path"]))
            else:
                stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return sorted(set(found))


def parse_document(text: str, *, source: str = "params.json") -> ParamsDocument:
    """Parse and check the format version of a params document."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsFormatError(f"{source} is not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(data, dict):
        raise ParamsFormatError(f"{source} does not hold a params document")
    version = data.get("xpm_format")
    if version is None:
        if "version" in data and "objects" in data:
            raise ParamsFormatError(
                f"{source} was written by experimaestro {data.get('experimaestro', '2.x')} "
                f"(its format version {data['version']}), which this version does not read"
            )
        raise ParamsFormatError(f"{source} does not hold a params document (no xpm_format)")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ParamsFormatError(
            f"{source} was written in params format {version}, newer than this experimaestro "
            f"reads ({FORMAT_VERSION}): upgrade experimaestro to read it"
        )
    try:
        return _converter.structure(data, ParamsDocument)
    except Exception as exc:  # cattrs raises a ClassValidationError group
        raise ParamsFormatError(f"{source} is not a valid params document: {exc}") from None


def loads(
    text: str,
    *,
    job: Optional[Path] = None,
    workspace: Optional[Path] = None,
    source: str = "params.json",
    load_reference: Optional[ReferenceLoader] = None,
) -> Config:
    """Rebuild the configuration graph stored in params.json text."""
    return from_document(
        parse_document(text, source=source), job=job, workspace=workspace,
        load_reference=load_reference,
    )


__all__ = [
    "FORMAT_VERSION",
    "build_objects",
    "ObjectRecord",
    "ParamsDocument",
    "ParamsFormatError",
    "dumps",
    "from_document",
    "loads",
    "parse_document",
    "to_document",
]
