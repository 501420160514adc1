"""The remote agent's protocol, run locally as a real process (``python -m experimaestro agent`` on
pipes, as the SSH connector runs it on a channel): greeting, answers by id, errors that do not end
it, and its exit when its stdin closes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from experimaestro.connectors.agentprotocol import OPERATIONS, PROTOCOL
from experimaestro.version import __version__


def test_the_agent_greets_answers_by_id_and_survives_bad_requests(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    requests = [
        b"not json\n",
        b'{"id": 1, "op": "no_such_op"}\n',
        b'{"id": 2, "op": "read_text", "args": {"path": "%s"}}\n' % str(tmp_path / "missing").encode(),
        b'{"id": 3, "op": "read_text", "args": {"path": "%s"}}\n' % str(tmp_path / "a.txt").encode(),
        b'{"id": 4, "op": "stat_many", "args": {"paths": ["%s", "%s"]}}\n'
        % (str(tmp_path).encode(), str(tmp_path / "missing").encode()),
    ]
    agent = subprocess.Popen([sys.executable, "-m", "experimaestro", "agent"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert agent.stdin is not None and agent.stdout is not None
        agent.stdin.write(b"".join(requests))
        agent.stdin.flush()
        hello, *answers = [json.loads(agent.stdout.readline()) for _ in range(1 + len(requests))]
        agent.stdin.close()  # the controller is gone: the agent ends by itself
        assert agent.wait(timeout=30) == 0, agent.stderr.read() if agent.stderr else ""
    finally:
        agent.kill()
        agent.wait()
    assert hello["hello"]["version"] == __version__ and hello["hello"]["protocol"] == PROTOCOL
    by_id = {answer["id"]: answer for answer in answers}
    assert by_id[None]["error"]["type"] == "JSONDecodeError"
    assert by_id[1]["error"]["message"].startswith("unknown operation 'no_such_op'")
    assert by_id[2]["error"]["type"] == "FileNotFoundError"
    assert by_id[3] == {"id": 3, "result": "hello"}
    assert by_id[4]["result"][0][2] is True and by_id[4]["result"][1] is None


def test_every_operation_has_a_handler_and_a_doc() -> None:
    from experimaestro.agent import Agent

    handlers = Agent(sys.stdin.buffer, sys.stdout.buffer).handlers
    assert set(handlers) == set(OPERATIONS)
    assert all(op.doc for op in OPERATIONS.values())
