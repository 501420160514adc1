"""Job identifiers: a canonical byte encoding of a configuration, hashed with SHA-256.

The encoding is that of ``docs/identifier.md``. For every configuration experimaestro 2.7.0 can hash,
the bytes (hence the identifier) are the same as 2.7.0's. *Identifier version 2* adds encodings for
what 2.7.0 cannot hash (tuples, integers outside the signed 64-bit range) and removes the depth limit:
the walk below is iterative, so a chain of any length hashes.

Sub-digests are memoised within one computation, and a sealed configuration caches its digest, so a
shared sub-graph is encoded once.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from typing import TYPE_CHECKING, Any, Optional

from .config import Config, InstanceConfig, XPMType, module_name
from .graphpath import parameter_path
from .types import NOTSET, ParamKind, ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from .partial import Partial

_sha256 = hashlib.sha256
_pack_q = struct.Struct("!q").pack
_pack_d = struct.Struct("!d").pack

# Value tags (one byte each).
CONFIG = b"\x00"
INT = b"\x01"
FLOAT = b"\x02"
STR = b"\x03"
NAME_VALUE = b"\x05"
NONE = b"\x06"
LIST = b"\x07"
TASK_OUTPUT = b"\x08"
DICT = b"\x09"
ENUM = b"\x0a"
CYCLE = b"\x0b"
INIT_TASKS = b"\x0c"
INSTANCE = b"\x0d"
SET = b"\x0e"
# Identifier version 2 (values experimaestro 2.7.0 cannot hash).
TUPLE = b"\x0f"
BIGINT = b"\x10"

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class JobIdentifier:
    """A job identifier: 32 bytes; ``str()`` and ``hex()`` give its 64 hex digits.

    (experimaestro 2.x calls its job identifier class ``Identifier``, a name it also gives to the
    type-id namespace builder it exports: ``experimaestro.Identifier`` is that builder, see
    ``core/typeids.py``.)
    """

    __slots__ = ("all",)

    def __init__(self, digest: bytes) -> None:
        self.all = digest

    @property
    def main(self) -> bytes:
        """The digest, under the name 2.x also gives it."""
        return self.all

    def hex(self) -> str:
        return self.all.hex()

    def __str__(self) -> str:
        return self.all.hex()

    def __repr__(self) -> str:
        return f"JobIdentifier({self.all.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobIdentifier) and other.all == self.all

    def __hash__(self) -> int:
        return hash(self.all)


class IdentifierError(ValidationError):
    """A value that no identifier version can encode; the message names the class, the parameter,
    the path to the value when it is nested, the cause and the fix."""


class _Unencodable(Exception):
    """Internal: raised while encoding a value; turned into an :class:`IdentifierError` by the
    configuration that holds the value (which knows the parameter)."""

    def __init__(self, value: Any, problem: str) -> None:
        super().__init__(problem)
        self.value = value
        self.problem = problem


_ENCODABLE = (
    "an identifier encodes only None, bool, int, float, str, Enum members, configurations, and "
    "lists, tuples, sets and dicts of these"
)


def skip_reason(arg: Any, value: Any) -> Optional[str]:
    """Why a parameter with this value is left out of the identifier, or None when it counts.

    ``XPMType.counted`` already excludes ignored and Path parameters; the rules here depend on the
    value too.
    """
    if isinstance(value, Config):
        meta = value.__xpm__.meta
        if meta:
            return "meta config"
        if arg.kind is ParamKind.META and meta is None:
            return "meta"
    elif arg.kind is ParamKind.META:
        return "meta"
    if arg.ignore_default and _equals_default(value, arg.reference_default):
        return "default"
    if value is None and arg.default in (None, NOTSET):
        if arg.default is None or arg.is_optional:
            return "none"
    return None


def _equals_default(value: Any, default: Any) -> bool:
    if default is NOTSET or type(value) is not type(default):
        return False
    if isinstance(value, Config):
        return config_digest(value) == config_digest(default)
    # Meta configurations directly in a list, set or dict are not encoded: they are not compared
    # either (``[setmeta(c)]`` equals the default ``[]``, as in 2.7.0).
    return bool(_without_meta(value) == default)


def _without_meta(value: Any) -> Any:
    if isinstance(value, (list, set, frozenset)):
        kept = (x for x in value if not (isinstance(x, Config) and x.__xpm__.meta))
        return type(value)(kept)
    if isinstance(value, dict):
        return {k: x for k, x in value.items() if not (isinstance(x, Config) and x.__xpm__.meta)}
    return value


def static_skip_reason(arg: Any) -> Optional[str]:
    """Why a parameter is always left out (its declaration alone decides), or None."""
    if arg.kind is ParamKind.META:
        return "meta"
    if arg.ignored:
        return "ignored"
    if arg.is_path:
        return "Path"
    return None


def configs_in(values: list[Any]) -> list[Config]:
    """The configurations inside values, in encoding order: list and tuple items in order, dict
    values by sorted keys, set items in iteration order. Meta configurations are not encoded."""
    found: list[Config] = []
    work = list(reversed(values))
    while work:
        v = work.pop()
        if isinstance(v, Config):
            if not v.__xpm__.meta:
                found.append(v)
        elif isinstance(v, (list, tuple)):
            work.extend(reversed(v))
        elif isinstance(v, dict):
            try:
                keys = sorted(v)
            except TypeError:
                keys = list(v)
            work.extend(v[k] for k in reversed(keys))
        elif isinstance(v, (set, frozenset)):
            work.extend(v)
    return found


class _Frame:
    """One configuration being encoded (an explicit stack replaces recursion)."""

    __slots__ = ("config", "depth", "pending", "low", "contextual", "local")

    def __init__(self, config: Config, depth: int) -> None:
        self.config = config
        self.depth = depth
        self.pending: Optional[list[Config]] = None
        #: The shallowest stack depth this sub-graph refers back to (cycles).
        self.low = depth
        #: True when the encoding depends on the surrounding computation (instance positions).
        self.contextual = False
        #: Digests of children that refer back above themselves: valid only within this frame.
        self.local: dict[int, bytes] = {}


class _Computation:
    """One identifier computation: memo of sub-digests, instance registry, the encoding stack."""

    def __init__(self) -> None:
        self.memo: dict[int, bytes] = {}
        #: InstanceConfig objects seen, grouped by digest, in first-encounter order.
        self.instances: dict[bytes, list[int]] = {}
        self.positions: dict[int, int] = {}
        #: When set, the bytes of each parameter of this configuration are recorded (explain).
        self.record_for: Optional[Config] = None
        self.recorded: dict[str, bytes] = {}
        self.stack: list[_Frame] = []
        self.on_stack: dict[int, int] = {}
        #: For a partial identifier: which parameters of the root configuration count.
        self.partial: Optional[Partial] = None

    def digest(self, root: Config, use_cache: bool = True) -> bytes:
        """The digest of ``root``; without ``use_cache``, the root's cached digest is neither used
        nor replaced (a recomputation that checks it)."""
        cached = root.__xpm__.digest_cache
        if cached is not None and use_cache:
            return cached
        stack = self.stack
        memo = self.memo
        on_stack = self.on_stack
        stack.append(_Frame(root, 0))
        on_stack[id(root)] = 0
        result = b""
        while stack:
            frame = stack[-1]
            if frame.pending is None:
                frame.pending = self._children_to_compute(frame)
            if frame.pending:
                child = frame.pending.pop()
                if id(child) in memo or id(child) in on_stack or id(child) in frame.local:
                    continue
                cached = child.__xpm__.digest_cache
                if cached is not None:
                    memo[id(child)] = cached
                    self._encountered(child, cached)
                    continue
                depth = len(stack)
                stack.append(_Frame(child, depth))
                on_stack[id(child)] = depth
                continue
            # Every sub-digest is known: encode this configuration.
            digest = self._encode(frame)
            self._encountered(frame.config, digest)
            stack.pop()
            del on_stack[id(frame.config)]
            if stack:
                parent = stack[-1]
                if frame.low < parent.low:
                    parent.low = frame.low
                parent.contextual = parent.contextual or frame.contextual
            if frame.low < frame.depth:
                if stack:
                    stack[-1].local[id(frame.config)] = digest
            else:
                memo[id(frame.config)] = digest
                info = frame.config.__xpm__
                if info.sealed and not frame.contextual and (use_cache or frame.depth):
                    info.digest_cache = digest
            result = digest
        return result

    def _children_to_compute(self, frame: _Frame) -> list[Config]:
        """The configurations this one refers to, in encoding order, reversed (popped from the end).

        Order matters: InstanceConfig positions are given in first-encounter order.
        """
        cfg = frame.config
        info = cfg.__xpm__
        children: list[Config] = []
        if info.task is not None:
            children.append(info.task)
        work = [value for _, _, value in self._counted(frame)]
        children.extend(configs_in(work))
        children.extend(info.init_tasks)
        children.reverse()
        return children

    def _counted(self, frame: _Frame) -> list[tuple[Any, bytes, Any]]:
        """The parameters that enter this configuration's digest: (argument, prefix, value)."""
        values = frame.config.__dict__
        found = []
        for arg, prefix in frame.config.__xpm__.xpmtype.counted:
            value = values.get(arg.name, NOTSET)
            if value is not NOTSET and skip_reason(arg, value) is None:
                found.append((arg, prefix, value))
        if self.partial is not None and frame.depth == 0:
            found = [c for c in found if not self.partial.is_excluded(c[0].groups)]
        return found

    def _encode(self, frame: _Frame) -> bytes:
        cfg = frame.config
        info = cfg.__xpm__
        t: XPMType = info.xpmtype
        out = bytearray(CONFIG)
        if info.task is not None:
            out += TASK_OUTPUT
            self._config_ref(info.task, out, frame)
        out += t.typeid_bytes
        record = cfg is self.record_for
        for arg, prefix, value in self._counted(frame):
            out += prefix
            start = len(out)
            try:
                self._value(value, out, frame)
            except _Unencodable as exc:
                raise self._error(cfg, arg.name, exc) from None
            if record:
                self.recorded[arg.name] = bytes(out[start:])
        if info.init_tasks:
            out += INIT_TASKS
            for init in info.init_tasks:
                self._config_ref(init, out, frame)
        return _sha256(out).digest()

    def _error(self, cfg: Config, name: str, exc: _Unencodable) -> IdentifierError:
        where = parameter_path(self.stack[0].config, cfg, name, exc.value)
        return IdentifierError(f"{where}: cannot compute the identifier: {exc.problem}")

    def _config_ref(self, cfg: Config, out: bytearray, frame: _Frame) -> None:
        depth = self.on_stack.get(id(cfg))
        if depth is not None:
            # A reference back to a configuration being encoded: how many levels up it is.
            out += CONFIG
            out += CYCLE
            out += _pack_q(frame.depth - depth + 1)
            if depth < frame.low:
                frame.low = depth
            return
        digest = frame.local.get(id(cfg)) or self.memo[id(cfg)]
        out += CONFIG
        out += digest
        if isinstance(cfg, InstanceConfig):
            frame.contextual = True
            position = self.positions[id(cfg)]
            if position:
                out += INSTANCE
                out += _pack_q(position)

    def _encountered(self, cfg: Config, digest: bytes) -> None:
        """Give an InstanceConfig its position among the distinct instances with its digest.

        Called as soon as its digest is known, which happens in first-encounter order (children
        are computed one after the other, in encoding order, before their parent is encoded).
        """
        if isinstance(cfg, InstanceConfig) and id(cfg) not in self.positions:
            seen = self.instances.setdefault(digest, [])
            self.positions[id(cfg)] = len(seen)
            seen.append(id(cfg))

    def _value(self, value: Any, out: bytearray, frame: _Frame) -> None:
        # Containers are encoded with an explicit work list (no recursion); entries are either a
        # value to encode or raw bytes to append.
        work: list[Any] = [value]
        while work:
            v = work.pop()
            tv = type(v)
            if tv is bytes:
                out += v
            elif tv is str:
                out += STR
                try:
                    out += v.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise _Unencodable(v, _unencodable_str(v, exc)) from None
            elif tv is int or tv is bool:
                if _INT64_MIN <= v <= _INT64_MAX:
                    out += INT
                    out += _pack_q(v)
                else:
                    out += BIGINT
                    size = (v.bit_length() + 8) // 8
                    out += _pack_q(size)
                    out += v.to_bytes(size, "big", signed=True)
            elif tv is float:
                out += FLOAT
                out += _pack_d(v)
            elif v is None:
                out += NONE
            elif isinstance(v, Config):
                self._config_ref(v, out, frame)
            elif tv is list:
                v = [x for x in v if not (isinstance(x, Config) and x.__xpm__.meta)]
                out += LIST
                out += _pack_d(len(v))
                work.extend(reversed(v))
            elif tv is tuple:
                v = tuple(x for x in v if not (isinstance(x, Config) and x.__xpm__.meta))
                out += TUPLE
                out += _pack_q(len(v))
                work.extend(reversed(v))
            elif tv is dict:
                out += DICT
                v = {k: x for k, x in v.items() if not (isinstance(x, Config) and x.__xpm__.meta)}
                try:
                    keys = sorted(v)
                except TypeError:
                    kinds = " and ".join(sorted({type(k).__qualname__ for k in v}))
                    raise _Unencodable(
                        v,
                        f"dict keys must be sortable together, and the keys of {v!r} mix {kinds}: "
                        f"use keys of one type",
                    ) from None
                for key in reversed(keys):
                    work.append(v[key])
                    work.append(key)
            elif tv is set or tv is frozenset:
                v = [x for x in v if not (isinstance(x, Config) and x.__xpm__.meta)]
                out += SET
                out += _pack_d(len(v))
                encoded = []
                for item in v:
                    item_out = bytearray()
                    self._value(item, item_out, frame)
                    encoded.append(bytes(item_out))
                encoded.sort(key=lambda b: _sha256(b).digest())
                for item_bytes in encoded:
                    out += item_bytes
            elif isinstance(v, enum.Enum):
                out += ENUM
                out += f"{module_name(tv)}.{tv.__qualname__}:{v.name}".encode("utf-8")
            elif isinstance(v, int):
                work.append(int(v))
            elif isinstance(v, float):
                work.append(float(v))
            elif isinstance(v, str):
                work.append(str(v))
            else:
                raise _Unencodable(
                    v,
                    f"{v!r} (of type {tv.__qualname__}) cannot be encoded: {_ENCODABLE}. Give "
                    f"such a value, or a configuration that describes this one",
                )


def _unencodable_str(value: str, exc: UnicodeEncodeError) -> str:
    """Why a string cannot be encoded in UTF-8 (a lone surrogate), and what to do."""
    char = value[exc.start]
    return (
        f"the string {value!r} holds a lone surrogate ({char!r} at index {exc.start}), which "
        f"UTF-8 cannot encode (such strings usually come from bytes decoded with "
        f"errors='surrogateescape', a file name for instance): decode the bytes properly, or "
        f"replace the surrogate, before using the string"
    )


def parameter_encodings(config: Config) -> dict[str, bytes]:
    """The bytes each parameter that counts adds to ``config``'s digest (after ``03 name 05``),
    exactly as its own identifier computation encodes them."""
    computation = _Computation()
    computation.record_for = config
    computation.digest(config, use_cache=False)
    return computation.recorded


def recompute_digest(config: Config) -> bytes:
    """The digest computed anew from the values and today's class declarations, ignoring the
    digest cached on ``config`` (read from a params.json, say)."""
    return _Computation().digest(config, use_cache=False)


def config_digest(config: Config) -> bytes:
    """The 32-byte identifier digest of a configuration."""
    cached = config.__xpm__.digest_cache
    if cached is not None:
        return cached
    return _Computation().digest(config)


def partial_digest(config: Config, partial: "Partial") -> bytes:
    """The digest of ``config`` over the parameters ``partial`` counts (``core/partial.py``).

    Only the configuration's own parameters are filtered; its sub-configurations enter with their
    full digests. With a partial that excludes nothing, this is the configuration's digest.
    """
    computation = _Computation()
    computation.partial = partial
    return computation.digest(config, use_cache=False)
