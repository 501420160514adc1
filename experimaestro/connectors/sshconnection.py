"""One authenticated SSH connection per host, shared by everything in the process (paramiko).

:func:`connection_for` resolves a host as OpenSSH would from ``~/.ssh/config`` (HostName, User,
Port, IdentityFile, UserKnownHostsFile, ProxyJump) and returns the process-wide
:class:`SshConnection` for the resolved (host, user, port). The host key must be in ``known_hosts``:
an unknown or changed key is refused with a message saying how to add it, never accepted silently.
Keys come from IdentityFile, the ssh agent and ``~/.ssh/id_*``; an encrypted key asks for its
passphrase only on a terminal. Every failure to connect is an :class:`SshConnectError` raised within
the connect timeout, naming the host and what to check.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import paramiko

from .base import ConnectionLost  # noqa: F401 (raised by the agent's client; re-exported here)

logger = logging.getLogger("experimaestro.ssh")

#: Seconds allowed to open the TCP connection, read the banner and authenticate (each).
DEFAULT_CONNECT_TIMEOUT = 15.0
#: Seconds between keepalive messages (a silent dead link is noticed within a few of them).
KEEPALIVE = 10


class SshConnectError(ConnectionError):
    """The SSH connection could not be made (the message names the host, the cause and the fix)."""


class HostKeyError(SshConnectError):
    """The host's key is unknown or differs from the one in known_hosts."""


@dataclass(frozen=True)
class HostSpec:
    """A host as ``~/.ssh/config`` resolves it."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: Tuple[str, ...] = ()
    known_hosts: Tuple[str, ...] = ()
    proxy_jump: Optional[str] = None
    config_file: Optional[str] = field(default=None, compare=False)

    @property
    def key(self) -> Tuple[str, str, int, Optional[str]]:
        """What identifies one shared connection: the host, user and port, and the route."""
        return (self.hostname, self.user, self.port, self.proxy_jump)

    def __str__(self) -> str:
        shown = f"{self.user}@{self.hostname}:{self.port}"
        return shown if self.alias == self.hostname else f"{self.alias} ({shown})"


def ssh_config_path() -> str:
    """``~/.ssh/config`` (``~`` follows ``$HOME``)."""
    return os.path.expanduser("~/.ssh/config")


#: ``proxy_jump`` argument meaning "as the ssh config says".
FROM_CONFIG = "<from config>"


def resolve_host(alias: str, user: Optional[str] = None, port: Optional[int] = None,
                 config_file: Optional[str] = None, proxy_jump: Optional[str] = FROM_CONFIG) -> HostSpec:
    """Resolve ``alias`` through the ssh config file (explicit ``user``, ``port`` and
    ``proxy_jump`` win over it)."""
    path = config_file or ssh_config_path()
    config = paramiko.SSHConfig.from_path(path) if os.path.exists(path) else paramiko.SSHConfig()
    entry = config.lookup(alias)
    known = entry.get("userknownhostsfile")
    known_files = tuple(os.path.expanduser(p) for p in known.split()) if known else ()
    if not known_files:
        known_files = (os.path.expanduser("~/.ssh/known_hosts"),)
    jump = entry.get("proxyjump") if proxy_jump == FROM_CONFIG else proxy_jump
    return HostSpec(
        alias=alias,
        hostname=entry.get("hostname", alias),
        port=int(port or entry.get("port", 22)),
        user=user or entry.get("user") or getpass.getuser(),
        identity_files=tuple(os.path.expanduser(p) for p in entry.get("identityfile", [])),
        known_hosts=known_files,
        proxy_jump=None if jump in (None, "none") else jump,
        config_file=path,
    )


def _known_hosts_name(spec: HostSpec) -> str:
    return spec.hostname if spec.port == 22 else f"[{spec.hostname}]:{spec.port}"


def _keyscan(spec: HostSpec) -> str:
    port = "" if spec.port == 22 else f"-p {spec.port} "
    return f"ssh-keyscan {port}{spec.hostname} >> {spec.known_hosts[0]}"


class _Reject(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown host key, with the fingerprint and how to add it."""

    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        spec = self.spec
        raise HostKeyError(
            f"the host key of {spec} is not in known_hosts ({', '.join(spec.known_hosts)}): refused. "
            f"Its {key.get_name()} key has fingerprint {key.fingerprint}. Check that fingerprint with "
            f"the host's administrator, then add the key with `{_keyscan(spec)}` "
            f"or by connecting once with `ssh {spec.alias}` and answering yes."
        )


class SshConnection:
    """The shared connection to one host: a paramiko transport, re-made when it drops.

    Obtain it with :func:`connection_for`. :meth:`transport` returns the live transport, connecting
    (or reconnecting, with backoff) first if needed; it is thread-safe.
    """

    def __init__(self, spec: HostSpec, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        self.spec = spec
        self.connect_timeout = connect_timeout
        self._client: Optional[paramiko.SSHClient] = None
        self._jump: Optional[SshConnection] = None
        self._lock = threading.RLock()
        self._closed = False
        #: How many times a transport was made (1 after the first connection).
        self.generation = 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (it is not reopened then)."""
        return self._closed

    def is_active(self) -> bool:
        client = self._client
        transport = client.get_transport() if client is not None else None
        return transport is not None and transport.is_active()

    def transport(self) -> paramiko.Transport:
        """The live transport, connected now if it is not (one attempt; errors are raised)."""
        with self._lock:
            if self._closed:
                raise SshConnectError(f"the connection to {self.spec} was closed")
            if not self.is_active():
                self._connect()
            assert self._client is not None
            transport = self._client.get_transport()
            assert transport is not None
            return transport

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._client is not None:
                self._client.close()
                self._client = None

    def _connect(self) -> None:
        spec = self.spec
        if self._client is not None:
            self._client.close()
            self._client = None
        client = paramiko.SSHClient()
        for path in spec.known_hosts:
            if os.path.exists(path):
                client.load_host_keys(path)
        client.set_missing_host_key_policy(_Reject(spec))
        pkey, key_files = self._load_keys()
        sock = self._open_socket()
        start = time.monotonic()
        try:
            client.connect(
                spec.hostname, port=spec.port, username=spec.user, sock=sock, pkey=pkey,
                key_filename=key_files or None, look_for_keys=not spec.identity_files,
                allow_agent=True, timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout, channel_timeout=self.connect_timeout,
            )
        except HostKeyError:
            _close(client, sock)
            raise
        except paramiko.BadHostKeyException as exc:
            _close(client, sock)
            raise HostKeyError(
                f"the host key of {spec} CHANGED: known_hosts has a {exc.expected_key.get_name()} key "
                f"{exc.expected_key.fingerprint}, the host sent {exc.key.get_name()} "
                f"{exc.key.fingerprint}. This may be an attack, or the host was reinstalled: ask its "
                f"administrator. If the new key is right, remove the old one with "
                f"`ssh-keygen -R {_known_hosts_name(spec)}` and add the new one with `{_keyscan(spec)}`."
            ) from None
        except paramiko.AuthenticationException as exc:
            _close(client, sock)
            tried = ", ".join(spec.identity_files) or "the ssh agent and ~/.ssh/id_*"
            raise SshConnectError(
                f"authentication as {spec.user!r} on {spec} failed ({exc}): keys tried: {tried}. "
                f"Check `User` and `IdentityFile` for Host {spec.alias} in {spec.config_file}, and "
                f"that the public key is in ~{spec.user}/.ssh/authorized_keys on the host."
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            _close(client, sock)
            elapsed = time.monotonic() - start
            raise SshConnectError(
                f"no SSH session with {spec} after {elapsed:.1f} s ({type(exc).__name__}: {exc}); "
                f"the connect timeout is {self.connect_timeout} s. Check that the host runs sshd on "
                f"port {spec.port} (`ssh -v {spec.alias}`)."
            ) from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE)
        self._client = client
        self.generation += 1
        logger.info("connected to %s", spec)

    def _open_socket(self) -> Any:
        """A TCP socket to the host, or a channel through the ProxyJump host's transport."""
        spec = self.spec
        if spec.proxy_jump:
            # "a,b": through b, itself reached through a (as ssh -J a,b); a single jump host is
            # reached as its own Host block says (its own ProxyJump included).
            *previous, last = spec.proxy_jump.split(",")
            user, _, host = last.rpartition("@")
            host, _, port = host.partition(":")
            self._jump = connection_for(host, user=user or None, port=int(port) if port else None,
                                        connect_timeout=self.connect_timeout,
                                        config_file=spec.config_file,
                                        proxy_jump=",".join(previous) if previous else FROM_CONFIG)
            try:
                return self._jump.transport().open_channel(
                    "direct-tcpip", (spec.hostname, spec.port), ("127.0.0.1", 0),
                    timeout=self.connect_timeout)
            except (paramiko.SSHException, OSError) as exc:
                raise SshConnectError(
                    f"the jump host {self._jump.spec} could not open a connection to "
                    f"{spec.hostname}:{spec.port} ({exc}): check ProxyJump for Host {spec.alias} "
                    f"and that the jump host can reach it."
                ) from None
        try:
            return socket.create_connection((spec.hostname, spec.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise SshConnectError(
                f"cannot reach {spec} ({exc}) within the connect timeout of {self.connect_timeout} s: "
                f"check HostName and Port for Host {spec.alias} in {spec.config_file} and the network."
            ) from None

    def _load_keys(self) -> Tuple[Optional[paramiko.PKey], List[str]]:
        """The IdentityFile keys: an encrypted one decrypted (its passphrase asked only on a
        terminal), and the paths of the others (paramiko tries them in turn)."""
        pkey: Optional[paramiko.PKey] = None
        paths = []
        for path in self.spec.identity_files:
            if not os.path.exists(path):
                continue
            try:
                try:
                    paramiko.PKey.from_path(path)
                except TypeError as exc:  # what some paramiko/cryptography versions raise instead
                    if "password" not in str(exc).lower():
                        raise
                    raise paramiko.PasswordRequiredException(str(exc)) from None
            except paramiko.PasswordRequiredException:
                if pkey is not None:
                    continue
                if not (sys.stdin.isatty() and sys.stderr.isatty()):
                    raise SshConnectError(
                        f"the key {path} (IdentityFile for {self.spec.alias}) is encrypted and there "
                        f"is no terminal to ask its passphrase: add it to your ssh agent "
                        f"(`ssh-add {path}`) before running."
                    ) from None
                passphrase = getpass.getpass(f"Passphrase for {path}: ")
                try:
                    pkey = paramiko.PKey.from_path(path, password=passphrase.encode())
                except (paramiko.SSHException, ValueError, TypeError) as exc:
                    raise SshConnectError(f"cannot decrypt {path}: {exc}") from None
            except (paramiko.SSHException, OSError, ValueError, TypeError) as exc:
                raise SshConnectError(
                    f"cannot read the key {path} (IdentityFile for {self.spec.alias}): {exc}"
                ) from None
            else:
                paths.append(path)
        return pkey, paths


def _close(client: paramiko.SSHClient, sock: Any) -> None:
    """Close a failed attempt: the client (its transport thread) first, then the socket."""
    client.close()
    sock.close()


_registry: Dict[Tuple[str, str, int, Optional[str]], SshConnection] = {}
_registry_lock = threading.Lock()


def connection_for(alias: str, user: Optional[str] = None, port: Optional[int] = None,
                   connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                   config_file: Optional[str] = None, proxy_jump: Optional[str] = FROM_CONFIG
                   ) -> SshConnection:
    """The process-wide connection to ``alias`` (not connected yet if it is new)."""
    spec = resolve_host(alias, user=user, port=port, config_file=config_file, proxy_jump=proxy_jump)
    with _registry_lock:
        connection = _registry.get(spec.key)
        if connection is None or connection.closed:
            connection = SshConnection(spec, connect_timeout)
            _registry[spec.key] = connection
        return connection


def close_all() -> None:
    """Close every shared connection (tests; the process's end closes them anyway)."""
    with _registry_lock:
        connections = list(_registry.values())
        _registry.clear()
    for connection in connections:
        connection.close()
