"""The user's code on a remote host: a content-addressed snapshot of the Python files of the import
folders (what the local launcher puts on ``PYTHONPATH``: the script's folder, the project).

Local side: :func:`take_snapshot` hashes each ``.py`` file of the folders (SHA-256) and the list of
``(folder index, relative path, file hash)`` gives the snapshot's own hash. Non-Python files are not
part of it; hidden folders (``.git``, ``.venv``...), ``__pycache__``, ``site-packages``, virtual
environments and experimaestro workspaces are skipped, and so is every folder or file matching an
``exclude`` pattern. A snapshot larger than ``limit`` bytes is an error that lists the largest
folders and says how to exclude them.

Remote side (:class:`CodeStore`, in the remote workspace)::

    .experimaestro/code/objects/<file hash>                  each file once, read-only
    .experimaestro/code/snapshots/<snapshot hash>/<i>/...     the folders, hard links to the objects

The exchange (:func:`stage` locally, :func:`serve_stage` remotely, over a pair of binary streams, e.g.
``python -m experimaestro stage-receive WORKSPACE``'s stdin and stdout) is:

1. local -> remote: the snapshot's manifest, one JSON line;
2. remote -> local: ``{"missing": [file hashes]}`` (empty when the snapshot is already there);
3. local -> remote: for each missing file a JSON line ``{"object": hash, "size": n}`` then its bytes,
   and ``{"end": true}``;
4. remote -> local: ``{"pythonpath": [folders]}`` once the snapshot is assembled (atomically: a
   snapshot folder is complete or absent), or ``{"error": message}``.

The job's ``PYTHONPATH`` on the remote is that list, in the order of the local import folders.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Optional, Sequence, Union

#: Default size limit of a snapshot, in bytes (Python files only).
DEFAULT_LIMIT = 20 * 2**20
#: The job's environment variable that maps each local import folder to its staged copy (JSON list
#: of ``[local folder, staged folder]``): read where a job loads the script that defined its
#: classes (``core/serialization.py``).
STAGED_CODE_VARIABLE = "XPM_STAGED_CODE"
#: Folder names never walked: caches, virtual environments and installed packages.
SKIPPED_NAMES = ("__pycache__", "site-packages", "dist-packages", "node_modules")
_HASH = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20

PathLike = Union[str, "os.PathLike[str]"]


class StagingError(Exception):
    """Staging the user's code failed: the message names the cause and the fix."""


@dataclass(frozen=True)
class StagedFile:
    """One Python file of a snapshot."""

    folder: int  #: index of its import folder
    path: str  #: path relative to that folder (``/``-separated)
    digest: str  #: SHA-256 of the content (hex)
    size: int
    source: Optional[Path] = None  #: the local file (None on the remote)


@dataclass
class Snapshot:
    """The Python files of the import folders, with the hash that names them as a whole."""

    folders: list[str]
    files: list[StagedFile] = field(default_factory=list)

    @property
    def digest(self) -> str:
        """The snapshot's hash: of the folder count and every ``(folder, path, file hash)``."""
        return manifest_digest(len(self.folders), [(f.folder, f.path, f.digest) for f in self.files])

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def manifest(self) -> dict:
        """What the remote needs to know (no local path)."""
        return {"snapshot": self.digest, "folders": len(self.folders),
                "files": [[f.folder, f.path, f.digest, f.size] for f in self.files]}

    def objects(self) -> dict[str, StagedFile]:
        """One local file per content hash."""
        return {f.digest: f for f in self.files}


def manifest_digest(folders: int, entries: Sequence[tuple[int, str, str]]) -> str:
    digest = hashlib.sha256(f"xpm-code 1 {folders}\n".encode())
    for folder, path, file_digest in sorted(entries):
        digest.update(f"{folder}\0{path}\0{file_digest}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


# --- Local side -----------------------------------------------------------------------------------

#: (path, size, mtime_ns) -> hash: a file is hashed again only when it changed.
_hash_cache: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path, st: os.stat_result) -> str:
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _hash_cache.get(key)
    if digest is None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        _hash_cache[key] = digest
    return digest


def _matches(path: Path, relative: str, exclude: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path.name, p) or fnmatch.fnmatchcase(relative, p)
               or fnmatch.fnmatchcase(str(path), p) for p in exclude)


def _skipped(folder: Path, relative: str, exclude: Sequence[str]) -> bool:
    name = folder.name
    if name.startswith(".") or name in SKIPPED_NAMES or (folder / "pyvenv.cfg").exists():
        return True
    if (folder / ".experimaestro").is_dir() and (folder / "jobs").is_dir():
        return True  # an experimaestro workspace
    return _matches(folder, relative, exclude)


def _python_files(root: Path, exclude: Sequence[str]) -> Iterator[tuple[str, Path, os.stat_result]]:
    """``(relative path, path, stat)`` of the ``.py`` files under ``root``, sorted."""
    stack = [("", root)]
    while stack:
        relative_dir, folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue  # an unreadable folder holds nothing the jobs can import either
        subdirs = []
        for entry in entries:
            relative = f"{relative_dir}/{entry.name}" if relative_dir else entry.name
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if not _skipped(path, relative, exclude):
                    subdirs.append((relative, path))
            elif entry.name.endswith(".py") and entry.is_file() and not _matches(path, relative, exclude):
                yield relative, path, entry.stat()
        stack.extend(reversed(subdirs))


def _largest_folders(files: Sequence[tuple[int, str, int]], folders: Sequence[str],
                     count: int = 5) -> list[tuple[str, int]]:
    """The sub-folders (first two levels) holding the most bytes."""
    sizes: dict[str, int] = {}
    for folder, relative, size in files:
        parts = relative.split("/")[:-1]
        for depth in (1, 2):
            if len(parts) >= depth:
                key = os.path.join(folders[folder], *parts[:depth])
                sizes[key] = sizes.get(key, 0) + size
        if not parts:
            sizes[folders[folder]] = sizes.get(folders[folder], 0) + size
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:count]


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


def take_snapshot(folders: Sequence[PathLike], exclude: Sequence[str] = (),
                  limit: Optional[int] = DEFAULT_LIMIT) -> Snapshot:
    """The snapshot of the ``.py`` files under ``folders`` (in the order of ``PYTHONPATH``).

    ``exclude`` holds :func:`fnmatch.fnmatch` patterns matched against the name of a folder or
    file, its path relative to the import folder, and its absolute path; matching folders are not
    walked. Past ``limit`` bytes (None: no limit), the walk stops and StagingError lists the largest
    folders found."""
    roots = [str(Path(f).resolve()) for f in folders]
    found: list[tuple[int, str, Path, os.stat_result]] = []
    total = 0
    for index, root in enumerate(roots):
        if not os.path.isdir(root):
            continue
        for relative, path, st in _python_files(Path(root), exclude):
            found.append((index, relative, path, st))
            total += st.st_size
            if limit is not None and total > limit:
                break  # no need to walk the rest (a script in a huge home folder)
        if limit is not None and total > limit:
            largest = _largest_folders([(i, rel, st.st_size) for i, rel, _, st in found], roots)
            listing = ", ".join(f"{path} ({_mb(size)})" for path, size in largest)
            raise StagingError(
                f"the Python files to stage for the remote jobs take more than {_mb(limit)} (the limit; "
                f"{_mb(total)} found before stopping). Largest folders: {listing}. Exclude the folders "
                f"the jobs do not import (code_exclude=[\"name-or-glob\", ...] on the connector), "
                f"raise the limit (code_limit=...), or use code=None to rely on what is installed on "
                f"the remote")
    snapshot = Snapshot(folders=roots)
    for index, relative, path, st in found:
        snapshot.files.append(StagedFile(index, relative, _file_digest(path, st), st.st_size, path))
    return snapshot


@dataclass
class Staged:
    """The result of staging a snapshot."""

    pythonpath: list[str]  #: the job's ``PYTHONPATH`` entries on the remote
    sent: list[str] = field(default_factory=list)  #: the hashes of the files sent (those it lacked)
    bytes: int = 0  #: bytes of file content sent

    def pythonpath_value(self) -> str:
        """The value of the job's ``PYTHONPATH`` variable on the (POSIX) remote."""
        return ":".join(self.pythonpath)


def stage(snapshot: Snapshot, to_remote: IO[bytes], from_remote: IO[bytes]) -> Staged:
    """The local side of the exchange: send what the remote lacks; where the snapshot is there."""
    _send_json(to_remote, snapshot.manifest())
    missing = _read_json(from_remote, "the list of missing files").get("missing")
    if not isinstance(missing, list):
        raise StagingError(f"unexpected answer of the remote code store: {missing!r}")
    objects = snapshot.objects()
    result = Staged(pythonpath=[])
    for digest in missing:
        staged = objects.get(digest)
        if staged is None or staged.source is None:
            raise StagingError(f"the remote code store asked for {digest!r}, not in the snapshot")
        data = staged.source.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise StagingError(f"{staged.source} changed while being staged: submit again")
        _send_json(to_remote, {"object": digest, "size": len(data)}, flush=False)
        to_remote.write(data)
        result.sent.append(digest)
        result.bytes += len(data)
    _send_json(to_remote, {"end": True})
    answer = _read_json(from_remote, "the staged PYTHONPATH")
    if "error" in answer:
        raise StagingError(f"staging the code on the remote failed: {answer['error']}")
    result.pythonpath = list(answer["pythonpath"])
    return result


def _send_json(out: IO[bytes], data: dict, flush: bool = True) -> None:
    out.write(json.dumps(data, separators=(",", ":")).encode("ascii") + b"\n")
    if flush:
        out.flush()


def _read_json(stream: IO[bytes], what: str) -> dict:
    line = stream.readline()
    if not line:
        raise StagingError(f"the connection closed while waiting for {what}")
    try:
        data = json.loads(line)
    except ValueError:
        raise StagingError(f"malformed line while waiting for {what}: {line[:200]!r}") from None
    if not isinstance(data, dict):
        raise StagingError(f"malformed line while waiting for {what}: {line[:200]!r}")
    return data


# --- Remote side ----------------------------------------------------------------------------------


def _checked_entry(entry: object, folders: int) -> tuple[int, str, str, int]:
    try:
        folder, path, digest, size = entry  # type: ignore[misc]
        folder, size = int(folder), int(size)
    except (TypeError, ValueError):
        raise StagingError(f"malformed snapshot entry {entry!r}") from None
    parts = str(path).split("/")
    if (not 0 <= folder < folders or not _HASH.fullmatch(str(digest)) or not path.endswith(".py")
            or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in path):
        raise StagingError(f"refused snapshot entry {entry!r}: not a relative .py path with a SHA-256")
    return folder, path, digest, size


class CodeStore:
    """The code store of a (remote) workspace: objects by hash, snapshots assembled from them."""

    def __init__(self, workspace: PathLike) -> None:
        self.root = Path(workspace) / ".experimaestro" / "code"
        self.objects = self.root / "objects"
        self.snapshots = self.root / "snapshots"

    def snapshot_path(self, digest: str) -> Path:
        return self.snapshots / digest

    def pythonpath(self, digest: str, folders: int) -> list[str]:
        return [str(self.snapshot_path(digest) / str(i)) for i in range(folders)]

    def check(self, manifest: dict) -> list[tuple[int, str, str, int]]:
        """The manifest's entries, validated (and its hash recomputed)."""
        try:
            folders, digest, raw = int(manifest["folders"]), str(manifest["snapshot"]), manifest["files"]
        except (KeyError, TypeError, ValueError):
            raise StagingError(f"malformed snapshot manifest: {str(manifest)[:200]}") from None
        entries = [_checked_entry(e, folders) for e in raw]
        if manifest_digest(folders, [e[:3] for e in entries]) != digest:
            raise StagingError("the snapshot's hash does not match its files: install the same "
                               "experimaestro version on both hosts")
        return entries

    def missing(self, manifest: dict) -> list[str]:
        """The file hashes of the manifest that the store does not hold (none when the snapshot is
        already assembled)."""
        entries = self.check(manifest)
        if self.snapshot_path(manifest["snapshot"]).is_dir():
            return []
        return sorted({e[2] for e in entries if not (self.objects / e[2]).is_file()})

    def add(self, digest: str, data: IO[bytes], size: int) -> None:
        """Store ``size`` bytes read from ``data`` as object ``digest`` (checked, atomically)."""
        if not _HASH.fullmatch(digest):
            raise StagingError(f"refused object name {digest!r}: not a SHA-256")
        self.objects.mkdir(parents=True, exist_ok=True)
        hasher = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.objects, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                left = size
                while left:
                    chunk = data.read(min(left, _CHUNK))
                    if not chunk:
                        raise StagingError(f"the stream ended inside object {digest}")
                    hasher.update(chunk)
                    handle.write(chunk)
                    left -= len(chunk)
            if hasher.hexdigest() != digest:
                raise StagingError(f"object {digest} arrived with another content (hash mismatch)")
            os.chmod(tmp, 0o444)  # hard-linked into snapshots: never edited in place
            os.replace(tmp, self.objects / digest)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def assemble(self, manifest: dict) -> list[str]:
        """Build the snapshot folder from the objects (hard links, copies across file systems),
        atomically; its ``PYTHONPATH`` entries."""
        entries = self.check(manifest)
        digest, folders = manifest["snapshot"], int(manifest["folders"])
        target = self.snapshot_path(digest)
        if not target.is_dir():
            absent = sorted({e[2] for e in entries if not (self.objects / e[2]).is_file()})
            if absent:
                raise StagingError(f"{len(absent)} files of snapshot {digest} are not in the store")
            self.snapshots.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.snapshots, prefix=".tmp-"))
            try:
                for i in range(folders):
                    (tmp / str(i)).mkdir()
                for folder, path, file_digest, _ in entries:
                    destination = tmp / str(folder) / path
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(self.objects / file_digest, destination)
                    except OSError:
                        shutil.copyfile(self.objects / file_digest, destination)
                os.chmod(tmp, 0o755)
                try:
                    os.rename(tmp, target)
                except OSError:
                    if not target.is_dir():  # else another controller assembled it first
                        raise
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp)
        return self.pythonpath(digest, folders)


def serve_stage(workspace: PathLike, instream: IO[bytes], out: IO[bytes]) -> list[str]:
    """The remote side of the exchange for the workspace ``workspace`` (what
    ``python -m experimaestro stage-receive WORKSPACE`` runs on stdin and stdout)."""
    store = CodeStore(workspace)
    try:
        manifest = _read_json(instream, "the snapshot manifest")
        _send_json(out, {"missing": store.missing(manifest)})
        while True:
            header = _read_json(instream, "a staged file")
            if header.get("end"):
                break
            store.add(str(header.get("object")), instream, int(header.get("size", 0)))
        pythonpath = store.assemble(manifest)
    except (StagingError, OSError) as exc:
        _send_json(out, {"error": str(exc)})
        raise
    _send_json(out, {"pythonpath": pythonpath})
    return pythonpath
