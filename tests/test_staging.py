"""Staging the user's code (experimaestro/connectors/staging.py), with a local folder standing for
the remote workspace; test_ssh_sync.py does the same across the SSH host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experimaestro.connectors.streams import thread_streams
from experimaestro.connectors.staging import (
    CodeStore, StagingError, serve_stage, stage, take_snapshot,
)


def make_project(root: Path) -> Path:
    """A user's project: a package, a script, and things that are not to be staged."""
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "model.py").write_text("VALUE = 42\n")
    (root / "mypkg" / "data.csv").write_text("not python\n")
    (root / "experiment.py").write_text("import mypkg.model\n")
    (root / ".git").mkdir()
    (root / ".git" / "hook.py").write_text("")
    (root / "mypkg" / "__pycache__").mkdir()
    (root / "mypkg" / "__pycache__" / "x.py").write_text("")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "dep.py").write_text("")
    (root / "env" / "lib").mkdir(parents=True)
    (root / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "env" / "lib" / "dep.py").write_text("")
    (root / "workspace" / ".experimaestro").mkdir(parents=True)
    (root / "workspace" / "jobs" / "t" / "j").mkdir(parents=True)
    (root / "workspace" / "jobs" / "t" / "j" / "generated.py").write_text("")
    return root


def staged_over_pipes(snapshot, workspace: Path):
    """stage() locally, serve_stage() in a thread, over two pipes (as over a channel)."""
    with thread_streams(lambda instream, out: serve_stage(workspace, instream, out)) as (to, back):
        return stage(snapshot, to, back)


def test_snapshot_holds_only_the_python_files_of_the_import_folders(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    snapshot = take_snapshot([project])
    assert sorted(f.path for f in snapshot.files) == ["experiment.py", "mypkg/__init__.py", "mypkg/model.py"]
    assert take_snapshot([project]).digest == snapshot.digest, "the same files, the same hash"
    (project / "mypkg" / "model.py").write_text("VALUE = 43\n")
    assert take_snapshot([project]).digest != snapshot.digest


def test_excluded_folders_are_not_walked(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    (project / "notebooks").mkdir()
    (project / "notebooks" / "scratch.py").write_text("")
    paths = {f.path for f in take_snapshot([project], exclude=["notebooks", "mypkg/model*"]).files}
    assert paths == {"experiment.py", "mypkg/__init__.py"}


def test_a_snapshot_past_the_limit_says_which_folders_and_how_to_exclude(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    (project / "vendored").mkdir()
    (project / "vendored" / "huge.py").write_text("#" * 50_000)
    with pytest.raises(StagingError) as error:
        take_snapshot([project], limit=10_000)
    message = str(error.value)
    assert "take more than 10 KB (the limit; 49 KB found before stopping)" in message
    assert f"Largest folders: {project / 'vendored'} (49 KB)" in message
    assert "code_exclude" in message and "code=None" in message
    assert take_snapshot([project], exclude=["vendored"], limit=10_000).files


def test_staging_sends_only_missing_files_and_the_pythonpath_imports(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    workspace = tmp_path / "remote-workspace"
    first = staged_over_pipes(take_snapshot([project]), workspace)
    assert len(first.sent) == 3
    again = staged_over_pipes(take_snapshot([project]), workspace)
    assert again.sent == [] and again.pythonpath == first.pythonpath
    (project / "mypkg" / "model.py").write_text("VALUE = 43\n")
    changed = staged_over_pipes(take_snapshot([project]), workspace)
    assert len(changed.sent) == 1 and changed.pythonpath != first.pythonpath
    snapshot_dir = Path(changed.pythonpath[0])
    assert not (snapshot_dir / "mypkg" / "data.csv").exists(), "non-Python files are not sent"
    out = subprocess.run([sys.executable, "-c", "import mypkg.model; print(mypkg.model.VALUE)"],
                         env=dict(os.environ, PYTHONPATH=changed.pythonpath_value()),
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout == "43\n"
    # The first snapshot is still whole (jobs started with it keep importing the old code).
    assert (Path(first.pythonpath[0]) / "mypkg" / "model.py").read_text() == "VALUE = 42\n"


def test_identical_files_are_stored_once(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "same.py").write_text("X = 1\n")
    staged = staged_over_pipes(take_snapshot([a, b]), tmp_path / "ws")
    assert len(staged.sent) == 1
    assert len(staged.pythonpath) == 2
    assert all((Path(p) / "same.py").read_text() == "X = 1\n" for p in staged.pythonpath)


def test_the_store_checks_what_it_receives(tmp_path: Path) -> None:
    import io

    store = CodeStore(tmp_path / "ws")
    with pytest.raises(StagingError, match="hash mismatch"):
        store.add("0" * 64, io.BytesIO(b"content"), 7)
    assert list(store.objects.iterdir()) == [], "nothing half written"
    with pytest.raises(StagingError, match="not a SHA-256"):
        store.add("../../evil", io.BytesIO(b""), 0)
    hostile = {"snapshot": "x", "folders": 1, "files": [[0, "../../evil.py", "0" * 64, 1]]}
    with pytest.raises(StagingError, match="refused snapshot entry"):
        store.missing(hostile)
    forged = take_snapshot([make_project(tmp_path / "p")]).manifest()
    forged["files"][0][1] = "other.py"
    with pytest.raises(StagingError, match="does not match"):
        store.missing(forged)


def test_the_folders_the_local_launcher_uses_are_what_gets_staged(tmp_path: Path) -> None:
    # The controller's import folders (launchers/direct.py's user_python_path: the script's folder,
    # the project, not the interpreter's) are the input of the snapshot.
    project = make_project(tmp_path / "project")
    (project / "experiment.py").write_text(
        "import json, os\n"
        "import mypkg.model\n"
        "from experimaestro.launchers.direct import user_python_path\n"
        "from experimaestro.connectors.staging import take_snapshot\n"
        "snapshot = take_snapshot(user_python_path().split(os.pathsep))\n"
        "print(json.dumps(sorted(f.path for f in snapshot.files)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, str(project / "experiment.py")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["experiment.py", "mypkg/__init__.py", "mypkg/model.py"]
