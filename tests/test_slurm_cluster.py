"""The test cluster itself (slurm-test/): jobs run on both profiles, sacct only with accounting, the
node and partitions are those the launcher tests expect, start is idempotent, stop leaves nothing
behind and touches no other cluster, a taken port is refused; plus the helpers (sdiag counter, fake
sbatch, the CI policy)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import psutil
import pytest
from conftest import wait_until
from slurm_cluster import (
    SLURM_TEST, SOCKET_TIMEOUT, FakeSlurm, SessionCluster, SlurmCluster, SlurmctldRpcCounter,
    cluster_module, cluster_unavailable, free_ports, make_cluster_dir, reap_orphan_clusters,
    start_cluster, stop_cluster, unavailable,
)


def alive(pid: int) -> bool:
    """Running, a zombie counting as dead (PID 1 here reaps orphans late)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def live_processes_with(text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if text in " ".join(proc.info["cmdline"] or []) and alive(proc.pid):
            found.append(proc)
    return found


def daemon_pids(cluster: SlurmCluster) -> dict[str, int]:
    return {path.stem: int(path.read_text().split()[0]) for path in (cluster.root / "pids").glob("*.pid")}


@pytest.fixture
def own_cluster_dir() -> Iterator[Path]:
    """A directory for a cluster of the test's own (stopped and removed at the end)."""
    reason = cluster_unavailable()
    if reason:
        unavailable(reason)
    root = make_cluster_dir("own")
    yield root
    stop_cluster(root)
    shutil.rmtree(root, ignore_errors=True)


def test_trivial_job_completes(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobid = slurm_cluster.sbatch("-o", str(tmp_path / "job.log"), "--wrap",
                                 f"echo done > {shlex.quote(str(out))}")
    wait_until(lambda: slurm_cluster.job_state(jobid) == "COMPLETED", what=f"job {jobid} COMPLETED")
    assert out.read_text() == "done\n"


def test_a_user_other_than_root_can_submit(slurm_plain: SlurmCluster) -> None:
    """SSH tests log in as an unprivileged user: slurm.conf and the munge socket must be reachable
    (the cluster was started under umask 077)."""
    result = slurm_plain.run("runuser", "-u", "nobody", "--", "sbatch", "--parsable", "-D", "/",
                             "-o", "/dev/null", "--wrap", "true", check=False)
    assert result.returncode == 0, result.stderr
    jobid = result.stdout.strip()
    wait_until(lambda: slurm_plain.job_state(jobid) == "COMPLETED", what=f"job {jobid} COMPLETED")
    assert "UserId=nobody(" in slurm_plain.run("scontrol", "show", "job", jobid).stdout


def test_sacct_works_only_with_accounting(slurm_cluster: SlurmCluster) -> None:
    jobid = slurm_cluster.sbatch("-o", "/dev/null", "--wrap", "exit 3")
    wait_until(lambda: slurm_cluster.job_state(jobid) == "FAILED", what=f"job {jobid} FAILED")

    def sacct() -> subprocess.CompletedProcess:
        return slurm_cluster.run("sacct", "-n", "-X", "-P", "-j", jobid, "-o", "state,exitcode",
                                 check=False)

    if slurm_cluster.accounting:
        # Records reach slurmdbd a second or so after the job ends.
        wait_until(lambda: sacct().stdout.strip(), what="the job in sacct")
        assert sacct().stdout.split() == ["FAILED|3:0"]
    else:
        result = sacct()
        assert result.returncode != 0
        assert "accounting storage is disabled" in result.stdout + result.stderr


def test_node_partitions_and_limits(slurm_plain: SlurmCluster, tmp_path: Path) -> None:
    config = slurm_plain.run("scontrol", "show", "config").stdout
    assert "MaxArraySize            = 1001" in config
    partitions = slurm_plain.run("sinfo", "-h", "-o", "%P %c %G").stdout.split("\n")
    # (`urgent`, hidden from users, is there for preemption tests: root sees it.)
    assert sorted(p for p in partitions if p) == ["debug* 8 gpu:2", "gpu 8 gpu:2", "urgent 8 gpu:2"]
    # Eight one-CPU jobs run at once on the 8 advertised CPUs; each waits for a file we write.
    release = tmp_path / "release"
    wait = f"while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.05; done"
    jobid = slurm_plain.sbatch("--array=0-7", "-o", "/dev/null", "--wrap", wait)
    running = lambda: slurm_plain.run("squeue", "-h", "-t", "R", "-j", jobid).stdout.count("\n")  # noqa: E731
    wait_until(lambda: running() == 8, what="8 array tasks running at once")
    release.touch()
    wait_until(lambda: slurm_plain.run("squeue", "-h", "-j", jobid).stdout == "", what="array done")
    # A GPU job in the gpu partition gets one of the node's 2 (fake) GPUs.
    gpu_out = tmp_path / "gpu.out"
    gpu_job = slurm_plain.sbatch("-p", "gpu", "--gpus-per-node=1", "-o", str(gpu_out),
                                 "--wrap", "echo gpus=$CUDA_VISIBLE_DEVICES")
    wait_until(lambda: slurm_plain.job_state(gpu_job) == "COMPLETED", what="GPU job COMPLETED")
    assert gpu_out.read_text() in ("gpus=0\n", "gpus=1\n")


def test_start_twice_is_one_cluster(slurm_plain: SlurmCluster) -> None:
    before = daemon_pids(slurm_plain)
    assert set(before) == {"munged", "slurmctld", "slurmd"}
    # Again with the same options, then without port options (the running cluster's are kept).
    for argv in (slurm_plain.start_argv(), [str(SLURM_TEST / "start"), str(slurm_plain.root)]):
        result = subprocess.run(argv + ["--no-install"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"export SLURM_CONF={slurm_plain.conf}\n"
        assert "already running" in result.stderr
    assert daemon_pids(slurm_plain) == before
    assert all(alive(pid) for pid in before.values())
    for daemon in ("slurmctld", "slurmd"):
        assert len(live_processes_with(f"{daemon} -D -f {slurm_plain.conf}")) == 1
    # Other settings on a running cluster are refused, not applied half-way.
    other = subprocess.run(slurm_plain.start_argv() + ["--no-install", "--accounting"],
                           capture_output=True, text=True, timeout=60)
    assert other.returncode != 0
    assert f"slurm-test/stop {slurm_plain.root}" in other.stderr
    assert daemon_pids(slurm_plain) == before


def test_stop_leaves_nothing_and_spares_other_clusters(
    own_cluster_dir: Path, slurm_plain: SlurmCluster, tmp_path: Path
) -> None:
    marker = 3000 + os.getpid() % 1000  # `sleep N` durations that identify this test's processes
    other_job = slurm_plain.sbatch("-o", "/dev/null", "--wrap", f"sleep {marker}.5")
    cluster = start_cluster(own_cluster_dir, accounting=False)
    # A job that ignores SIGTERM, and one whose child left the job's process tree (setsid -f).
    stubborn = cluster.sbatch("-o", "/dev/null", "--wrap", f"trap '' TERM; sleep {marker}.1")
    escaped = cluster.sbatch("-o", "/dev/null", "--wrap", f"setsid -f sleep {marker}.2; sleep {marker}.3")
    waiting = cluster.sbatch("-o", "/dev/null", "--begin=now+1hour", "--wrap", "true")
    for job in (stubborn, escaped):
        wait_until(lambda job=job: cluster.job_state(job) == "RUNNING", what=f"job {job} RUNNING")
    for text in (f"sleep {marker}.1", f"sleep {marker}.2", f"sleep {marker}.3", f"sleep {marker}.5"):
        wait_until(lambda text=text: live_processes_with(text), what=text)

    def steps_of(text: str) -> set[int]:
        return {step.pid for proc in live_processes_with(text)
                for step in proc.parents() if step.name() == "slurmstepd"}

    steps = steps_of(f"sleep {marker}.1") | steps_of(f"sleep {marker}.3")
    other_step = steps_of(f"sleep {marker}.5")
    assert len(steps) == 2 and len(other_step) == 1
    daemons = daemon_pids(cluster)
    assert set(daemons) == {"munged", "slurmctld", "slurmd"}

    result = stop_cluster(own_cluster_dir)
    assert result.returncode == 0, result.stderr
    assert not [name for name, pid in daemons.items() if alive(pid)]
    for text in (f"sleep {marker}.1", f"sleep {marker}.2", f"sleep {marker}.3"):
        assert not live_processes_with(text), f"{text} survived stop"
    assert not [pid for pid in steps if alive(pid)], "a slurmstepd survived stop"
    assert not list((own_cluster_dir / "pids").glob("*.pid"))
    # The other cluster and its job were not touched.
    assert live_processes_with(f"sleep {marker}.5")
    assert all(alive(pid) for pid in other_step)
    assert slurm_plain.job_state(other_job) == "RUNNING"
    slurm_plain.run("scancel", other_job)
    # Stop again: nothing to do, and fine.
    again = stop_cluster(own_cluster_dir)
    assert again.returncode == 0 and "nothing" in again.stderr
    # Restarted, the cluster keeps its queue, but the jobs stop cancelled stay cancelled.
    restarted = start_cluster(own_cluster_dir, accounting=False, ports=cluster.ports)
    assert {job: restarted.job_state(job) for job in (stubborn, escaped, waiting)} == {
        stubborn: "CANCELLED", escaped: "CANCELLED", waiting: "CANCELLED"}


def test_stop_after_a_crash_kills_the_steps_left_waiting(own_cluster_dir: Path) -> None:
    """slurmctld and slurmd killed (a crash), then the job ends: its slurmstepd stays, retrying to
    report to them. Stop finds it by its socket in the cluster's spool directory."""
    marker = 4000 + os.getpid() % 1000
    cluster = start_cluster(own_cluster_dir, accounting=False)
    job = cluster.sbatch("-o", "/dev/null", "--wrap", f"sleep {marker}")
    wait_until(lambda: live_processes_with(f"sleep {marker}"), what="the job's process")
    [sleep] = live_processes_with(f"sleep {marker}")
    [step] = [proc for proc in sleep.parents() if proc.name() == "slurmstepd"]
    daemons = daemon_pids(cluster)
    for name in ("slurmctld", "slurmd"):
        os.kill(daemons[name], signal.SIGKILL)
    sleep.kill()
    assert job and alive(step.pid)
    result = stop_cluster(own_cluster_dir)
    assert result.returncode == 0, result.stderr
    assert not alive(step.pid), "the slurmstepd survived stop"
    assert not alive(daemons["munged"])


def test_a_cluster_that_does_not_come_up_is_an_error_with_logs_and_nothing_left(
    own_cluster_dir: Path,
) -> None:
    # A MariaDB data directory without its system tables: mariadbd exits, after munged started.
    (own_cluster_dir / "mariadb" / "data" / "mysql").mkdir(parents=True)
    ports = dict(zip(["slurmctld", "slurmd", "slurmdbd", "mariadb"], free_ports(4)))
    result = subprocess.run(
        [str(SLURM_TEST / "start"), str(own_cluster_dir), "--no-install", "--accounting"]
        + [f"--{name}-port={port}" for name, port in ports.items()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and result.stdout == ""
    assert "mariadb exited while waiting for MariaDB to accept connections" in result.stderr
    assert f"--- {own_cluster_dir}/log/mariadb.log" in result.stderr  # the end of each log
    assert not list((own_cluster_dir / "pids").glob("*.pid"))
    assert not live_processes_with(f"--socket={own_cluster_dir}/munge/munge.socket")


def test_a_taken_port_is_refused(own_cluster_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        slurmd_port = free_ports(1)[0]
        result = subprocess.run(
            [str(SLURM_TEST / "start"), str(own_cluster_dir), f"--slurmctld-port={port}",
             f"--slurmd-port={slurmd_port}", "--no-install"],
            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"port {port} (slurmctld) is already in use" in result.stderr
    assert "--slurmctld-port" in result.stderr
    assert result.stdout == ""
    assert not list((own_cluster_dir / "pids").glob("*.pid"))


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_cluster_that_cannot_start_fails_under_ci_and_skips_otherwise(
    ci: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = cluster_unavailable()
    if reason:
        unavailable(reason)
    monkeypatch.setenv("CI", ci)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        session = SessionCluster(False, {"slurmctld": port, "slurmd": free_ports(1)[0]})
        expected = pytest.fail.Exception if ci else pytest.skip.Exception
        with pytest.raises(expected, match=f"port {port} \\(slurmctld\\) is already in use"):
            session.get()


def test_rpc_counter_counts_each_query_by_type(slurm_cluster: SlurmCluster) -> None:
    counter = SlurmctldRpcCounter(slurm_cluster)
    jobid = slurm_cluster.sbatch("--array=0-4", "-o", "/dev/null", "--wrap", "true")
    counter.reset()
    for _ in range(3):
        slurm_cluster.run("squeue")
    for _ in range(2):
        slurm_cluster.run("scontrol", "show", "job", jobid)
    slurm_cluster.sbatch("--array=0-9", "-o", "/dev/null", "--wrap", "true")
    counts = counter.counts()
    assert counts["REQUEST_JOB_INFO"] == 3
    assert counts["REQUEST_JOB_INFO_SINGLE"] == 2
    assert counts["REQUEST_SUBMIT_BATCH_JOB"] == 1
    assert counter.job_queries() == 5
    counter.reset()
    assert counter.job_queries() == 0


def test_fake_sbatch_plays_its_faults_then_runs_the_real_one(
    slurm_plain: SlurmCluster, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm_plain.conf))
    fake_slurm.socket_timeout("sbatch")
    fake_slurm.fail("sbatch", "sbatch: error: Batch job submission failed: Invalid account\n", code=1)

    def sbatch() -> subprocess.CompletedProcess:  # found on PATH, as a launcher finds it
        return subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "true"],
                              capture_output=True, text=True, timeout=60)

    first, second, third = sbatch(), sbatch(), sbatch()
    assert first.returncode == 1 and SOCKET_TIMEOUT in first.stderr and first.stdout == ""
    assert second.returncode == 1 and "Invalid account" in second.stderr
    assert third.returncode == 0, third.stderr
    jobid = third.stdout.strip()
    wait_until(lambda: slurm_plain.job_state(jobid) == "COMPLETED", what="the real job COMPLETED")
    calls = fake_slurm.calls("sbatch")
    assert [call["fault"] is None for call in calls] == [False, False, True]
    assert calls[2]["argv"] == ["--parsable", "-o", "/dev/null", "--wrap", "true"]


def test_stop_counts_a_zombie_as_dead_and_a_reused_pid_as_gone(tmp_path: Path) -> None:
    """PID 1 here reaps orphans late: a stopped daemon may linger as a zombie. And a pid file whose
    pid now names another process (a reboot, pid reuse) must not make stop signal that process."""
    cluster = cluster_module()
    zombie = subprocess.Popen(["true"])
    wait_until(lambda: (cluster.proc_stat(zombie.pid) or ("",))[0] == "Z", what="a zombie")
    assert not cluster.is_alive(zombie.pid)
    zombie.wait()

    c = cluster.Cluster(tmp_path)
    c.pids.mkdir()
    _, _, starttime = cluster.proc_stat(os.getpid())
    c.pid_file("slurmctld").write_text(f"{os.getpid()} {starttime}\n")
    assert c.running("slurmctld") == os.getpid()
    c.pid_file("slurmctld").write_text(f"{os.getpid()} {starttime + 1}\n")
    assert c.running("slurmctld") is None
    cluster.stop_cluster(c)  # nothing of ours runs there: nothing is signalled (we are still here)
    assert not c.pid_file("slurmctld").exists()


def test_clusters_of_a_killed_test_session_are_reaped(own_cluster_dir: Path) -> None:
    """A pytest killed outright cannot stop its clusters: the next session does; a cluster whose
    session still runs is left alone."""
    cluster = start_cluster(own_cluster_dir, accounting=False)
    daemons = daemon_pids(cluster)
    assert own_cluster_dir not in reap_orphan_clusters()  # its owner (this process) runs
    assert all(alive(pid) for pid in daemons.values())
    gone = subprocess.Popen(["true"])
    gone.wait()
    _, _, starttime = cluster_module().proc_stat(os.getpid())
    (own_cluster_dir / "owner").write_text(f"{gone.pid} {starttime}\n")
    assert own_cluster_dir in reap_orphan_clusters()
    assert not any(alive(pid) for pid in daemons.values())
    assert not own_cluster_dir.exists()


def test_fake_sbatch_can_lose_the_answer_of_a_real_submission(
    slurm_plain: SlurmCluster, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fault behind duplicate submissions: sbatch times out, yet the job was queued."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_plain.conf))
    fake_slurm.socket_timeout("sbatch", after_real=True)
    lost = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "-J", "lost-answer", "--wrap", "true"],
                          capture_output=True, text=True, timeout=60)
    assert lost.returncode == 1 and SOCKET_TIMEOUT in lost.stderr and lost.stdout == ""
    [call] = fake_slurm.calls("sbatch")
    jobid = call["real"]["stdout"].strip()
    assert call["real"]["code"] == 0 and jobid.isdigit()
    wait_until(lambda: slurm_plain.job_state(jobid) == "COMPLETED", what="the job sbatch did submit")
    assert "JobName=lost-answer" in slurm_plain.run("scontrol", "show", "job", jobid).stdout


def test_a_job_of_the_urgent_partition_preempts_the_others(slurm_plain: SlurmCluster) -> None:
    """Preemption on demand: a requeueable job goes back to the queue (Restarts=1; Slurm makes it
    eligible again 2 minutes later, `scontrol update JobId=X StartTime=now` to hurry), one submitted
    with --no-requeue ends PREEMPTED."""
    requeued = slurm_plain.sbatch("-o", "/dev/null", "--wrap", "sleep 300")
    preempted = slurm_plain.sbatch("--no-requeue", "-o", "/dev/null", "--wrap", "sleep 300")
    for job in (requeued, preempted):
        wait_until(lambda job=job: slurm_plain.job_state(job) == "RUNNING", what=f"job {job} RUNNING")
    urgent = slurm_plain.sbatch("-p", "urgent", "-c", "8", "-o", "/dev/null", "--wrap", "true")
    wait_until(lambda: slurm_plain.job_state(preempted) == "PREEMPTED", what="the job PREEMPTED")
    wait_until(lambda: slurm_plain.job_state(requeued) == "PENDING", what="the job requeued")
    assert "Restarts=1" in slurm_plain.run("scontrol", "show", "job", requeued).stdout
    wait_until(lambda: slurm_plain.job_state(urgent) == "COMPLETED", what="the urgent job COMPLETED")
    slurm_plain.run("scancel", requeued)


def test_the_cgroup_cluster_ends_a_job_over_its_memory_out_of_memory(
    slurm_cgroup: SlurmCluster, tmp_path: Path
) -> None:
    over = slurm_cgroup.sbatch("--mem=64M", "-o", str(tmp_path / "over.log"), "--wrap",
                               "python3 -c 'x = bytearray(400 * 1024 * 1024); print(len(x))'")
    under = slurm_cgroup.sbatch("--mem=64M", "-o", "/dev/null", "--wrap", "true")
    wait_until(lambda: slurm_cgroup.job_state(over) == "OUT_OF_MEMORY", what="OUT_OF_MEMORY")
    wait_until(lambda: slurm_cgroup.job_state(under) == "COMPLETED", what="the small job COMPLETED")
    assert "oom-kill" in (tmp_path / "over.log").read_text()
