"""A job never outlives its run (issue 26, item 1), with real processes: a run that holds the
run lock starts a job as Snakemake does (``python <workdir>/.snakemake/scripts/<x>.py``);
killing the run with SIGKILL ends the job, and a run never starts beside a job of an earlier
one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnpipe.workflow import runlock

# The job: what every workflow script does first (job_logging), then a long computation.
JOB = """
import sys, time
from cnnpipe.runtime.logs import job_logging
with job_logging(sys.argv[1]):
    print("working", flush=True)
    open(sys.argv[2], "w").close()
    time.sleep(120)
"""

# The run: takes the run lock of the folder as Snakemake's main process does, starts the job,
# says the job's pid and waits.
RUN = """
import subprocess, sys, time
from cnnpipe.workflow import runlock
runlock.acquire(sys.argv[1], ["snakemake", "--cores", "1"])
job = subprocess.Popen([sys.executable, *sys.argv[2:]])
print(job.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def job_script(workdir: Path) -> Path:
    script = workdir / ".snakemake" / "scripts" / "tmpjob.work.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(JOB)
    return script


def start_run(workdir: Path) -> tuple[subprocess.Popen, int]:
    """A run holding the lock of ``workdir`` and its job, once the job works: (run, job pid)."""
    started = workdir / "started"
    run = subprocess.Popen([sys.executable, "-c", RUN, str(workdir), str(job_script(workdir)),
                            str(workdir / "job.log"), str(started)], stdout=subprocess.PIPE, text=True)
    job = int(run.stdout.readline())
    assert wait_for(started.exists), (workdir / "job.log").read_text()
    return run, job


def test_a_job_ends_when_its_run_is_killed_with_sigkill(tmp_path):
    run, job = start_run(tmp_path)
    try:
        locks = list((tmp_path / ".snakemake" / "cnnpipe-jobs").glob("*.lock"))
        assert [json.loads(path.read_text())["pid"] for path in locks] == [job]
        run.kill()
        run.wait()
        assert wait_for(lambda: not alive(job), 5), "the job outlived its run"
        assert "has ended; this job stops so that it cannot outlive its run" in (tmp_path / "job.log").read_text()
        # Its lock went with it: the next run starts and removes the job's file.
        assert runlock.acquire(tmp_path, ["snakemake", "--cores", "1"])
        assert not list((tmp_path / ".snakemake" / "cnnpipe-jobs").glob("*.lock"))
    finally:
        runlock.release(tmp_path)
        for pid in (run.pid, job):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_run_refuses_while_a_job_of_an_earlier_run_lives(tmp_path):
    """A job that is not watching (a cluster node's, or one between two checks) still holds
    its lock: the next run is refused, naming it, until it ends."""
    (tmp_path / ".snakemake").mkdir()
    job = subprocess.Popen([sys.executable, str(job_script(tmp_path)), str(tmp_path / "job.log"),
                            str(tmp_path / "started")])
    try:
        assert wait_for((tmp_path / "started").exists), (tmp_path / "job.log").read_text()
        with pytest.raises(runlock.RunLockError, match=rf"jobs of an earlier run, which has ended, still run in "
                                                       rf"{tmp_path}: process {job.pid} on .*tmpjob\.work\.py.*"
                                                       r"changed nothing"):
            runlock.acquire(tmp_path, ["snakemake", "--cores", "1"])
        # refused without keeping the run lock or writing its own name into it
        assert not (tmp_path / runlock.RUN_LOCK).read_text()
    finally:
        job.kill()
        job.wait()
    try:
        assert runlock.acquire(tmp_path, ["snakemake", "--cores", "1"])
    finally:
        runlock.release(tmp_path)


def test_a_job_whose_run_has_already_ended_stops_at_once(tmp_path):
    """The run died while its job was still starting (importing torch): the job, reparented,
    can no longer watch it, and stops when it sees the run lock's process gone, before it
    opens its log."""
    run = subprocess.Popen([sys.executable, "-c", "import sys; from cnnpipe.workflow import runlock; "
                            "runlock.acquire(sys.argv[1], ['snakemake'])", str(tmp_path)])
    assert run.wait() == 0
    job = subprocess.run([sys.executable, str(job_script(tmp_path)), str(tmp_path / "job.log"),
                          str(tmp_path / "started")], capture_output=True, text=True, timeout=60)
    assert job.returncode == -signal.SIGTERM and "has already ended" in job.stderr
    assert not (tmp_path / "job.log").exists() and not (tmp_path / "started").exists()


def test_a_job_older_than_the_run_holding_the_folder_stops_at_once(tmp_path):
    """Its run was killed while it started up, and a new run took the folder meanwhile: the
    job, older than that run, is not one of its jobs, and stops before it opens its log."""
    go = tmp_path / "go"
    waiting = "import os, sys, time\nwhile not os.path.exists(sys.argv[3]): time.sleep(0.02)\n" + JOB
    script = job_script(tmp_path)
    script.write_text(waiting.replace("sys.argv[3]", repr(str(go)), 1))
    job = subprocess.Popen([sys.executable, str(script), str(tmp_path / "job.log"), str(tmp_path / "started")],
                           stderr=subprocess.PIPE, text=True)
    time.sleep(0.1)
    newer = subprocess.Popen([sys.executable, "-c", "import sys, time; from cnnpipe.workflow import runlock; "
                              "runlock.acquire(sys.argv[1], ['snakemake']); print('holding', flush=True); "
                              "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        newer.stdout.readline()  # it holds the folder
        go.touch()
        assert job.wait(timeout=60) == -signal.SIGTERM
        assert "started before the run that now holds the folder" in job.stderr.read()
        assert not (tmp_path / "job.log").exists()
    finally:
        newer.kill()
        newer.wait()


def test_only_snakemake_jobs_take_the_guards(tmp_path):
    from cnnpipe.runtime.jobs import snakemake_workdir

    assert snakemake_workdir(str(tmp_path / ".snakemake" / "scripts" / "tmpab12.train.py")) == tmp_path
    assert snakemake_workdir(str(tmp_path / "scripts" / "train.py")) is None
    assert snakemake_workdir("-c") is None
