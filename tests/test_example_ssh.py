"""examples/slurm.py, unchanged, with a launchers.py that sends the work to the SSH test host (a real
sshd on a separate namespace host): the same job identifiers and the same result as on the laptop,
read from the local copies of the remote job folders."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from remote_host import RemoteHost
from test_example_slurm import identifiers, run_example

SSH_LAUNCHERS = """
from experimaestro.connectors.ssh import SshConnector
from experimaestro.launchers.direct import DirectLauncher

HOST = SshConnector({alias!r}, workspace={workspace!r}, python={python!r})

def find_launcher(requirements, tags):
    return DirectLauncher(connector=HOST)
"""


def test_the_same_script_on_an_ssh_host_gives_the_same_identifiers_and_results(
        tmp_path: Path, remote_host: RemoteHost, ssh_home: Path) -> None:
    local = run_example(tmp_path / "local", tmp_path / "nothing")
    assert local.returncode == 0, local.stderr
    workspace = f"{remote_host.home}/example-{time.monotonic_ns()}"
    (tmp_path / "xdg" / "experimaestro").mkdir(parents=True)
    (tmp_path / "xdg" / "experimaestro" / "launchers.py").write_text(SSH_LAUNCHERS.format(
        alias=remote_host.alias, workspace=workspace, python=remote_host.python))
    try:
        remote = run_example(tmp_path / "remote", tmp_path / "xdg")
        assert remote.returncode == 0, remote.stderr
        assert identifiers(remote.stdout) == identifiers(local.stdout)
        assert remote.stdout.splitlines()[-1] == local.stdout.splitlines()[-1]  # "best: 0.343"
        # The jobs ran there: their folders are in the remote workspace
        listing = remote_host.run(f"ls {shlex.quote(workspace)}/jobs").stdout.split()
        assert sorted(listing) == ["__main__.evaluate", "__main__.train"]
    finally:
        remote_host.run(f"rm -rf {shlex.quote(workspace)}", check=False)
