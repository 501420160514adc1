"""What the monitor's API answers: a page of jobs, one job's details, a log chunk, the timeline.

Lists come from the in-memory index (:mod:`.index`); a job's details and logs are read from its
folder when asked for. The parameters tree is built from ``params.json`` as a plain document; only
the ``explain-id`` view imports the experiment's classes (and says so when they cannot be found).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from .index import JobIndex
from .records import JobRecord

#: The most rows a page of the job list holds.
MAX_PAGE = 500
#: How much of a log the job page shows at first (its end), in bytes.
LOG_TAIL = 64 * 1024


def _tag_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _matches(record: JobRecord, states: set[str], tags: dict[str, str], words: list[str]) -> bool:
    if states and record.state not in states:
        return False
    for key, value in tags.items():
        if key not in record.tags or (value and _tag_text(record.tags[key]) != value):
            return False
    if words:
        text = " ".join(
            [record.typeid, record.identifier, record.host, record.slurm_jobid or ""]
            + [f"{k}={_tag_text(v)}" for k, v in record.tags.items()]
        ).lower()
        return all(word in text for word in words)
    return True


def parse_tag_filters(values: list[str]) -> dict[str, str]:
    """``["model=bert", "lr"]`` -> ``{"model": "bert", "lr": ""}`` (a bare key: the tag is set)."""
    result = {}
    for value in values:
        key, _, text = value.partition("=")
        if key:
            result[key] = text
    return result


def job_page(
    index: JobIndex,
    experiment: Optional[str],
    states: set[str],
    tags: dict[str, str],
    search: str,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    """One page of the (filtered) job list, newest submission first, with the counts per state and
    the tag values seen (for the filters)."""
    limit = max(1, min(limit, MAX_PAGE))
    words = search.lower().split()
    records, tag_values = index.listing(experiment)
    if states or tags or words:
        selected = [r for r in records if _matches(r, states, tags, words)]
    else:
        selected = records
    rows = []
    with index.lock:
        for record in selected[offset : offset + limit]:
            row = record.summary()
            row["experiments"] = sorted(index.job_experiments.get(record.key, ()))
            rows.append(row)
    return {
        "experiment": experiment,
        "total": len(selected),
        "offset": offset,
        "limit": limit,
        "counts": index.counts(experiment),
        "tags": tag_values,
        "jobs": rows,
    }


def timeline(index: JobIndex, experiment: Optional[str]) -> dict[str, Any]:
    """One bar per job: ``[key, state, submitted, started, ended]``, by submission time."""
    records = sorted(index.records(experiment), key=lambda r: (r.submitted or 0.0, r.key))
    return {
        "experiment": experiment,
        "jobs": [[r.key, r.state, r.submitted, r.started, r.ended] for r in records],
    }


# --- one job --------------------------------------------------------------------------------------


def _value_tree(value: Any, objects: list[dict[str, Any]], shown: set[int]) -> Any:
    if isinstance(value, list):
        return [_value_tree(v, objects, shown) for v in value]
    if not isinstance(value, dict):
        return value
    if "$config" in value:
        return _config_tree(int(value["$config"]), objects, shown)
    if "$path" in value:
        base = value.get("base")
        return f"{'<' + base + '>/' if base else ''}{value['$path']}"
    if "$enum" in value:
        return f"{value['$enum']}.{value.get('name')}"
    if "$tuple" in value or "$set" in value:
        return [_value_tree(v, objects, shown) for v in value.get("$tuple", value.get("$set", []))]
    if "$dict" in value:
        return {str(_value_tree(k, objects, shown)): _value_tree(v, objects, shown)
                for k, v in value["$dict"]}
    return value


def _config_tree(i: int, objects: list[dict[str, Any]], shown: set[int]) -> dict[str, Any]:
    record = objects[i]
    node: dict[str, Any] = {"$type": record.get("typeid") or record.get("type")}
    if record.get("job"):
        parts = Path(record["job"]).parts
        node["$job"] = f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else record["job"]
        return node
    if i in shown:
        node["$seen"] = True  # a shared configuration: its values are shown where it first appears
        return node
    shown.add(i)
    for name, value in sorted((record.get("fields") or {}).items()):
        node[name] = _value_tree(value, objects, shown)
    return node


def params_tree(path: Path) -> Any:
    """The parameters of a job as a nested tree (``$type`` names each configuration, ``$job``
    links to an upstream job)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    objects = data.get("objects") or []
    return _config_tree(int(data.get("root", 0)), objects, set())


def explain_text(path: Path) -> dict[str, Any]:
    """The ``explain-id`` view of a job (needs the experiment's classes to be importable)."""
    from ..core.explain import explain
    from ..core.serialization import from_document, parse_document

    try:
        document = parse_document(path.read_text(encoding="utf-8"), source=str(path))
        config = from_document(document, job=path.parent)
        return {"text": str(explain(config))}
    except Exception as exc:  # the user's classes: anything may fail, and is only reported
        return {
            "error": (
                f"cannot rebuild the configuration here ({type(exc).__name__}: {exc}); run "
                f"`experimaestro explain-id {path}` where the experiment's classes are importable"
            )
        }


def job_details(index: JobIndex, key: str) -> Optional[dict[str, Any]]:
    """Everything the job page shows, except the explain view and the logs."""
    with index.lock:
        record = index.jobs.get(key)
        if record is None:
            return None
        details = record.summary()
        details["experiments"] = sorted(index.job_experiments.get(key, ()))
        details["failure"] = record.failure
        details["progress_levels"] = record.progress
        details["dependencies"] = [
            {"key": dep, "state": index.jobs[dep].state if dep in index.jobs else "missing"}
            for dep in record.dependencies
        ]
        details["dependents"] = [
            {"key": dep, "state": index.jobs[dep].state if dep in index.jobs else "missing"}
            for dep in sorted(index.dependents.get(key, ()))
        ]
    details["path"] = str(record.path)
    files = record.files
    try:
        details["params"] = params_tree(files.params)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        details["params"] = None
        details["params_error"] = f"cannot read {files.params}: {exc}"
    details["logs"] = {
        name: _size(getattr(files, name)) for name in ("stdout", "stderr")
    }
    details["remote"] = _remote(record.path)
    return details


def _remote(path: Path) -> Optional[dict[str, Any]]:
    """Where the job's folder is on the host it ran on (``.remote.json``), None for a local job."""
    from ..connectors.remote_record import RemoteRecordError, read_remote_record

    try:
        record = read_remote_record(path)
    except RemoteRecordError as exc:
        return {"error": str(exc)}
    if record is None:
        return None
    return {"location": record.location(), "synced_at": record.synced_at}


def _size(path: Path) -> Optional[int]:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def job_log(record: JobRecord, stream: str, offset: Optional[int], wait: bool = False) -> dict[str, Any]:
    """A chunk of a job's log (see :func:`read_log`); for a job running on another host, read
    there (``remote_logs.remote_log``: ``wait`` waits there for more)."""
    from .remote_logs import remote_log, running_remotely

    files = record.files
    remote = running_remotely(files)
    if remote is not None:
        return remote_log(files, remote, stream, record.key, offset, LOG_TAIL, wait)
    return read_log(getattr(files, stream), offset)


def read_log(path: Path, offset: Optional[int], limit: int = LOG_TAIL) -> dict[str, Any]:
    """A chunk of a log: from ``offset`` (at most ``limit`` bytes), or its last ``limit`` bytes."""
    try:
        with open(path, "rb") as log:
            size = os.fstat(log.fileno()).st_size
            if offset is None or offset > size:
                offset = max(0, size - limit)
            log.seek(offset)
            data = log.read(limit)
    except FileNotFoundError:
        return {"offset": 0, "next": 0, "size": None, "text": ""}
    return {
        "offset": offset,
        "next": offset + len(data),
        "size": size,
        "text": data.decode("utf-8", errors="replace"),
    }


__all__ = ["explain_text", "job_details", "job_log", "job_page", "params_tree", "read_log", "timeline"]
