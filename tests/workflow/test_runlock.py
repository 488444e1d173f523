"""One run at a time in a working folder: a kernel lock held for the whole run."""

import json
import os
import signal
import subprocess
import sys

import pytest

from cnnpipe.workflow import runlock

HOLDER = """
import sys, time
from cnnpipe.workflow import runlock
runlock.acquire(sys.argv[1], ["snakemake", "--cores", "1"])
print("holding", flush=True)
time.sleep(60)
"""


def hold_in_another_process(workdir):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def stale_snakemake_locks(workdir):
    locks = workdir / runlock.SNAKEMAKE_LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    for name in ("0.input.lock", "0.output.lock"):
        (locks / name).write_text("x")
    return locks


@pytest.mark.parametrize(("argv", "reads_only"), [
    (["snakemake", "--cores", "2"], False),
    (["snakemake", "-n"], True),
    (["snakemake", "-np", "train"], True),
    (["snakemake", "--dry-run"], True),
    (["snakemake", "--report", "r.html"], True),
    (["snakemake", "--report=r.zip"], True),
    (["snakemake", "--lint"], True),
    (["snakemake", "--summary"], True),
    (["snakemake", "--unlock"], False),
    (["snakemake", "-j4", "-p", "results/x.png"], False),
    (["snakemake", "--configfile", "n.yaml"], False),
])
def test_which_command_lines_run_no_jobs(argv, reads_only):
    assert runlock.runs_no_jobs(argv) is reads_only


def test_a_live_holder_is_named_and_its_files_are_left_alone(tmp_path):
    holder = hold_in_another_process(tmp_path)
    try:
        locks = stale_snakemake_locks(tmp_path)
        with pytest.raises(runlock.RunLockError, match=f"process {holder.pid} on .*snakemake --cores 1.*changed nothing"):
            runlock.acquire(tmp_path, ["snakemake"])
        assert len(list(locks.glob("*.lock"))) == 2
        assert json.loads((tmp_path / runlock.RUN_LOCK).read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_the_kernel_frees_the_lock_of_a_killed_run_and_its_stale_files_go(tmp_path):
    holder = hold_in_another_process(tmp_path)
    locks = stale_snakemake_locks(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    try:
        assert runlock.acquire(tmp_path, ["snakemake", "--cores", "2"])
        assert list(locks.glob("*.lock")) == []
        assert json.loads((tmp_path / runlock.RUN_LOCK).read_text())["pid"] == os.getpid()
        assert runlock.acquire(tmp_path, [])  # again in the same process: still ours
    finally:
        runlock.release(tmp_path)
