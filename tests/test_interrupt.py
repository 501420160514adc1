"""Ctrl-C in a controller: one line says how many jobs go on, that a rerun re-attaches and how to
kill them; no traceback; exit code 130. The running jobs go on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from xpm_tasks import count

from conftest import controller_env, wait_until

CONTROLLER = """
from pathlib import Path
from experimaestro import experiment
from xpm_tasks import Step

root = Path({root!r})
with experiment(root / "ws", "ctrlc"):
    runs = Step.C(name="runs", log=root / "log", gate=root / "gate").submit()
    Step.C(name="waits", log=root / "log", after=runs).submit()
"""


def test_ctrl_c_says_what_goes_on_and_exits_130(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    script = tmp_path / "controller.py"
    script.write_text(textwrap.dedent(CONTROLLER.format(root=str(tmp_path))))
    out = tmp_path / "controller.out"
    with open(out, "wb") as output:
        # A session of its own, so that SIGINT goes to its whole process group, as a terminal's
        # Ctrl-C does (the fork server included).
        controller = subprocess.Popen(
            [sys.executable, str(script)], stdout=output, stderr=subprocess.STDOUT,
            env=controller_env(), cwd=tmp_path, start_new_session=True,
        )
    try:
        wait_until(lambda: count(log, "start", "runs") == 1, what="the job to start")
        os.killpg(controller.pid, signal.SIGINT)
        assert controller.wait(timeout=30) == 130
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()
    text = out.read_text()
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if "interrupted" in line]
    assert len(lines) == 1, text
    assert "1 job still runs" in lines[0] and "re-attach" in lines[0], text
    assert f"experimaestro jobs kill --workdir {tmp_path / 'ws'} ID" in lines[0], text
    # The running job goes on; the one that waited for it was dropped.
    gate.touch()
    wait_until(lambda: count(log, "end", "runs") == 1, what="the job to go on and end")
    assert count(log, "start", "waits") == 0


def test_interrupt_is_still_a_keyboard_interrupt(tmp_path: Path) -> None:
    """Code that catches KeyboardInterrupt around the experiment still catches it."""
    import pytest

    from experimaestro import Interrupted, experiment
    from xpm_tasks import Step

    gate = tmp_path / "gate"
    with pytest.raises(KeyboardInterrupt) as info:
        with experiment(tmp_path / "ws", "xp"):
            step = Step.C(name="s", log=tmp_path / "log", gate=gate).submit()
            wait_until(lambda: count(tmp_path / "log", "start", "s") == 1, what="the job")
            raise KeyboardInterrupt
    assert isinstance(info.value, Interrupted) and info.value.code == 130
    assert "1 job still runs" in str(info.value)
    gate.touch()
    assert step.__xpm__.job.wait(timeout=30)
