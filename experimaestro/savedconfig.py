"""``serialize`` and ``deserialize``: a configuration saved to a folder of its own, with the files
of its :data:`~experimaestro.core.datapath.DataPath` parameters, and loaded back (2.x's names).

```python
serialize(model, Path("saved/model"), init_tasks=[LoadWeights.C(model=model)])
model = deserialize(Path("saved/model"), as_instance=True)   # the object, init tasks run
config, init_tasks = deserialize(Path("saved/model"))        # the configuration
```

The folder holds ``experimaestro.json`` (the configuration graph, in params.json's format, with
every value: tasks are written in full, not as references to their job folders) and ``data/N``,
a copy of each DataPath's file or folder; the loaded DataPath values point to these copies, so the
folder can be moved or shared. Other paths are kept as they were (absolute).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from .core.config import Config
from .core.datapath import data_arguments
from .core.serialization import _converter, build_objects, parse_document, to_document

DEFINITION = "experimaestro.json"


def serialize(
    obj: Config,
    save_directory: Union[str, Path],
    *,
    init_tasks: Iterable[Config] = (),
    definition_filename: str = DEFINITION,
) -> None:
    """Save ``obj`` (and the lightweight ``init_tasks`` to run when it is loaded as an object) in
    ``save_directory``, copying the files of its DataPath parameters."""
    from .connectors.files import atomic_write
    from .connectors.local import LocalConnector

    if not isinstance(obj, Config):
        raise TypeError(f"serialize({obj!r}): give a configuration (built with .C(...))")
    init_tasks = tuple(init_tasks)
    directory = Path(save_directory).absolute()
    _load_references((obj, *init_tasks))
    document = to_document(obj, others=init_tasks, references=False)
    order = _order_of(obj, init_tasks)
    connector = LocalConnector.instance()
    copied = 0
    for cfg, record in zip(order, document.objects):
        for name in data_arguments(type(cfg)):
            value = cfg.__dict__.get(name)
            if value is None:
                continue
            source = Path(value)
            if not source.exists():
                raise FileNotFoundError(
                    f"serialize: {type(cfg).__qualname__}.{name} is a DataPath whose file "
                    f"{source} does not exist, so it cannot be copied"
                )
            relative = f"data/{copied}"
            copied += 1
            connector.copy_from_local(source, directory / relative)
            record.fields[name] = {"$path": relative, "base": "job"}
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / definition_filename, json.dumps(_converter.unstructure(document)))


def _load_references(roots: tuple[Config, ...]) -> None:
    """In a job process, upstream tasks are read from their params.json when first used: read
    them all, since they are written in full."""
    from .core.config import _children, ensure_loaded

    seen: set[int] = set()
    stack = list(roots)
    while stack:
        cfg = stack.pop()
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        ensure_loaded(cfg)
        stack.extend(_children(cfg))


def _order_of(obj: Config, init_tasks: tuple[Config, ...]) -> list[Config]:
    """The configurations in the order of the document's records."""
    from .core.serialization import _ordered_graph

    return _ordered_graph(obj, lambda cfg: False, init_tasks)


def deserialize(
    path: Union[str, Path],
    as_instance: bool = False,
    partial_loading: Optional[bool] = None,
    definition_filename: str = DEFINITION,
) -> Any:
    """Load what :func:`serialize` saved in ``path``: ``(configuration, init_tasks)``, or with
    ``as_instance=True`` the object (see ``Config.instance()``) after running the init tasks on
    it. ``partial_loading`` is accepted for 2.x code (everything is always loaded)."""
    directory = Path(path).absolute()
    file = directory / definition_filename
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"deserialize: {file} does not exist (was the folder written by serialize()?)"
        ) from None
    document = parse_document(text, source=str(file))
    objects = build_objects(document, job=directory)
    obj = objects[document.root]
    init_tasks = [objects[i] for i in document.others]
    if not as_instance:
        return obj, init_tasks
    built: dict = {}
    instance = obj.instance(objects=built)
    for task in init_tasks:
        task.instance(objects=built).execute()
    return instance


__all__ = ["deserialize", "serialize"]
