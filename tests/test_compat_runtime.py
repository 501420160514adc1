"""The experimaestro 2.x runtime API, used as 2.x projects use it; where it matters, compared with
what experimaestro 2.7.0 did when run by hand (its results are written here as data)."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from xpm_runtime import (
    CacheConfig,
    Cancellable,
    EnvTask,
    Hooked,
    HookedTask,
    LoadWeights,
    Progressing,
    Ranker,
    Say,
    UseCache,
    Weights,
)

import experimaestro
from conftest import controller_env, wait_until
from experimaestro import (
    DirtyGitError,
    FailedExperiment,
    GracefulTimeout,
    JobState,
    Launcher,
    ResumableTask,
    RunMode,
    Task,
    TaskCancelled,
    deserialize,
    experiment,
    load_xp_info,
    serialize,
    tqdm,
)
from experimaestro.connectors.local import LocalConnector
from experimaestro.launchers.direct import DirectLauncher

# --- What 2.7.0 gave -------------------------------------------------------------------------

#: ``[(m.name, m.value) for m in RunMode]`` (2.7.0 also has PREPARE, for its Prepare configs).
RUNMODE_270 = [("NORMAL", "normal"), ("GENERATE_ONLY", "generate"), ("DRY_RUN", "dry-run")]
#: ``Say.C(word="hello")`` (module rtmod): its job folder, and ``PathGenerator(STDOUT)`` in it.
SAY_JOB_270 = "jobs/rtmod.say/19662b79f78452dab6d48f194e5d6bbe06062f15a5cd2c2cfa7c19dd125815ee"
SAY_OUT_270 = "say.out"
#: ``@cache("data.txt")`` on ``CacheConfig.C(n=5)`` (module cachemod), called in a job.
CACHE_FILE_270 = (
    "config/cachemod.CacheConfig/f83c7967225778b65bb8194da56493caffef2f7200b990491d1c374153490df6"
    "/data.txt"
)
CACHE_OUTPUT_270 = "computed:5\ncached:5\n"
#: A SubmitHook on a configuration class used by the task, in a dry run: ``job.environ``.
HOOK_ENV_270 = {"HOOKVAR": "hooked"}
#: The job's output with ``xp.setenv("MYVAR", "fromxp")`` and the hook above.
HOOKED_JOB_OUTPUT_270 = "ENV fromxp hooked\n"


def _job_output(job_path: Path, name: str) -> str:
    """The job's stdout without our banner lines."""
    text = (job_path / f"{name}.out").read_text()
    return "".join(line for line in text.splitlines(True) if not line.startswith("===== "))


# --- RunMode, tags, DirectLauncher, Launcher --------------------------------------------------


def test_run_mode_members_have_2x_values() -> None:
    assert [(m.name, m.value) for m in RunMode] == RUNMODE_270
    assert RunMode("dry-run") is RunMode.DRY_RUN
    assert RunMode.GENERATE_ONLY == "generate"  # a str enum, as in 2.x
    assert RunMode("generate_only") is RunMode.GENERATE_ONLY is RunMode("GENERATE_ONLY")
    with pytest.raises(ValueError):
        RunMode("sometimes")


def test_xpm_tags_is_callable_as_in_2x() -> None:
    say = Say.C(word="x").tag("a", 1)
    assert say.__xpm__.tags() == {"a": 1} == say.tags()
    assert say.__xpm__.own_tags == {"a": 1}


def test_direct_launcher_takes_the_connector_or_max_jobs_first() -> None:
    connector = LocalConnector.instance()
    launcher = DirectLauncher(connector)  # as 2.x launchers.py files write it
    assert launcher.connector is connector and launcher.max_jobs == (os.cpu_count() or 1)
    assert DirectLauncher(3).max_jobs == 3
    assert DirectLauncher(connector=connector, max_jobs=2).max_jobs == 2
    assert isinstance(launcher, Launcher)
    with pytest.raises(TypeError, match="connector is given twice"):
        DirectLauncher(connector, connector=connector)
    with pytest.raises(TypeError, match="max_jobs is given twice"):
        DirectLauncher(3, max_jobs=4)
    with pytest.raises(TypeError, match=r"a connector .* or the number of jobs"):
        DirectLauncher("local")


def test_resumable_names_exist_with_their_meaning() -> None:
    assert issubclass(ResumableTask, Task)
    assert Cancellable.C().remaining_time() is None  # no time limit known here
    assert str(GracefulTimeout()) == "Task stopped gracefully before timeout"
    assert TaskCancelled("x", remaining_time=30).remaining_time == 30
    assert not issubclass(TaskCancelled, Exception)  # see test_cancelled_job_*


def test_version_keeps_pip_from_replacing_us_for_2x_requirements() -> None:
    """A package that requires experimaestro>=2.5 (or <3) is satisfied by ours: pip keeps it.
    Above 2.7.0, the last 2.x on PyPI, so `pip install -U` does not "upgrade" to it either."""
    version = tuple(int(p) for p in experimaestro.__version__.split("."))
    assert (2, 5) <= version < (3,) and version > (2, 7, 0)
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'version = "{experimaestro.__version__}"' in pyproject


# --- The experiment -------------------------------------------------------------------------


def test_experiment_2x_attributes(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no experiment is running"):
        experiment.current()
    with experiment(
        tmp_path / "ws", "attrs", host="localhost", token="t", no_db=True,
        no_environmental_impact=True, dirty_git="ignore", register_signals=True,
    ) as xp:
        assert experiment.current() is xp
        assert xp.workdir == tmp_path / "ws" / "experiments" / "attrs"
        assert xp.workdir / "results" == xp.resultspath
        assert xp.workspace.run_mode is RunMode.NORMAL
        assert xp.workspace.connector is LocalConnector.instance()
        assert xp.workspace.path == tmp_path / "ws"
    with experiment(tmp_path / "ws", "dry", run_mode=RunMode.DRY_RUN) as xp:
        assert xp.workspace.run_mode is RunMode.DRY_RUN
    with pytest.raises(ValueError, match="dirty_git='sometimes'.*ignore, warn, error"):
        experiment(tmp_path / "ws", "bad", dirty_git="sometimes")


def test_setenv_launcher_env_and_submit_hooks_reach_the_job(tmp_path: Path) -> None:
    # A dry run applies the hooks (2.7.0's own test of SubmitHook does this).
    dry = HookedTask.C(h=Hooked.C()).submit(run_mode=RunMode.DRY_RUN)
    assert dry.__xpm__.job.environ == HOOK_ENV_270
    launcher = DirectLauncher()
    launcher.setenv("LAUNCHVAR", "fromlauncher")
    with experiment(tmp_path / "ws", "env") as xp:
        xp.setenv("MYVAR", "fromxp")
        xp.setenv("MYVAR", "ignored", override=False)
        hooked = HookedTask.C(h=Hooked.C())
        hooked.submit()
        plain = EnvTask.C()
        plain.submit(launcher=launcher)
    assert hooked.jobpath.relative_to(tmp_path / "ws").parts[:2] == ("jobs", "rtmod.hookedtask")
    assert _job_output(hooked.jobpath, "hookedtask") == HOOKED_JOB_OUTPUT_270
    assert _job_output(plain.jobpath, "envtask") == "ENV fromxp None fromlauncher\n"
    assert "MYVAR" not in os.environ  # the controller's own environment is untouched


def test_submit_hook_may_change_the_launcher(tmp_path: Path) -> None:
    from xpm_runtime import hookvar

    chosen = DirectLauncher(1)

    class UseLauncher(hookvar):
        def process(self, job, launcher):  # type: ignore[no-untyped-def]
            job.launcher = chosen

    result = HookedTask.C(h=Hooked.C())
    UseLauncher("l")(type(result.h))  # decorate after the fact: the hook is found at submit
    try:
        result.submit(run_mode=RunMode.DRY_RUN)
        assert result.__xpm__.job.launcher is chosen
    finally:
        Hooked.__dict__["_xpm_submit_hooks"].remove(UseLauncher("l"))


def test_submit_hooks_stop_at_other_submitted_tasks(tmp_path: Path) -> None:
    """As 2.7.0: the hooks of an upstream task's classes apply to its job, not to its dependents'."""
    from xpm_runtime import Learn, Model

    upstream = HookedTask.C(h=Hooked.C())
    upstream.submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path)
    assert upstream.__xpm__.job.environ == HOOK_ENV_270
    Learn.C(model=Model.C()).submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path)
    holder = EnvTask.C()
    holder.add_dependencies(upstream)
    holder.submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path)
    assert holder.__xpm__.job.environ == {}


def test_add_service(tmp_path: Path) -> None:
    events: list[str] = []

    class Board:
        id = "board"

        def set_experiment(self, xp: experiment) -> None:
            events.append(f"set {xp.name}")

        def stop(self) -> None:
            events.append("stop")

    board = Board()
    with experiment(tmp_path / "ws", "services") as xp:
        assert xp.add_service(board) is board
        assert xp.services == {"board": board}
        assert events == ["set services"]
    assert events == ["set services", "stop"]
    with pytest.raises(TypeError, match="needs an `id`"):
        xp.add_service(object())


def _git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True, capture_output=True,
    )


def test_dirty_git_checks_the_script_repository_by_default(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _git(project, "init", "-q")
    (project / "xp.py").write_text(
        "from experimaestro import experiment\n"
        "with experiment('ws', 'dirty', dirty_git='error'):\n"
        "    pass\n"
    )
    _git(project, "add", "xp.py")
    _git(project, "commit", "-qm", "v1")
    run = subprocess.run(
        [sys.executable, str(project / "xp.py")], cwd=tmp_path, capture_output=True, text=True,
        env=controller_env(), timeout=120,
    )
    assert run.returncode == 0, run.stderr
    with (project / "xp.py").open("a") as f:
        f.write("# changed\n")
    run = subprocess.run(
        [sys.executable, str(project / "xp.py")], cwd=tmp_path, capture_output=True, text=True,
        env=controller_env(), timeout=120,
    )
    assert run.returncode != 0
    assert f"DirtyGitError: experiment dirty: the project repository {project.resolve()} has " \
        "uncommitted changes" in run.stderr


def test_dirty_git(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _git(project, "init", "-q")
    (project / "xp.py").write_text("v1")
    _git(project, "add", "xp.py")
    _git(project, "commit", "-qm", "v1")
    with experiment(tmp_path / "ws", "clean", dirty_git="error", project_paths=[project]):
        pass
    (project / "xp.py").write_text("v2")
    with pytest.raises(DirtyGitError, match=r"uncommitted changes .* dirty_git='warn'"):
        with experiment(tmp_path / "ws2", "dirty", dirty_git="error", project_paths=[project]):
            pass
    assert not (tmp_path / "ws2").exists()  # refused before anything is written
    with caplog.at_level(logging.WARNING, logger="experimaestro"):
        with experiment(tmp_path / "ws", "warned", project_paths=[project]):
            pass
    assert any("uncommitted changes" in r.getMessage() for r in caplog.records)


# --- STDOUT / STDERR, cache -----------------------------------------------------------------


def test_stdout_path_generator(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with experiment(ws, "say"):
        say = Say.C(word="hello")
        say.submit()
        assert say.out == ws / SAY_JOB_270 / SAY_OUT_270  # the same place as in 2.7.0
        assert say.err == ws / SAY_JOB_270 / "say.err"
    assert _job_output(say.jobpath, "say") == "HELLO\n"


def test_cache_in_a_job_and_in_the_controller(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with pytest.raises(RuntimeError, match=r"@cache\('data.txt'\) .* inside `with experiment"):
        CacheConfig.C(n=5).get()
    with experiment(ws, "cache"):
        task = UseCache.C(data=CacheConfig.C(n=5))
        task.submit()
    assert _job_output(task.jobpath, "usecache") == CACHE_OUTPUT_270
    assert (ws / CACHE_FILE_270).read_text() == "5"
    with experiment(ws, "cache"):
        # The controller shares the file (2.7.0 only allows calls in a job).
        assert CacheConfig.C(n=5).get() == "cached:5"
        assert CacheConfig.C(n=6).instance().get(extra=1) == "computed:7"


# --- tqdm ---------------------------------------------------------------------------------------


def test_tqdm_reports_progress_through_experimaestro_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reports: list[tuple[float, int, object]] = []
    monkeypatch.setattr(
        experimaestro, "progress",
        lambda value, level=0, desc=None: reports.append((value, level, desc)), raising=False,
    )
    items = list(tqdm(range(4), desc="outer", mininterval=0, miniters=1, disable=False))
    assert items == [0, 1, 2, 3]
    assert reports[0] == (0.0, 0, "outer")
    assert reports[-1][:2] == (1.0, 0)
    values = [r[0] for r in reports]
    assert values == sorted(values) and len(values) >= 3
    bar = tqdm(total=10, desc="manual")
    bar.update(5)
    assert reports[-1][:2] == (0.5, 0)
    bar.close()


def test_tqdm_without_a_progress_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(experimaestro, "progress", None, raising=False)
    assert list(tqdm(range(3), disable=True)) == [0, 1, 2]


def test_tqdm_in_a_job(tmp_path: Path) -> None:
    with experiment(tmp_path / "ws", "tqdm"):
        task = Progressing.C()
        task.submit()
    assert _job_output(task.jobpath, "progressing") == "total 10\n"
    assert "steps: 100%" in (task.jobpath / "progressing.err").read_text()


# --- serialize / deserialize, load_xp_info -------------------------------------------------------


def test_serialize_copies_data_paths_and_loads_back(tmp_path: Path) -> None:
    weights_file = tmp_path / "weights.bin"
    weights_file.write_text("W")
    vocab = tmp_path / "vocab"
    vocab.mkdir()
    (vocab / "words.txt").write_text("a b")
    weights = Weights.C(path=weights_file, vocab=vocab, other=tmp_path / "elsewhere", size=8)
    ranker = Ranker.C(weights=weights, name="r")
    saved = tmp_path / "saved"
    serialize(ranker, saved, init_tasks=[LoadWeights.C(weights=weights)])
    # Move the folder and remove the originals: the data travels with it.
    moved = tmp_path / "moved"
    saved.rename(moved)
    weights_file.unlink()
    (vocab / "words.txt").unlink()
    config, init_tasks = deserialize(moved)
    assert isinstance(config, Ranker) and config.name == "r" and config.weights.size == 8
    assert config.weights.path.read_text() == "W"
    assert config.weights.path.is_relative_to(moved)
    assert (config.weights.vocab / "words.txt").read_text() == "a b"
    assert config.weights.other == tmp_path / "elsewhere"  # not a DataPath: kept as it was
    assert config.__xpm__.identifier == ranker.__xpm__.identifier
    assert [type(t) for t in init_tasks] == [LoadWeights]
    assert init_tasks[0].weights is config.weights  # the graph stays shared
    obj = deserialize(moved, as_instance=True)
    assert type(obj) is Ranker and obj.weights.loaded == ["W"]  # the init task ran on it


def test_serialize_in_a_job_writes_upstream_tasks_in_full(tmp_path: Path) -> None:
    from xpm_runtime import SaveUpstream, UsesLearn, submit_upstream_chain

    with experiment(tmp_path / "ws", "save"):
        learn, uses, save = submit_upstream_chain(3, SaveUpstream)
    config, init_tasks = deserialize(save.jobpath / "saved")
    assert type(config) is UsesLearn and config.learn.model.n == 3 and init_tasks == []
    assert config.learn.out == learn.out
    assert config.__xpm__.identifier == uses.__xpm__.identifier


def test_serialize_and_deserialize_errors(tmp_path: Path) -> None:
    missing = Ranker.C(weights=Weights.C(path=tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match=r"Weights\.path is a DataPath whose file .*nothing"):
        serialize(missing, tmp_path / "out")
    assert not (tmp_path / "out" / "experimaestro.json").exists()
    with pytest.raises(FileNotFoundError, match=r"was the folder written by serialize"):
        deserialize(tmp_path / "empty")


def test_load_xp_info(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with experiment(ws, "info") as xp:
        say = Say.C(word="a").tag("w", "a")
        say.submit()
        env = EnvTask.C(name="e")
        env.submit()
    info = load_xp_info(xp.workdir)
    assert set(info.jobs) == {say.__xpm__.identifier.hex(), env.__xpm__.identifier.hex()}
    loaded = info.jobs[say.__xpm__.identifier.hex()]
    assert type(loaded) is Say and loaded.word == "a" and loaded.tags() == {"w": "a"}
    assert loaded.jobpath == say.jobpath and loaded.out == say.out
    assert info.actions == {}
    with pytest.raises(FileNotFoundError, match="not an experiment folder .* xp.workdir"):
        load_xp_info(ws)


# --- Cancellation -------------------------------------------------------------------------------


@pytest.mark.parametrize("swallow", [False, True])
def test_cancelled_job_gets_task_cancelled(tmp_path: Path, swallow: bool) -> None:
    """SIGTERM raises TaskCancelled in the task, which may clean up; a broad `except Exception`
    in the task cannot swallow it (unlike 2.x, where it is an Exception)."""
    task = Cancellable.C(swallow=swallow)
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "cancel"):
            task.submit()
            started = task.jobpath / "started"
            wait_until(started.exists, what="the job to start")
            os.kill(int(started.read_text()), signal.SIGTERM)
    job = task.__xpm__.job
    assert job.state is JobState.ERROR and job.failure.reason == "cancelled"
    assert (task.jobpath / "cleanup").read_text() == "received SIGTERM"
    assert not (task.jobpath / "swallowed").exists()
    assert (task.jobpath / "remaining").read_text() == "None"
    assert re.search(r"failed \(cancelled", (task.jobpath / "cancellable.err").read_text())
