"""``experimaestro run-experiment``: the 2.x-style project in tests/runxp_project, run end to end
with the installed command (normal, rerun, dry_run, generate_only), and every bad input with its
message. The project is copied into a temporary folder; the user's ~/.config is never read."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

PROJECT = Path(__file__).parent / "runxp_project"
#: The identifiers experimaestro 2.7.0 gives the same tasks (experiment.Train with rate=0.5,
#: epochs=3, suffix="abc" and seeds 1 and 3; pkg.tasks.Square with x=1 and 2), built by importing
#: the project's modules under 2.7.0 (its run-experiment itself fails on tasks defined in a
#: `file:` experiment).
IDS_270 = {
    "train": {1: "42395e7ee6294f1c239f934145bdb52343efb43f9151f27e0531201249875d43",
              3: "7241d71b554f0f185a4fe004ed394057e27e771707840b5464e5f941e7abd983"},
    "square": {1: "cefee109dfd3e4a26500b52772f07f4fc024e9b04fa1a6b821d9671f1d1e78f2",
               2: "d741c800ffdc48ca2570da1f5a6b68141db55c54a22d73da231d9b0ebd0f3f49"},
}
COMMAND = Path(sys.executable).parent / "experimaestro"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("__pycache__", "README.md"))
    return root


def run_xp(project: Path, *args: str, config: Optional[str] = "config",
           timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command, run from an unrelated folder, with an empty user configuration folder."""
    home = project.parent / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XPM_MAX_JOBS": "2"}
    options = ["--xpm-config-dir", str(project / config)] if config else []
    return subprocess.run(
        [str(COMMAND), "run-experiment", *options, *args], cwd=project.parent,
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def job_lines(output: str, prefix: str = "job: ") -> dict[int, Path]:
    return {
        int(line.split()[1]): Path(line.split()[2])
        for line in output.splitlines() if line.startswith(prefix)
    }


def test_file_experiment_end_to_end_then_rerun_dry_run_and_generate_only(project: Path) -> None:
    first = run_xp(project, str(project / "xp"), "--env", "RUNXP_CLI_ENV", "from-cli",
                   "-c", "learning.rate=0.5", "-c", "seeds.1=3", "--suffix", "abc")
    assert first.returncode == 0, first.stderr
    # launchers.py of --xpm-config-dir chose the launcher; pre_experiment ran first and mocked
    # heavylib in the controller; the workspace is the one whose trigger matches "runxp-main".
    assert "launcher: local (at most 3 at once)" in first.stdout
    assert "heavylib in the controller: MockObject" in first.stdout
    assert "pre_experiment: ran" in first.stdout
    assert "note: from xp.yaml" in first.stdout
    workspace = (project / "ws-main").resolve()
    assert f"experiment runxp-main: workspace main ({workspace})" in first.stderr
    assert "experiment runxp-main: 2 jobs: 0 reused, 2 ran, 0 failed" in first.stderr
    jobs = job_lines(first.stdout)
    assert sorted(jobs) == [1, 3]
    for seed, path in jobs.items():
        assert path.parent.parent == workspace / "jobs"
        assert path.parent.name == "experiment.train"  # the file's module name, as in 2.x
        assert path.name == IDS_270["train"][seed]
        result = json.loads((path / "result.json").read_text())
        # The values: imports + xp.yaml + -c (typed by the schema); the helper read --suffix;
        # the job imported the real heavylib and got the workspace's and --env's variables.
        assert result == {"rate": 0.5, "epochs": 3, "seed": seed, "suffix": "abc",
                          "heavylib_real": True, "ws_env": "from-settings", "cli_env": "from-cli"}
    assert not (project / "ws-other").exists()

    # The same values another way: the rate from a --post-yaml file, ARGS after "--".
    post = write(project, "post.yaml", "learning:\n  rate: 0.5\n")
    again = run_xp(project, str(project / "xp.yaml"), "--post-yaml", str(post), "-c", "seeds.1=3",
                   "--", "--suffix", "abc")
    assert again.returncode == 0, again.stderr
    assert "experiment runxp-main: 2 jobs: 2 reused, 0 ran, 0 failed" in again.stderr
    assert job_lines(again.stdout) == jobs

    before = sorted(p.relative_to(project) for p in project.rglob("*") if "__pycache__" not in p.parts)
    dry = run_xp(project, str(project / "xp"), "--run-mode", "DRY_RUN", "-c", "seeds.2=7",
                 "-c", "pre_experiment=pre_module")
    assert dry.returncode == 0, dry.stderr
    assert "pre_experiment: module" in dry.stdout  # a module name (on the YAML's pythonpath)
    assert "heavylib in the controller: MockObject" in dry.stdout
    dry_jobs = job_lines(dry.stdout)
    assert sorted(dry_jobs) == [1, 2, 7]  # run() was called...
    after = sorted(p.relative_to(project) for p in project.rglob("*") if "__pycache__" not in p.parts)
    assert after == before  # ...and nothing was written

    generated = run_xp(project, str(project / "xp"), "--run-mode", "generate_only", "-c", "seeds.2=7")
    assert generated.returncode == 0, generated.stderr
    assert job_lines(generated.stdout) == dry_jobs
    for seed in (2, 7):
        folder = dry_jobs[seed]
        assert (folder / "params.json").is_file()
        assert not (folder / "train.done").exists() and not (folder / "result.json").exists()


def test_a_failed_job_makes_the_command_fail(project: Path) -> None:
    """Unlike 2.7.0 (which exits 0 and only logs it)."""
    result = run_xp(project, str(project / "xp"), "-c", "learning.epochs=-1", "-c", "seeds=[4]")
    assert result.returncode == 1, result.stderr
    assert "experiment runxp-main: 1 job: 0 reused, 0 ran, 1 failed" in result.stderr
    assert "- experiment.train [failed] - ValueError: epochs=-1: give a positive number" in result.stderr
    assert result.stderr.count("experiment runxp-main: 1 job(s) failed") == 1


def test_module_experiment_with_parent(project: Path) -> None:
    """module: pkg.xpmodule is found from the folder two levels above pkg/xp_module.yaml."""
    result = run_xp(project, str(project / "pkg" / "xp_module.yaml"))
    assert result.returncode == 0, result.stderr
    squares = job_lines(result.stdout, "square: ")
    assert sorted(squares) == [1, 2]  # seeds from the parent file
    for x, path in squares.items():
        assert path.parent.name == "pkg.tasks.square"
        assert path.name == IDS_270["square"][x]
        assert (path / "square.txt").read_text() == str(x * x)
    assert "experiment runxp-module: 2 jobs: 0 reused, 2 ran, 0 failed" in result.stderr


def test_the_file_option_overrides_the_yaml(project: Path) -> None:
    other = project / "other.py"
    other.write_text((project / "experiment.py").read_text().replace("note: {cfg.note}", "other: {cfg.note}"))
    result = run_xp(project, str(project / "xp"), "--file", str(other), "--run-mode", "dry_run")
    assert result.returncode == 0, result.stderr
    assert "other: from xp.yaml" in result.stdout
    assert "/jobs/other.train/" in result.stdout  # the module is named after the file


def test_show_prints_the_merged_configuration(project: Path) -> None:
    result = run_xp(project, str(project / "xp"), "--show", "-c", "seeds.2=5", "-c", "learning.rate=1")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["id"] == "runxp-main"
    assert shown["learning"] == {"rate": "1", "epochs": 3}  # -c values are typed by the schema later
    assert shown["seeds"] == [1, 2, "5"]
    assert shown["file"] == str((project / "experiment").resolve())
    assert not (project / "ws-main").exists()


def test_the_workspace_option_and_workdir(project: Path, tmp_path: Path) -> None:
    result = run_xp(project, str(project / "xp"), "--workspace", "other", "--run-mode", "dry_run")
    assert result.returncode == 0, result.stderr
    assert f"workspace other ({(project / 'ws-other').resolve()})" in result.stderr
    result = run_xp(project, str(project / "xp"), "--workdir", str(tmp_path / "wd"),
                    "--run-mode", "dry_run")
    assert result.returncode == 0, result.stderr
    assert f"experiment runxp-main: workspace ({tmp_path / 'wd'})" in result.stderr


def test_add_timestamp_and_the_monitor_options(project: Path) -> None:
    import importlib.util

    result = run_xp(project, str(project / "xp"), "-c", "add_timestamp=true", "--port", "0",
                    "--web", "--console", "--host", "h", "--no-db", "--run-mode", "dry_run")
    assert result.returncode == 0, result.stderr
    assert re.search(r"experiment runxp-main-\d{8}-\d{4}: workspace main", result.stderr)
    if importlib.util.find_spec("experimaestro.monitor") is None:
        warning = "warning: --port/--web: the web monitor is not part of this version yet: ignored"
        assert result.stderr.count(warning) == 1


def test_dirty_git(project: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(project)}
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run([git, *command], cwd=project, check=True, env=env, capture_output=True)
    clean = run_xp(project, str(project / "xp"), "-c", "dirty_git=error", "--run-mode", "dry_run")
    assert clean.returncode == 0, clean.stderr
    with open(project / "experiment.py", "a") as f:
        f.write("# changed\n")
    message = f"the git repository of {project} has uncommitted changes"
    warned = run_xp(project, str(project / "xp"), "-c", "dirty_git=warn", "--run-mode", "dry_run")
    assert warned.returncode == 0 and f"warning: {message} (dirty_git: warn" in warned.stderr
    ignored = run_xp(project, str(project / "xp"), "--run-mode", "dry_run")  # xp.yaml: ignore
    assert ignored.returncode == 0 and message not in ignored.stderr
    assert message in failure(run_xp(project, str(project / "xp"), "-c", "dirty_git=error"))
    assert not (project / "ws-main").exists()


# --- Bad input ------------------------------------------------------------------------------------


def write(project: Path, name: str, text: str) -> Path:
    path = project / name
    path.write_text(text)
    return path


def failure(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


def test_missing_required_field(project: Path) -> None:
    write(project, "noseeds.yaml", "id: runxp-x\npythonpath: [lib]\nlearning: {rate: 0.1}\n")
    err = failure(run_xp(project, str(project / "noseeds")))
    assert "seeds: required field missing (Configuration.seeds, List[int])" in err
    assert "-c seeds=..." in err
    assert not (project / "ws-main").exists()


def test_wrong_types_name_the_key_and_line(project: Path) -> None:
    write(project, "types.yaml", "imports: [base.yaml]\nid: runxp-x\npythonpath: [lib]\n"
          "learning:\n  epochs: three\nseeds: [1, 2.5]\n")
    err = failure(run_xp(project, str(project / "types")))
    types_yaml = project / "types.yaml"
    assert "2 errors in the configuration (Configuration)" in err
    assert f"{types_yaml}:5: learning.epochs: expected int, got 'three' (str)" in err
    assert f"{types_yaml}:6: seeds.1: expected int, got 2.5 (float)" in err
    err = failure(run_xp(project, str(project / "xp"), "-c", "learning.rate=fast"))
    assert "-c learning.rate=fast: learning.rate: expected float, got 'fast' (str)" in err


def test_malformed_yaml_names_file_and_line(project: Path) -> None:
    bad = write(project, "bad.yaml", "id: runxp-x\nlearning:\n  rate: 0.1\n epochs: 2\n")
    err = failure(run_xp(project, str(bad)))
    assert f"{bad}:4:2: malformed YAML" in err
    # In an imported file too.
    write(project, "imports_bad.yaml", "imports: [bad.yaml]\nid: runxp-x\n")
    assert f"{bad}:4:2: malformed YAML" in failure(run_xp(project, str(project / "imports_bad")))


def test_unknown_key_is_a_warning(project: Path) -> None:
    write(project, "typo.yaml", "imports: [xp.yaml]\nlerning_rate: 0.3\n")
    result = run_xp(project, str(project / "typo"), "--run-mode", "dry_run")
    assert result.returncode == 0, result.stderr
    assert (f"warning: {project / 'typo.yaml'}:2: unknown key 'lerning_rate' (Configuration has "
            f"no such field): ignored") in result.stderr


def test_pre_experiment_errors(project: Path) -> None:
    err = failure(run_xp(project, str(project / "xp"), "-c", "pre_experiment=nothere.py"))
    assert "-c pre_experiment=nothere.py: pre_experiment file nothere.py not found" in err
    write(project, "broken.py", "import os\n\nraise RuntimeError('no GPU here')\n")
    write(project, "broken.yaml", "imports: [xp.yaml]\npre_experiment: broken.py\n")
    err = failure(run_xp(project, str(project / "broken")))
    assert (f"failed to execute pre_experiment {project / 'broken.py'}:3: RuntimeError: no GPU here"
            in err)
    err = failure(run_xp(project, str(project / "xp"), "-c", "pre_experiment=no_such_module"))
    assert "pre_experiment 'no_such_module' is neither a file" in err
    assert not (project / "ws-main").exists()


def test_a_schema_without_id(project: Path) -> None:
    write(project, "noid.py", "from experimaestro.experiments import configuration\n\n"
          "@configuration\nclass C:\n    x: int = 1\n\ndef run(helper, cfg: C):\n    pass\n")
    yaml_file = write(project, "noid.yaml", "file: noid\nx: 2\n")
    err = failure(run_xp(project, str(yaml_file)))
    assert f"{yaml_file}: the configuration has no id: derive C from ConfigurationBase" in err


def test_parent_and_imports_together(project: Path) -> None:
    both = write(project, "both.yaml", "parent: base.yaml\nimports: [base.yaml]\nid: runxp-x\n")
    err = failure(run_xp(project, str(both)))
    assert f"{both}:2: 'parent' ({both}:1) and 'imports' are both given: keep one" in err


def test_a_missing_configuration_folder(project: Path) -> None:
    err = failure(run_xp(project, str(project / "xp"), config="nothere"))
    assert f"--xpm-config-dir {project / 'nothere'}: no such folder" in err


def test_no_workspace(project: Path) -> None:
    (project / "empty-config").mkdir()
    err = failure(run_xp(project, str(project / "xp"), config="empty-config"))
    assert "no workspace: give --workdir DIR, or list workspaces in" in err
    assert str(project / "empty-config" / "settings.yaml") in err
    err = failure(run_xp(project, str(project / "xp"), "--workspace", "nope"))
    assert "no workspace 'nope' in" in err and "(workspaces there: other, main)" in err


def test_bad_command_line_assignment_and_arguments(project: Path) -> None:
    err = failure(run_xp(project, str(project / "xp"), "-c", "seeds.5=1"))
    assert "-c 'seeds.5=1': seeds has 2 items (indexes 0 to 1; 2 appends one)" in err
    err = failure(run_xp(project, str(project / "xp"), "-c", "seeds"))
    assert "-c 'seeds': expected key.path=value" in err
    write(project, "plain.yaml", "parent: pkg/xp_module.yaml\n")
    err = failure(run_xp(project, str(project / "plain"), "--verbose"))
    assert "unexpected arguments '--verbose': the experiment's run() takes none" in err
    assert not (project / "ws-main").exists()


def test_the_readme_example(tmp_path: Path) -> None:
    """The README's run-experiment section runs as written."""
    import shlex

    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## The same with YAML files: `experimaestro run-experiment`", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    yaml_text = section.split("```yaml", 1)[1].split("```", 1)[0]
    command = section.split("```sh", 1)[1].split("```", 1)[0].strip()
    (tmp_path / "experiment.py").write_text(code)
    (tmp_path / "my-xp.yaml").write_text(yaml_text)
    args = shlex.split(command)
    assert args[:2] == ["experimaestro", "run-experiment"]
    done = subprocess.run(
        [str(COMMAND), *args[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "experiment my-xp: 2 jobs: 0 reused, 2 ran, 0 failed" in done.stderr
    models = sorted(p.read_text() for p in tmp_path.glob("workspace/jobs/*/*/model.txt"))
    assert models == ["2 layers", "4 layers"]


def test_port_serves_the_monitor_and_a_taken_port_is_a_clear_error(project: Path) -> None:
    """--port starts the web monitor for the run (its URL printed on stderr); a port that
    is taken is an error naming it, exit 1, no traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_xp(project, str(project / "xp"), "--port", str(port), "-c", "seeds=[5]",
                      "--suffix", "abc")
    assert busy.returncode == 1, busy.stderr
    assert "Traceback" not in busy.stderr
    assert f"--port/--web: experiment('runxp-main', port={port})" in busy.stderr

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    served = run_xp(project, str(project / "xp"), "--port", str(free), "-c", "seeds=[5]",
                    "--suffix", "abc")
    assert served.returncode == 0, served.stderr
    assert f"experimaestro: monitor of runxp-main at http://127.0.0.1:{free}" in served.stderr
