#!/usr/bin/env python3
"""A separate "remote host" on this machine for the SSH tests: network, mount and UTS namespaces, a
private sshd, an unprivileged user, generated keys. See ssh-test/README.md.

Subcommands (all as root):
  start [DIR] [options]       create the host (idempotent); prints eval-able ``export`` lines
  stop [DIR] [--keep]         kill what start started, remove the namespaces, veth, user and DIR
  exec [DIR] [--root] -- CMD  run CMD on the remote host (as the remote user unless --root)
  python [DIR] CHECKOUT       build (cached) a venv for the remote user with CHECKOUT installed
  sessions [DIR] [--client-port P] [--kill]
                              the sshd processes serving sessions (of one client port); --kill kills them
  install                     install the Debian packages this needs (fast when present)

Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import ipaddress
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "helpers"))
from polling import poll  # noqa: E402  (standard library only, like this script)

DEFAULT_DIR = os.environ.get("SSH_TEST_DIR", "/tmp/ssh-test")
# Everything a controller (and its tests) writes or reads locally: pytest's tmp_path and tempfile
# folders, checkouts (this one wherever it was cloned), root's and users' homes. The remote gets empty
# ones, like another machine.
DEFAULT_HIDE = ["/tmp", "/var/tmp", "/work", "/root", "/home", str(HERE.parent),
                *filter(None, [os.environ.get("TMPDIR")])]
DEFAULT_PYTHON_CACHE = os.environ.get("SSH_TEST_PYTHON_CACHE", "/var/cache/xpm-ssh-test/python")
# Private addresses used only on the veth pairs created here: one /30 per host, in 10.213.0.0/16.
SUBNET_POOL = ipaddress.ip_network("10.213.0.0/16")
REGISTRY = Path("/run/xpm-ssh-test")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
GECOS_MARK = "xpm-ssh-test"
# The Debian packages needed: sshd and sftp-server, ssh-keygen, ip, nsenter/unshare/setpriv, useradd, and
# `/usr/bin/python3 -m venv` for the remote Python.
PACKAGES = ["openssh-server", "openssh-client", "iproute2", "util-linux", "passwd", "python3-venv"]


class Failure(Exception):
    """An error reported to the user as one message (what went wrong and what to do)."""


# ---------------------------------------------------------------------------------------------------------
# Small helpers


def log(message: str) -> None:
    print(f"ssh-test: {message}", file=sys.stderr, flush=True)


def sh(*argv: str, check: bool = True, timeout: float = 60, quiet: bool = False) -> str:
    """Run a command; its output (stdout) as text. A failure raises Failure with its stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise Failure(f"`{shlex.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    if not quiet and proc.returncode != 0:
        log(f"(ignored) `{shlex.join(argv)}`: {proc.stderr.strip()}")
    return proc.stdout


def instance_id(directory: Path) -> str:
    return hashlib.sha1(str(directory).encode()).hexdigest()[:6]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    """The first true value of ``predicate()``; Failure after ``timeout`` s (the tests' polling helper)."""
    try:
        return poll(predicate, timeout, interval)
    except TimeoutError:
        raise Failure(f"timed out after {timeout} s waiting for {what}") from None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def proc_alive(pid: int) -> bool:
    """A process exists and is not a zombie (PID 1 here reaps late)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def proc_starttime(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def kill_pids(pids: set[int], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL what is still alive after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while any(proc_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        pids = {p for p in pids if proc_alive(p)}
        if not pids:
            return
    raise Failure(f"processes {sorted(pids)} survived SIGKILL")


def is_mountpoint(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as handle:
        return any(line.split()[4] == target for line in handle)


# ---------------------------------------------------------------------------------------------------------
# Installation


def missing_packages() -> list[str]:
    """The packages of PACKAGES that dpkg does not list as installed (one dpkg-query call)."""
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *PACKAGES],
                          capture_output=True, text=True)
    installed = {line.split()[0] for line in proc.stdout.splitlines()
                 if line.endswith("install ok installed")}
    return [package for package in PACKAGES if package not in installed]


def install() -> None:
    """Install the missing Debian packages (apt-get update only if the first attempt fails)."""
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Failure(f"missing packages {missing}: install them "
                      f"(as root: apt-get install {' '.join(missing)})")
    log(f"installing {' '.join(missing)} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "--no-install-recommends"]
    if subprocess.run(command + missing, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq"], env=env,
                       capture_output=True, check=True)
        subprocess.run(command + missing, env=env, capture_output=True, check=True)


# ---------------------------------------------------------------------------------------------------------
# The host's state (DIR/state.json) and how to enter it


class Host:
    """One remote host, described by DIR/state.json."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.id = instance_id(directory)
        self.state_file = directory / "state.json"
        self.state: dict = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    # Names derived from DIR, so that stop finds everything even without state.json.
    @property
    def netns(self) -> str:
        return f"xpmssh-{self.id}"

    @property
    def veth(self) -> tuple[str, str]:
        return f"xs{self.id}h", f"xs{self.id}r"

    @property
    def nsdir(self) -> Path:
        return self.dir / "ns"

    @property
    def server(self) -> Path:
        return self.dir / "server"

    @property
    def client(self) -> Path:
        return self.dir / "client"

    @property
    def stage(self) -> Path:
        return REGISTRY / f"{self.id}.stage"

    @property
    def registry_entry(self) -> Path:
        return REGISTRY / f"{self.id}.json"

    def nsenter(self, net: bool = True) -> list[str]:
        argv = ["nsenter", f"--mount={self.nsdir / 'mnt'}", f"--uts={self.nsdir / 'uts'}"]
        if net:
            argv.append(f"--net=/run/netns/{self.netns}")
        return argv

    def user_env(self) -> dict[str, str]:
        env = {"HOME": self.state["home"], "USER": self.state["user"], "LOGNAME": self.state["user"],
               "SHELL": "/bin/bash", "PATH": PATH, "LANG": "C.UTF-8"}
        if self.state.get("slurm_conf"):
            env["SLURM_CONF"] = self.state["slurm_conf"]
        if os.environ.get("TERM"):  # for an interactive shell
            env["TERM"] = os.environ["TERM"]
        return env

    def exec_argv(self, command: list[str], root: bool = False) -> list[str]:
        """The command line that runs ``command`` on the remote host (in the remote user's HOME)."""
        if root:
            env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8"}
            if self.state.get("slurm_conf"):
                env["SLURM_CONF"] = self.state["slurm_conf"]
            prefix: list[str] = []
        else:
            env = self.user_env()
            prefix = ["setpriv", f"--reuid={self.state['uid']}", f"--regid={self.state['gid']}",
                      "--init-groups"]
        return [*self.nsenter(), *prefix, "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                "sh", "-c", 'cd "$HOME" 2>/dev/null; exec "$@"', "sh", *command]

    def running(self) -> bool:
        """The namespaces exist and sshd answers."""
        if not (self.state and Path(f"/run/netns/{self.netns}").exists()
                and is_mountpoint(self.nsdir / "mnt")):
            return False
        pid = self.sshd_pid()
        return bool(pid) and banner(self.state["address"], self.state["port"], timeout=2)

    def sshd_pid(self) -> Optional[int]:
        """The pid of sshd from its pid file, if that process is still this sshd."""
        try:
            pid = int((self.server / "sshd.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            return None
        # sshd rewrites its title: "sshd: /usr/sbin/sshd -f CONFIG ... [listener] ..."
        if f" -f {self.server / 'sshd_config'} " in cmdline and proc_alive(pid):
            return pid
        return None

    def our_uid(self) -> Optional[int]:
        """The remote user's uid, if that user still exists and is ours (a uid can be reused)."""
        try:
            entry = pwd.getpwuid(self.state["uid"])
        except (KeyError, TypeError):
            return None
        ours = entry.pw_name == self.state.get("user") and entry.pw_gecos == f"{GECOS_MARK} {self.dir}"
        return entry.pw_uid if ours else None

    def netns_inode(self) -> Optional[int]:
        try:
            return os.stat(f"/run/netns/{self.netns}").st_ino
        except OSError:
            return None

    def processes(self) -> set[int]:
        """Every process of this host: those in its network namespace or of its user."""
        inode = self.netns_inode()
        uid = self.our_uid()
        pids = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                netns = os.readlink(f"/proc/{entry}/ns/net")
                owner = os.stat(f"/proc/{entry}").st_uid
            except OSError:
                continue
            if (inode is not None and netns == f"net:[{inode}]") or (uid is not None and owner == uid):
                if proc_alive(int(entry)):
                    pids.add(int(entry))
        return pids

    def exports(self) -> dict[str, str]:
        s = self.state
        values = {
            "SSH_TEST_DIR": str(self.dir), "SSH_TEST_HOST": s["alias"], "SSH_TEST_ADDR": s["address"],
            "SSH_TEST_PORT": str(s["port"]), "SSH_TEST_USER": s["user"], "SSH_TEST_HOME": s["home"],
            "SSH_TEST_HOSTNAME": s["hostname"], "SSH_TEST_KEY": str(self.client / "id_ed25519"),
            "SSH_TEST_KNOWN_HOSTS": str(self.client / "known_hosts"),
            "SSH_TEST_CONFIG": str(self.client / "ssh_config"),
        }
        if s.get("python"):
            values["SSH_TEST_PYTHON"] = s["python"]
        if s.get("slurm_conf"):
            values["SSH_TEST_SLURM_CONF"] = s["slurm_conf"]
        return values


def banner(address: str, port: int, timeout: float = 1.0) -> bool:
    """sshd answers on address:port with its SSH banner."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-2.0")
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------
# start


def allocate_subnet() -> ipaddress.IPv4Network:
    """A /30 in SUBNET_POOL that overlaps no address or route of this machine (call under the lock)."""
    used = []
    for line in sh("ip", "-4", "-o", "addr", "show").splitlines():
        used.append(ipaddress.ip_interface(line.split()[3]).network)
    for line in sh("ip", "-4", "route", "show", "table", "all").splitlines():
        with contextlib.suppress(ValueError, IndexError):
            words = line.split()
            used.append(ipaddress.ip_network(words[1] if words[0] == "local" else words[0], strict=False))
    for candidate in SUBNET_POOL.subnets(new_prefix=30):
        if not any(candidate.overlaps(network) for network in used if network.prefixlen > 0):
            return candidate
    raise Failure(f"no free /30 left in {SUBNET_POOL}: stop some hosts (ssh-test/stop)")


def expand_hidden(patterns: list[str]) -> list[str]:
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        paths.extend(os.path.abspath(p) for p in matches if os.path.isdir(p))
    # An outer folder covers the inner ones.
    return [p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths)]


def create_namespaces(host: Host, hide: list[str], expose: list[str], hostname: str) -> None:
    """The mount and UTS namespaces (kept alive by bind mounts of their files) and the network one."""
    host.nsdir.mkdir(parents=True, exist_ok=True)
    if not is_mountpoint(host.nsdir):
        sh("mount", "--bind", str(host.nsdir), str(host.nsdir))
    sh("mount", "--make-private", str(host.nsdir))
    for name in ("mnt", "uts"):
        (host.nsdir / name).touch()
    # Folders to show again inside the covered ones (DIR/server, a venv under /tmp): bound to a stage
    # first, covered, then moved back to the same path.
    host.stage.mkdir(parents=True, exist_ok=True)
    script = ["set -e", "umask 022", f"hostname {shlex.quote(hostname)}"]
    for i, path in enumerate(expose):
        (host.stage / str(i)).mkdir(exist_ok=True)
        script.append(f"mount --bind {shlex.quote(path)} {shlex.quote(str(host.stage / str(i)))}")
    for path in hide:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if any(e.startswith(path.rstrip("/") + "/") for e in expose):
            mode |= 0o111  # the remote user (sshd reading authorized_keys as the user) must get through
        script.append(f"mount -t tmpfs -o mode={mode:o},size=25% xpm-ssh-test {shlex.quote(path)}")
    for i, path in enumerate(expose):
        script.append(f"mkdir -p {shlex.quote(path)}")
        script.append(f"mount --move {shlex.quote(str(host.stage / str(i)))} {shlex.quote(path)}")
    sh("unshare", f"--mount={host.nsdir / 'mnt'}", f"--uts={host.nsdir / 'uts'}", "--propagation", "private",
       "sh", "-c", "\n".join(script))
    shutil.rmtree(host.stage, ignore_errors=True)

    subnet = ipaddress.ip_network(host.state["subnet"])
    local, remote = (str(a) for a in list(subnet.hosts())[:2])
    vh, vr = host.veth
    sh("ip", "netns", "add", host.netns)
    sh("ip", "link", "add", vh, "type", "veth", "peer", "name", vr)
    sh("ip", "link", "set", vr, "netns", host.netns)
    sh("ip", "addr", "add", f"{local}/30", "dev", vh)
    sh("ip", "link", "set", vh, "up")
    inside = ["nsenter", f"--net=/run/netns/{host.netns}"]
    sh(*inside, "ip", "addr", "add", f"{remote}/30", "dev", vr)
    sh(*inside, "ip", "link", "set", vr, "up")
    sh(*inside, "ip", "link", "set", "lo", "up")


def create_user(host: Host) -> None:
    """The unprivileged remote user, its HOME inside the mount namespace (under a covered /home)."""
    user, home = host.state["user"], host.state["home"]
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(user)
        if entry.pw_gecos != f"{GECOS_MARK} {host.dir}":
            raise Failure(f"user {user} exists ({entry.pw_gecos or 'not created by ssh-test'}): "
                          "choose another name (--user)")
        sh("userdel", user)  # a leftover of an interrupted run of this host
    sh(*host.nsenter(net=False), "useradd", "-m", "-d", home, "-s", "/bin/bash",
       "-c", f"{GECOS_MARK} {host.dir}", user)
    sh("usermod", "-p", "*", user)  # a locked account ("!") is refused even with a key when PAM is off
    entry = pwd.getpwnam(user)
    host.state.update(uid=entry.pw_uid, gid=entry.pw_gid)


def write_keys_and_configs(host: Host) -> None:
    s = host.state
    for directory in (host.server / "authorized_keys", host.client):
        directory.mkdir(parents=True, exist_ok=True)
    host.server.chmod(0o755)
    host_key = host.server / "ssh_host_ed25519_key"
    client_key = host.client / "id_ed25519"
    for key in (host_key, client_key):
        if not key.exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ssh-test {host.id}", "-f", str(key))
    authorized = host.server / "authorized_keys" / s["user"]
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o644)
    lines = [
        f"ListenAddress {s['address']}", f"Port {s['port']}", f"HostKey {host_key}",
        f"PidFile {host.server / 'sshd.pid'}", f"AuthorizedKeysFile {host.server / 'authorized_keys'}/%u",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no",  # the keys live under /tmp, which StrictModes rejects
        "PermitRootLogin no", f"AllowUsers {s['user']}", "PrintMotd no", "UseDNS no", "LogLevel VERBOSE",
        f"Subsystem sftp {SFTP_SERVER}",
    ]
    if s.get("slurm_conf"):
        lines.append(f"SetEnv SLURM_CONF={s['slurm_conf']}")
    (host.server / "sshd_config").write_text("\n".join(lines) + "\n")
    public = Path(f"{host_key}.pub").read_text().split()
    names = [s["alias"], s["address"]] if s["port"] == 22 else [f"[{s['alias']}]:{s['port']}",
                                                                f"[{s['address']}]:{s['port']}"]
    (host.client / "known_hosts").write_text(f"{','.join(names)} {public[0]} {public[1]}\n")
    (host.client / "ssh_config").write_text(
        f"Host {s['alias']}\n    HostName {s['address']}\n    Port {s['port']}\n    User {s['user']}\n"
        f"    IdentityFile {client_key}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {host.client / 'known_hosts'}\n    StrictHostKeyChecking yes\n"
    )


def start_sshd(host: Host, timeout: float) -> None:
    config = host.server / "sshd_config"
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    sh(SSHD, "-t", "-f", str(config))
    sh(*host.nsenter(), SSHD, "-f", str(config), "-E", str(host.server / "sshd.log"))
    wait_for(lambda: banner(host.state["address"], host.state["port"]), timeout,
             f"sshd on {host.state['address']}:{host.state['port']} (log: {host.server / 'sshd.log'})")


def start_slurm(host: Host, slurm_test: Path, args: list[str], timeout: float) -> str:
    """Start slurm-test's cluster inside the host; its SLURM_CONF (a path inside the host)."""
    if not (slurm_test / "start").exists():
        raise Failure(f"--slurm: no slurm-test/start in {slurm_test}: pass --slurm-test PATH (the slurm-test "
                      "folder of a checkout)")
    copy = host.server / "slurm-test"  # the checkout is hidden inside the host: run a copy
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(slurm_test, copy, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(host.exec_argv(["sh", str(copy / "start"), str(host.server / "slurm"), *args],
                                         root=True), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise Failure(f"slurm-test/start failed inside the host: {proc.stderr.strip()}")
    for line in proc.stdout.splitlines():
        if line.startswith("export SLURM_CONF="):
            return shlex.split(line.split("=", 1)[1])[0]
    raise Failure(f"slurm-test/start printed no `export SLURM_CONF=`: {proc.stdout!r}")


def reap_orphans() -> None:
    """Stop the hosts whose owner (a test session given as --owner-pid) has died."""
    for entry in REGISTRY.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            info = json.loads(entry.read_text())
            if info.get("owner") and proc_starttime(info["owner"]) != info.get("owner_start"):
                log(f"stopping {info['dir']}: its owner process {info['owner']} is gone")
                stop(Path(info["dir"]), keep=False)


def start(args: argparse.Namespace) -> None:
    directory = Path(args.dir).absolute()
    host = Host(directory)
    if not args.no_install:
        install()
    if missing_packages():
        raise Failure(f"missing packages {missing_packages()}: run ssh-test/install as root")
    wanted = {
        "port": args.port, "user": args.user or f"xpm{host.id}",
        "hostname": args.hostname or f"remote-{host.id}",
        "hide": expand_hidden(DEFAULT_HIDE + (args.hide or [])), "slurm": bool(args.slurm),
    }
    wanted["alias"] = wanted["hostname"]
    wanted["home"] = f"/home/{wanted['user']}"
    if host.state and host.running():
        differs = {k: (host.state.get(k), v) for k, v in wanted.items() if host.state.get(k) != v}
        if differs:
            raise Failure(f"{directory} runs with other settings {differs}: ssh-test/stop {directory} first")
    else:
        if directory.is_dir() and any(directory.iterdir()) and not (directory / ".ssh-test").exists():
            raise Failure(f"{directory} is not empty and not an ssh-test folder (stop removes it): choose "
                          "another DIR")
        with locked(REGISTRY / "lock"):
            reap_orphans()
            stop(directory, keep=False, quiet=True)  # leftovers of an interrupted start
            directory.mkdir(parents=True, exist_ok=True)
            (directory / ".ssh-test").write_text("created by ssh-test/start; "
                                                 "ssh-test/stop removes this folder\n")
            host = Host(directory)
            subnet = allocate_subnet()
            host.state = dict(wanted, id=host.id, subnet=str(subnet), address=str(list(subnet.hosts())[1]),
                              local_address=str(list(subnet.hosts())[0]))
            if args.owner_pid:
                host.state.update(owner=args.owner_pid, owner_start=proc_starttime(args.owner_pid))
            REGISTRY.mkdir(parents=True, exist_ok=True)
            host.registry_entry.write_text(json.dumps({
                "dir": str(directory), "owner": host.state.get("owner"),
                "owner_start": host.state.get("owner_start")}))
            host.state_file.write_text(json.dumps(host.state, indent=1))
            host.server.mkdir(parents=True, exist_ok=True)
            expose = [str(host.server)]
            create_namespaces(host, host.state["hide"], expose, host.state["hostname"])
        try:
            create_user(host)
            if args.slurm:
                slurm_test = Path(args.slurm_test) if args.slurm_test else HERE.parent / "slurm-test"
                host.state["slurm_conf"] = start_slurm(host, slurm_test, shlex.split(args.slurm_args or ""),
                                                       args.timeout + 60)
            write_keys_and_configs(host)
            host.state_file.write_text(json.dumps(host.state, indent=1))
            start_sshd(host, args.timeout)
        except BaseException:
            log("start failed: stopping what was started")
            stop(directory, keep=True, quiet=True)
            raise
    if args.python:
        host.state["python"] = build_python(Path(args.python), Path(args.python_cache), host)
    host.state_file.write_text(json.dumps(host.state, indent=1))
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in host.exports().items())
    (directory / "env").write_text(exports)
    sys.stdout.write(exports)


# ---------------------------------------------------------------------------------------------------------
# The remote Python: a venv from the system interpreter with the project installed (not editable)

# What goes into the wheel, hence into the cache key.
PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg", "README.md", "LICENSE", "MANIFEST.in")
PROJECT_PACKAGE = "experimaestro"


def project_files(checkout: Path) -> list[Path]:
    files = [Path(name) for name in PROJECT_FILES if (checkout / name).is_file()]
    for path in sorted((checkout / PROJECT_PACKAGE).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files.append(path.relative_to(checkout))
    return files


def sources_hash(checkout: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(sh("/usr/bin/python3", "-VV").encode())
    for relative in files:
        digest.update(str(relative).encode() + b"\0" + (checkout / relative).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_python(checkout: Path, cache: Path, host: Optional[Host] = None) -> str:
    """The path of a venv's python with ``checkout`` installed (not editable), for the remote user.

    Two cached levels, each built once under a lock (concurrent sessions share them): a base venv per
    ``pyproject.toml`` with the dependencies (about 15-20 s, longer with a cold pip cache), and per hash
    of the sources a copy of it with the project reinstalled (about 3 s). After that, a hash of the
    sources (milliseconds)."""
    checkout = checkout.resolve()
    if not (checkout / "pyproject.toml").exists() or not (checkout / PROJECT_PACKAGE).is_dir():
        raise Failure(f"{checkout} is not a checkout of {PROJECT_PACKAGE} (no pyproject.toml and "
                      f"{PROJECT_PACKAGE}/): pass the repository's root folder")
    files = project_files(checkout)
    os.umask(0o022)
    for parent in reversed([cache, *cache.parents]):  # readable by the remote user
        if not parent.exists():
            parent.mkdir(mode=0o755)
    with tempfile.TemporaryDirectory(prefix="xpm-ssh-test-src-") as tmp:
        # A copy: a build writes build/ and *.egg-info next to the sources, never in the checkout.
        for relative in files:
            (Path(tmp) / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkout / relative, Path(tmp) / relative)
        pip = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]

        def make_base(venv: Path) -> None:
            sh("/usr/bin/python3", "-m", "venv", str(venv), timeout=120)
            sh(str(venv / "bin" / "python"), *pip, *build_requirements(checkout), tmp, timeout=600)

        base = cached_venv(cache / f"base-{sources_hash(checkout, [Path('pyproject.toml')])}", make_base)

        def make_project(venv: Path) -> None:
            shutil.copytree(base, venv, symlinks=True)
            for script in (venv / "bin").iterdir():  # activate, pip: paths of the base
                if script.is_file() and not script.is_symlink() and str(base).encode() in script.read_bytes():
                    script.write_bytes(script.read_bytes().replace(str(base).encode(), str(venv).encode()))
            isolation = ["--no-build-isolation"] if build_requirements(checkout) else []
            sh(str(venv / "bin" / "python"), *pip, "--no-deps", "--force-reinstall", *isolation, tmp,
               timeout=600)

        venv = cached_venv(cache / sources_hash(checkout, files), make_project)
    prune_python_cache(cache, keep=3)
    python = venv / "bin" / "python"
    if host is not None and host.state:
        proc = subprocess.run(host.exec_argv(["test", "-x", str(python)]), capture_output=True)
        if proc.returncode != 0:
            raise Failure(f"{python} is not visible to the remote user (is {cache} under a hidden folder?): "
                          "choose --python-cache outside them")
    return str(python)


def build_requirements(checkout: Path) -> list[str]:
    """The [build-system] requires of pyproject.toml ([] when it cannot be read: pip isolates the build)."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        return []
    with open(checkout / "pyproject.toml", "rb") as handle:
        return list(tomllib.load(handle).get("build-system", {}).get("requires", []))


def cached_venv(venv: Path, build) -> Path:
    """``venv``, made by ``build(venv)`` unless complete already (under a lock); marks it used."""
    complete = venv / ".complete"
    with locked(venv.parent / f"{venv.name}.lock"):
        if not complete.exists():
            began = time.monotonic()
            log(f"building {venv} (cached: once per version of the sources)")
            shutil.rmtree(venv, ignore_errors=True)
            build(venv)
            complete.write_text(f"built in {time.monotonic() - began:.1f} s\n")
            log(f"built {venv} in {time.monotonic() - began:.1f} s")
        os.utime(complete)
    return venv


#: A venv used less than this long ago may serve a test session still running: never pruned.
PRUNE_AFTER = 3600.0


def prune_python_cache(cache: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used venvs of each kind, except those being built
    and those used within PRUNE_AFTER seconds (sessions of other checkouts may still run on them)."""
    built = sorted((p for p in cache.iterdir() if (p / ".complete").exists()),
                   key=lambda p: (p / ".complete").stat().st_mtime, reverse=True)
    recent = time.time() - PRUNE_AFTER
    for kind in (True, False):
        for old in [p for p in built if p.name.startswith("base-") == kind][keep:]:
            if (old / ".complete").stat().st_mtime > recent:
                continue
            with open(cache / f"{old.name}.lock", "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                shutil.rmtree(old, ignore_errors=True)
            (cache / f"{old.name}.lock").unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# stop


def stop(directory: Path, keep: bool = False, quiet: bool = False) -> None:
    """Undo start (idempotent): Slurm, every process of the host, the user, veth and namespaces, DIR."""
    host = Host(directory.absolute())
    if host.state.get("slurm_conf") and (host.server / "slurm-test" / "stop").exists() \
            and is_mountpoint(host.nsdir / "mnt"):
        proc = subprocess.run(host.exec_argv(["sh", str(host.server / "slurm-test" / "stop"),
                                              str(host.server / "slurm")], root=True),
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log(f"slurm-test/stop: {proc.stderr.strip()}")
    pids = host.processes()
    sshd = host.sshd_pid()
    if sshd:
        pids.add(sshd)
    if pids:
        kill_pids(pids)
    if host.our_uid() is not None:
        # -f: zombies of its processes (reaped late here) still count as "in use"; -r: its HOME, seen
        # from the host's mount namespace (a tmpfs there, unless /home is not in --hide).
        inside = host.nsenter(net=False) if is_mountpoint(host.nsdir / "mnt") else []
        sh(*inside, "userdel", "-f", "-r", host.state["user"], quiet=quiet)
    if Path(f"/run/netns/{host.netns}").exists():
        sh("ip", "netns", "del", host.netns)  # removes the veth pair with it
    veth = Path(f"/sys/class/net/{host.veth[0]}")
    with contextlib.suppress(Failure):  # the kernel removes the pair shortly after its namespace
        wait_for(lambda: not veth.exists(), 5, f"{veth.name} to go")
    if veth.exists():
        sh("ip", "link", "del", host.veth[0])
    for name in ("mnt", "uts", ""):
        path = host.nsdir / name if name else host.nsdir
        while path.exists() and is_mountpoint(path):
            sh("umount", str(path))
    shutil.rmtree(host.stage, ignore_errors=True)
    host.registry_entry.unlink(missing_ok=True)
    if (directory / ".ssh-test").exists():
        if keep:
            (directory / "state.json").unlink(missing_ok=True)
        else:
            shutil.rmtree(directory)


# ---------------------------------------------------------------------------------------------------------
# Sessions (for the reconnection tests: kill the sshd processes serving one connection)


def sessions(host: Host, client_port: Optional[int]) -> set[int]:
    """The sshd processes serving the user's sessions (of the connection from ``client_port`` if given)."""
    inode_filter: Optional[set[str]] = None
    if client_port is not None:
        sshd = host.sshd_pid()
        if not sshd:
            raise Failure("sshd is not running")
        inode_filter = set()
        for table in ("tcp", "tcp6"):
            with contextlib.suppress(FileNotFoundError), open(f"/proc/{sshd}/net/{table}") as handle:
                for line in list(handle)[1:]:
                    fields = line.split()
                    if int(fields[2].rsplit(":", 1)[1], 16) == client_port:
                        inode_filter.add(fields[9])
    found = set()
    for pid in host.processes():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if not cmdline.startswith(f"sshd: {host.state['user']}"):
                continue
            if inode_filter is not None:
                sockets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
                if not any(f"socket:[{inode}]" in sockets for inode in inode_filter):
                    continue
        except OSError:
            continue
        found.add(pid)
    return found


# ---------------------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ssh-test", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("start", help="create the remote host (idempotent)")
    p.add_argument("dir", nargs="?", default=DEFAULT_DIR, help=f"state folder (default {DEFAULT_DIR})")
    p.add_argument("--port", type=int, default=22, help="sshd port on the host's own address (22)")
    p.add_argument("--user", help="remote user name (default xpm<id>)")
    p.add_argument("--hostname", help="remote host name and ssh alias (default remote-<id>)")
    p.add_argument("--hide", action="append", metavar="PATH",
                   help=f"another folder to cover with an empty tmpfs on the remote (repeatable; always "
                        f"covered: {DEFAULT_HIDE})")
    p.add_argument("--python", metavar="CHECKOUT", help="build the remote Python with CHECKOUT installed")
    p.add_argument("--python-cache", default=DEFAULT_PYTHON_CACHE,
                   help=f"venv cache ({DEFAULT_PYTHON_CACHE})")
    p.add_argument("--slurm", action="store_true", help="start slurm-test's cluster inside the host")
    p.add_argument("--slurm-test", metavar="PATH", help="the slurm-test folder (default: ../slurm-test)")
    p.add_argument("--slurm-args", default="", help="options for slurm-test/start (one string)")
    p.add_argument("--timeout", type=float, default=30, help="seconds to wait for sshd (30)")
    p.add_argument("--owner-pid", type=int, help="stop this host at the next start once that process is gone")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing packages")

    p = sub.add_parser("stop", help="undo start (idempotent)")
    p.add_argument("dir", nargs="?", default=DEFAULT_DIR)
    p.add_argument("--keep", action="store_true", help="keep DIR (logs, keys)")

    p = sub.add_parser("exec", help="run a command on the remote host")
    p.add_argument("dir", nargs="?", default=DEFAULT_DIR)
    p.add_argument("--root", action="store_true", help="as root (default: the remote user)")
    p.epilog = "The command follows `--` (default: a login shell)."

    p = sub.add_parser("python", help="build (cached) the remote Python; prints its path")
    p.add_argument("dir", nargs="?", default=DEFAULT_DIR)
    p.add_argument("checkout", help="the project checkout to install (not editable)")
    p.add_argument("--python-cache", default=DEFAULT_PYTHON_CACHE)

    p = sub.add_parser("sessions", help="pids of the sshd processes serving sessions")
    p.add_argument("dir", nargs="?", default=DEFAULT_DIR)
    p.add_argument("--client-port", type=int, help="only the connection from this local port")
    p.add_argument("--kill", action="store_true", help="SIGKILL them (the connection drops)")

    sub.add_parser("install", help="install the Debian packages needed")

    argv = sys.argv[1:] if argv is None else argv
    command: list[str] = []
    if argv[:1] == ["exec"] and "--" in argv:  # exec [DIR] [--root] -- COMMAND...
        argv, command = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = parser.parse_args(argv)
    try:
        if args.command != "install" and os.geteuid() != 0:
            raise Failure("run as root (namespaces, users and sshd need it)")
        if args.command == "install":
            install()
        elif args.command == "start":
            start(args)
        elif args.command == "stop":
            stop(Path(args.dir), keep=args.keep)
        elif args.command == "python":  # the host is optional: then the venv is only built
            host = Host(Path(args.dir).absolute())
            python = build_python(Path(args.checkout), Path(args.python_cache), host)
            if host.state:
                host.state["python"] = python
                host.state_file.write_text(json.dumps(host.state, indent=1))
            print(python)
        else:
            host = Host(Path(args.dir).absolute())
            if not host.state:
                raise Failure(f"no host in {host.dir}: ssh-test/start {host.dir} first")
            if args.command == "exec":
                argv = host.exec_argv(command or ["bash", "-l"], root=args.root)
                os.execvp(argv[0], argv)
            elif args.command == "sessions":
                pids = sessions(host, args.client_port)
                if args.kill and pids:
                    kill_pids(pids, timeout=2)
                print(" ".join(str(p) for p in sorted(pids)))
    except Failure as error:
        log(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
