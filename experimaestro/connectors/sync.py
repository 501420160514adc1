"""Incremental copy of a folder as ONE tar stream (the sync-back of remote job folders).

The two halves talk over a pair of binary streams (a paramiko channel, a pipe, or in-process):

1. the **receiver** (the side that wants a copy) sends a request, one JSON line: what it already has
   (relative path, size, modification time in ns; symbolic links with their target), the exclude
   patterns and whether excluded files are wanted anyway (``include_excluded``);
2. the **sender** answers with a tar stream (PAX) of only the files that are new or differ by size or
   modification time, then a last member, :data:`INDEX_NAME`, listing every path it has (so the
   receiver removes what the sender no longer has, and knows the stream is complete);
3. the receiver extracts it safely: each member's name is checked (no absolute path, no ``..``, no
   link pointing outside the folder, no hard link, device or fifo), each file is written to a
   temporary name and renamed (never a half-written file), and gets the sender's mode and exact
   modification time, so that the next request shows it as up to date.

The folder may change while it is sent (a running job): a file that disappears between the listing
and its reading is left out, one that grows is sent as long as it was when listed, one that shrinks
is padded with zeros; in both last cases its modification time then differs, so the next
synchronisation sends it again.

Exclude patterns are :func:`fnmatch.fnmatch` patterns matched against the relative path (``/``
separated; ``*`` also matches ``/``, so ``*.ckpt`` excludes checkpoints in every sub-folder) and
against each of its parent folders (``checkpoints`` excludes the whole folder). Excluded files are
neither sent nor deleted on the receiver.

On the remote host, ``python -m experimaestro sync-send ROOT`` runs :func:`serve_send` on its
standard input and output; :func:`receive` is the local half. The other way round (a local folder
copied to the remote host, merged into what is there), ``python -m experimaestro sync-receive ROOT``
runs :func:`serve_receive` remotely and :func:`serve_send` runs locally. :func:`sync_folders` does both in
one process (two threads over a pipe), for local copies and tests.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ContextManager, Iterator, Optional, Protocol, Sequence, Union

from .remote_record import RECORD_NAME, RemoteCopy, read_remote_record, write_remote_record
from .streams import StreamEnded, thread_streams

#: The name of the tar stream's last member: the sender's list of paths (never written to disk).
INDEX_NAME = ".xpm-sync-index.json"
#: Names the receiver never overwrites nor deletes (its own records about the copy).
PROTECTED = (RECORD_NAME,)
#: Version of the request line; a sender refuses a request of another version.
PROTOCOL = 1
#: Buffer size of the tar streams (large buffers keep a channel's throughput up).
BUFSIZE = 1 << 20
#: A received file at most this big is compared with the receiver's file of the same size, which
#: is kept (given the sender's time) when it holds the same bytes.
SAME_LIMIT = 1 << 16

PathLike = Union[str, "os.PathLike[str]"]


class SyncError(Exception):
    """A synchronisation failed: the message names the file or member and the cause."""


class SyncStreamEnded(SyncError, StreamEnded):
    """The sender's stream ended early (the sender failed, or the connection dropped)."""


@dataclass
class SyncRequest:
    """What the receiver has, and what it wants (the first line of the exchange)."""

    #: relative path -> (size, modification time in ns) of the receiver's regular files
    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: relative path -> target of the receiver's symbolic links
    links: dict[str, str] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)
    include_excluded: bool = False

    def to_line(self) -> bytes:
        data = {"xpm-sync": PROTOCOL, "exclude": self.exclude, "include_excluded": self.include_excluded,
                "files": {p: list(v) for p, v in self.files.items()}, "links": self.links}
        return json.dumps(data, separators=(",", ":")).encode("ascii") + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> "SyncRequest":
        try:
            data = json.loads(line)
            if data.get("xpm-sync") != PROTOCOL:
                raise SyncError(f"sync request of protocol {data.get('xpm-sync')!r}, this side speaks "
                                f"{PROTOCOL}: install the same experimaestro version on both hosts")
            return cls(files={p: (int(s), int(m)) for p, (s, m) in data["files"].items()},
                       links=dict(data["links"]), exclude=list(data["exclude"]),
                       include_excluded=bool(data["include_excluded"]))
        except SyncError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SyncError(f"malformed sync request ({exc}): {line[:200]!r}") from None


@dataclass
class SyncStats:
    """What one synchronisation moved."""

    files: int = 0  #: files (and links) sent or written
    bytes: int = 0  #: bytes of file data sent or written
    deleted: int = 0  #: files removed on the receiver because the sender no longer has them
    paths: list[str] = field(default_factory=list)  #: the relative paths sent or written


# --- Patterns and walking -------------------------------------------------------------------------


def is_excluded(relative: str, patterns: Sequence[str]) -> bool:
    """Whether ``relative`` (``/``-separated) or one of its parent folders matches a pattern."""
    if not patterns:
        return False
    parts = relative.split("/")
    for i in range(len(parts), 0, -1):
        prefix = "/".join(parts[:i])
        if any(fnmatch.fnmatchcase(prefix, p) or fnmatch.fnmatchcase(prefix, p.rstrip("/"))
               for p in patterns):
            return True
    return False


def _walk(root: Path, exclude: Sequence[str]) -> Iterator[tuple[str, os.stat_result]]:
    """``(relative path, lstat)`` of the entries under ``root`` that are not excluded, folders first
    (excluded folders are not entered)."""
    stack = [""]
    while stack:
        relative_dir = stack.pop()
        try:
            entries = sorted(os.scandir(root / relative_dir), key=lambda e: e.name)
        except FileNotFoundError:
            continue  # removed while we walk (a running job's temporary folder)
        except OSError as exc:
            raise SyncError(f"cannot list {root / relative_dir}: {exc.strerror}") from None
        subdirs = []
        for entry in entries:
            relative = f"{relative_dir}/{entry.name}" if relative_dir else entry.name
            if is_excluded(relative, exclude):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield relative, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(relative)
        stack.extend(reversed(subdirs))


def scan(root: PathLike, exclude: Sequence[str] = ()) -> SyncRequest:
    """The receiver's view of ``root`` (its files and links, excluded ones left out), as a request.

    A missing ``root`` is an empty folder."""
    root = Path(root)
    request = SyncRequest(exclude=list(exclude))
    if not root.is_dir():
        return request
    for relative, st in _walk(root, ()):
        if relative in PROTECTED:
            continue
        if stat.S_ISREG(st.st_mode):
            request.files[relative] = (st.st_size, st.st_mtime_ns)
        elif stat.S_ISLNK(st.st_mode):
            request.links[relative] = os.readlink(root / relative)
    return request


# --- The sender ---------------------------------------------------------------------------------


class _Padded(io.RawIOBase):
    """A file read for exactly ``size`` bytes: zeros past its end (a file that shrank while being
    sent; its modification time then differs, so the next synchronisation sends it again)."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self.handle, self.left = handle, size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.handle.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data


class _Coalesce:
    """Gathers tarfile's small writes into chunks of :data:`BUFSIZE` (one channel packet train
    instead of thousands of 10 KB writes)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.buffer = out, bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        if len(self.buffer) >= BUFSIZE:
            self.out.write(bytes(self.buffer))
            self.buffer.clear()
        return len(data)

    def flush(self) -> None:
        if self.buffer:
            self.out.write(bytes(self.buffer))
            self.buffer.clear()
        self.out.flush()


def _mtime_text(mtime_ns: int) -> str:
    return f"{mtime_ns // 1_000_000_000}.{mtime_ns % 1_000_000_000:09d}"


def _mtime_ns(member: tarfile.TarInfo) -> int:
    """The exact modification time of a member (its PAX ``mtime``, else the ustar seconds)."""
    text = member.pax_headers.get("mtime")
    if text:
        seconds, _, fraction = text.partition(".")
        return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])
    return int(member.mtime) * 1_000_000_000


def _changes(root: Path, request: SyncRequest, index: dict[str, list[str]]
             ) -> Iterator[tuple[str, os.stat_result, Optional[str], Optional[IO[bytes]]]]:
    """What answers ``request`` for ``root``: ``(relative path, lstat, link target, open file)``
    of each link (target) and regular file (open, closed when the next one is asked for) that is
    new or differs; ``index`` receives every path the sender has."""
    exclude = () if request.include_excluded else request.exclude
    for relative, st in _walk(root, exclude):
        if relative in PROTECTED or relative == INDEX_NAME:
            continue
        if stat.S_ISDIR(st.st_mode):
            index["dirs"].append(relative)
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(root / relative)
            except FileNotFoundError:
                continue
            index["links"].append(relative)
            if request.links.get(relative) != target:
                yield relative, st, target, None
        elif stat.S_ISREG(st.st_mode):
            if request.files.get(relative) == (st.st_size, st.st_mtime_ns):
                index["files"].append(relative)
                continue
            try:
                handle = open(root / relative, "rb")
            except FileNotFoundError:
                continue  # removed since the listing (a running job's temporary file)
            except OSError as exc:
                raise SyncError(f"cannot read {root / relative}: {exc.strerror}") from None
            index["files"].append(relative)
            with handle:
                yield relative, st, None, handle
        # sockets, fifos and devices are not copied


def _index() -> dict[str, list[str]]:
    return {"files": [], "links": [], "dirs": []}


def send(root: PathLike, request: SyncRequest, out: IO[bytes]) -> SyncStats:
    """Write to ``out`` the tar stream answering ``request`` for the folder ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise SyncError(f"{root} is not a folder on this host (the job folder was removed?)")
    stats = SyncStats()
    index = _index()
    chunks = _Coalesce(out)
    with tarfile.open(fileobj=chunks, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for relative, st, target, handle in _changes(root, request, index):
            info = tarfile.TarInfo(relative)
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = st.st_mtime_ns // 1_000_000_000
            info.pax_headers = {"mtime": _mtime_text(st.st_mtime_ns)}
            if handle is None:
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            else:
                info.size = st.st_size
                tar.addfile(info, _Padded(handle, st.st_size))
                stats.bytes += st.st_size
            stats.files += 1
            stats.paths.append(relative)
        data = json.dumps(index).encode("utf-8")
        info = tarfile.TarInfo(INDEX_NAME)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    chunks.flush()
    return stats


def serve_send(root: PathLike, instream: IO[bytes], out: IO[bytes]) -> SyncStats:
    """The sender's whole side: read the request line from ``instream``, answer on ``out``
    (what ``python -m experimaestro sync-send ROOT`` runs on stdin and stdout)."""
    line = instream.readline()
    if not line:
        raise SyncError("no sync request received (the receiver closed the stream)")
    return send(root, SyncRequest.from_line(line), out)


#: The first bytes of a bounded answer (:func:`send_bounded`), before its JSON header line.
BUNDLE_MAGIC = b"xpm-sync-bundle 1\n"


def send_bounded(root: PathLike, request: SyncRequest, limit: int) -> Optional[bytes]:
    """The answer to ``request`` for ``root`` as bytes, or None when its files hold more than
    ``limit`` bytes: a small job folder then travels inside one request to the remote agent,
    without starting a sender process; a big one goes through :func:`serve_send` on a channel of
    its own. The same answer as :func:`send`'s tar stream in a leaner form (a JSON header
    listing the members and the index, then the files' bytes; zlib-compressed): small files
    cost a fraction of a tar member each to write and to read."""
    root = Path(root)
    if not root.is_dir():
        raise SyncError(f"{root} is not a folder on this host (the job folder was removed?)")
    index = _index()
    members: list[list] = []
    parts: list[bytes] = []
    size = 0
    for relative, st, target, handle in _changes(root, request, index):
        mode = stat.S_IMODE(st.st_mode)
        if handle is None:
            members.append([relative, "link", mode, st.st_mtime_ns, target])
            continue
        size += st.st_size
        if size > limit:
            return None
        parts.append(_Padded(handle, st.st_size).read())
        members.append([relative, "file", mode, st.st_mtime_ns, st.st_size])
    header = json.dumps({"members": members, "index": index}, separators=(",", ":")).encode("utf-8")
    return zlib.compress(b"".join([BUNDLE_MAGIC, header, b"\n", *parts]), 1)


def receive_bytes(root: PathLike, data: bytes, request: SyncRequest, delete: bool = True) -> SyncStats:
    """Extract an answer made by :func:`send_bounded` into ``root``, with the checks and
    guarantees of :func:`receive`."""
    try:
        raw = zlib.decompress(data)
        if not raw.startswith(BUNDLE_MAGIC):
            raise ValueError("not a sync bundle")
        end = raw.index(b"\n", len(BUNDLE_MAGIC))
        header = json.loads(raw[len(BUNDLE_MAGIC):end])
        members, index = header["members"], header["index"]
    except (zlib.error, ValueError, KeyError, TypeError) as exc:
        raise SyncError(f"a damaged sync answer for {root} ({exc}): sync again") from None
    receiver = _Receiver(Path(root), request.files)
    stats = SyncStats()
    view, offset = memoryview(raw), end + 1
    try:
        for name, kind, mode, mtime_ns, value in members:
            if kind == "file":
                chunk = view[offset:offset + int(value)]
                if len(chunk) != int(value):
                    raise SyncStreamEnded(f"the sync answer for {root} is cut short: sync again")
                offset += len(chunk)
                receiver.member(name, kind, int(mode), int(mtime_ns), chunk, stats)
            else:
                receiver.member(name, kind, int(mode), int(mtime_ns), str(value), stats)
    except OSError as exc:
        raise SyncError(f"cannot write {exc.filename or root}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise SyncError(f"a damaged sync answer for {root} ({exc}): sync again") from None
    receiver.finish(index, request, delete, stats)
    return stats


# --- The receiver -------------------------------------------------------------------------------


def _checked_name(name: str) -> str:
    """A member name as a safe relative path, or SyncError."""
    if not name or "\0" in name or name.startswith("/"):
        raise SyncError(f"refused tar member {name!r}: not a plain relative path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise SyncError(f"refused tar member {name!r}: it points outside the folder")
    return "/".join(parts)


def _inside(root_real: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


class _Receiver:
    """Extracts the members of one stream under ``root``, refusing anything unsafe."""

    def __init__(self, root: Path, have: Optional[dict[str, tuple[int, int]]] = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        #: The files this side had (the request's): one of the same size may hold the same bytes.
        self.have = have or {}
        self._real: Optional[str] = None
        #: Folders found inside the root and made: checked once (until a link is written or a
        #: folder removed, which may change where a path leads).
        self._checked: set[str] = set()

    def target(self, name: str) -> str:
        """The path to write for a checked name; its parent folder created, and inside the root
        even through links already there."""
        path = os.path.join(self.root, *name.split("/"))
        parent = os.path.dirname(path)
        if parent in self._checked:
            return path
        if self._real is None:  # resolved once, when a member comes (most answers have none)
            self._real = os.path.realpath(self.root)
        if not _inside(self._real, parent):
            raise SyncError(f"refused tar member {name!r}: its folder is a link leading outside "
                            f"{self.root}")
        if not os.path.isdir(parent):
            if os.path.lexists(parent):
                os.unlink(parent)  # a file (or link) where the sender now has a folder
            os.makedirs(parent, exist_ok=True)
        self._checked.add(parent)
        return path

    def folder(self, name: str) -> None:
        """Create the folder of a checked name (inside the root)."""
        os.makedirs(self.target(name + "/."), exist_ok=True)

    @contextlib.contextmanager
    def _replacing(self, path: str) -> Iterator[str]:
        """A temporary name next to ``path``, to write; renamed over ``path`` when the block ends
        well (a folder there is removed first), removed when it fails: never a half-written file."""
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.xpm-sync")
        try:
            yield tmp
            try:
                os.replace(tmp, path)
            except IsADirectoryError:  # the sender has a file where this side has a folder
                shutil.rmtree(path)
                self._checked.clear()
                os.replace(tmp, path)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise

    def member(self, name: str, kind: str, mode: int, mtime_ns: int,
               source: Union[IO[bytes], memoryview, str], stats: SyncStats) -> None:
        """Write one member (``kind``: "file" with its data, "link" with its target), its name
        checked first."""
        name = _checked_name(name)
        if name in PROTECTED:
            raise SyncError(f"refused tar member {name!r}: a record of the receiver")
        if kind == "file":
            assert not isinstance(source, str)
            self.write_file(name, mode, mtime_ns, source)
            stats.bytes += len(source) if isinstance(source, memoryview) else 0
        elif kind == "link":
            assert isinstance(source, str)
            self.write_link(name, source)
        else:
            raise SyncError(f"refused tar member {name!r}: {kind} is never extracted")
        stats.files += 1
        stats.paths.append(name)

    def write_file(self, name: str, mode: int, mtime_ns: int, data: Union[IO[bytes], memoryview]
                   ) -> None:
        if isinstance(data, memoryview) and self._same(name, mode, mtime_ns, data):
            return
        with self._replacing(self.target(name)) as tmp:
            # Everything through the descriptor: no path looked up again (many small files).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                if isinstance(data, memoryview):
                    _write_all(fd, data)
                else:
                    while chunk := data.read(BUFSIZE):
                        _write_all(fd, memoryview(chunk))
                os.fchmod(fd, mode & 0o777)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)

    def _same(self, name: str, mode: int, mtime_ns: int, data: memoryview) -> bool:
        """When this side's file already holds ``data`` (e.g. the params.json written here at
        the job's launch), give it the sender's mode and time without writing it again; True
        then. A file's creation costs far more than reading a small one."""
        have = self.have.get(name)
        if have is None or have[0] != len(data) or len(data) > SAME_LIMIT:
            return False
        try:
            fd = os.open(self.target(name), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            if os.read(fd, len(data) + 1) != data:
                return False
            os.fchmod(fd, mode & 0o777)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
            return True
        finally:
            os.close(fd)

    def write_link(self, name: str, target: str) -> None:
        resolved = os.path.normpath(os.path.join(os.path.dirname(name), target))
        if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
            raise SyncError(f"refused tar member {name!r}: a link to {target!r}, outside the folder")
        with self._replacing(self.target(name)) as tmp:
            os.symlink(target, tmp)
        self._checked.clear()

    def finish(self, index: Optional[dict], request: SyncRequest, delete: bool, stats: SyncStats) -> None:
        """After the last member: the sender's folders made, and with ``delete`` the files it no
        longer has removed."""
        if index is None:
            raise SyncStreamEnded("the tar stream ended before its index: the sender failed or the "
                                  "connection dropped; the files received so far are complete, sync again")
        try:
            self.folders(index)
        except OSError as exc:
            raise SyncError(f"cannot create {exc.filename or self.root}: {exc.strerror or exc}") from None
        if delete and (request.files or request.links):  # else there was nothing to remove
            exclude = () if request.include_excluded else request.exclude
            stats.deleted = len(self.prune(index, exclude))

    def folders(self, index: dict) -> None:
        """Create the sender's folders (empty ones too: the tar stream carries only files)."""
        for folder in index.get("dirs", ()):
            self.folder(_checked_name(folder))

    def prune(self, index: dict, exclude: Sequence[str]) -> list[str]:
        """Remove the files and links the sender no longer has (excluded and protected ones stay)."""
        kept = set(index.get("files", ())) | set(index.get("links", ()))
        removed = []
        for relative, st in list(_walk(self.root, ())):
            if stat.S_ISDIR(st.st_mode) or relative in kept or relative in PROTECTED:
                continue
            if is_excluded(relative, exclude):
                continue
            os.unlink(self.root / relative)
            removed.append(relative)
        return removed


def receive(root: PathLike, stream: IO[bytes], request: SyncRequest, delete: bool = True) -> SyncStats:
    """Extract the tar stream answering ``request`` into ``root``, safely (see the module's
    docstring); with ``delete``, remove the files the sender no longer has. SyncError when a member
    is unsafe or the stream ends early: the files written before stay (each one whole)."""
    receiver = _Receiver(Path(root))
    stats = SyncStats()
    index = None
    try:
        tar = tarfile.open(fileobj=stream, mode="r|")
    except tarfile.ReadError as exc:
        raise SyncStreamEnded(f"the sender sent no tar stream ({exc}): see its error output") from None
    with tar:
        try:
            for member in tar:
                if index is not None:
                    raise SyncError(f"refused tar member {member.name!r}: after the end of the index")
                if member.name == INDEX_NAME and member.isreg():
                    index = json.loads(tar.extractfile(member).read())
                    continue
                if member.isdir():
                    receiver.folder(_checked_name(member.name))
                    continue
                if member.isreg():
                    receiver.member(member.name, "file", member.mode, _mtime_ns(member),
                                    tar.extractfile(member), stats)
                    stats.bytes += member.size
                elif member.issym():
                    receiver.member(member.name, "link", member.mode, _mtime_ns(member),
                                    member.linkname, stats)
                else:
                    kind = "a hard link" if member.islnk() else "a device or fifo"
                    receiver.member(member.name, kind, 0, 0, "", stats)
        except OSError as exc:
            raise SyncError(f"cannot write {exc.filename or root}: {exc.strerror or exc}") from None
        except (tarfile.TarError, EOFError) as exc:
            raise SyncStreamEnded(f"the tar stream broke off ({exc}): the sender failed or the connection "
                            f"dropped; the files received so far are complete, sync again") from None
    receiver.finish(index, request, delete, stats)
    return stats


def pull(root: PathLike, to_sender: IO[bytes], from_sender: IO[bytes], exclude: Sequence[str] = (),
         include_excluded: bool = False, delete: bool = True) -> SyncStats:
    """The receiver's whole side: scan ``root``, send the request on ``to_sender``, extract the
    answer read from ``from_sender`` (e.g. the stdin and stdout of a remote
    ``python -m experimaestro sync-send REMOTE_ROOT``). With ``delete=False`` it merges: the files of
    ``root`` that the sender does not have stay (``copy_to_local``)."""
    request = scan(root, exclude)
    request.include_excluded = include_excluded
    to_sender.write(request.to_line())
    to_sender.flush()
    return receive(root, from_sender, request, delete=delete)


def serve_receive(root: PathLike, instream: IO[bytes], out: IO[bytes]) -> SyncStats:
    """The receiver's whole side when the folder is sent TO this host (``copy_from_local``: what
    ``python -m experimaestro sync-receive ROOT`` runs): the request goes to ``out``, the tar stream
    comes from ``instream``; the files of ``root`` the sender does not have are kept (a merge)."""
    return pull(root, out, instream, delete=False)


def sync_folders(source: PathLike, destination: PathLike, exclude: Sequence[str] = (),
                 include_excluded: bool = False, delete: bool = True) -> SyncStats:
    """Copy ``source`` into ``destination`` incrementally, through the same stream protocol (the
    sender in a thread, over pipes)."""
    with thread_streams(lambda instream, out: serve_send(source, instream, out)) as (to_sender, from_sender):
        return pull(destination, to_sender, from_sender, exclude, include_excluded, delete)


# --- A job folder -------------------------------------------------------------------------------


class SyncChannel(Protocol):
    """What a connector offers to synchronise a folder it holds (the SSH connector: the stdin and
    stdout of ``python -m experimaestro sync-send REMOTE_ROOT`` on one channel; it may also offer
    ``sync_bounded(requests) -> iterable of bytes | None``, the answers of :func:`send_bounded` for many
    ``(remote root, SyncRequest)`` at once, None for a folder too big for it)."""

    def sync_streams(self, remote_root: str) -> ContextManager[tuple[IO[bytes], IO[bytes]]]:
        """Start the sender for ``remote_root``: ``(to the sender, from the sender)``; leaving the
        context closes the channel and raises if the sender failed."""
        ...


def pull_job(jobpath: PathLike, channel: SyncChannel, exclude: Optional[Sequence[str]] = None,
             include_excluded: bool = False) -> SyncStats:
    """Synchronise a local job folder from its remote copy (named by its ``.remote.json``), then
    record the time (what ``experimaestro jobs sync ID`` does). ``exclude`` defaults to the patterns
    of the record; ``include_excluded`` fetches the excluded files too."""
    return pull_jobs([jobpath], channel, exclude, include_excluded)[0]


def pull_jobs(jobpaths: Sequence[PathLike], channel: SyncChannel,
              exclude: Optional[Sequence[str]] = None, include_excluded: bool = False,
              records: Optional[Sequence[RemoteCopy]] = None) -> list[SyncStats]:
    """:func:`pull_job` for many job folders of one host. With a channel that offers
    ``sync_bounded``, the small folders come in one exchange (no sender process started); the
    others each through :meth:`SyncChannel.sync_streams`. ``records``: the folders' remote
    records (read from each folder when not given), written with the time once each is copied."""
    paths = [Path(p) for p in jobpaths]
    if records is None:
        records = []
        for jobpath in paths:
            record = read_remote_record(jobpath)
            if record is None:
                raise SyncError(f"{jobpath} has no {RECORD_NAME}: the job did not run on a remote host")
            records.append(record)
    requests = []
    for jobpath, record in zip(paths, records):
        request = scan(jobpath, record.exclude if exclude is None else exclude)
        request.include_excluded = include_excluded
        requests.append(request)
    bounded = getattr(channel, "sync_bounded", None)
    answers = (bounded([(r.path, q) for r, q in zip(records, requests)]) if bounded is not None
               else [None] * len(paths))
    stats = []
    for jobpath, record, request, answer in zip(paths, records, requests, answers):
        if answer is not None:
            stats.append(receive_bytes(jobpath, answer, request))
        else:
            with channel.sync_streams(record.path) as (to_sender, from_sender):
                to_sender.write(request.to_line())
                to_sender.flush()
                stats.append(receive(jobpath, from_sender, request))
        write_remote_record(jobpath, record.synced())
    return stats
