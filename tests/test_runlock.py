import json
import os
import socket
import subprocess
import sys

from cnnpipe import runlock


def make_lock(tmp_path, owner):
    locks = tmp_path / runlock.LOCK_DIR
    locks.mkdir(parents=True)
    for name in ("0.input.lock", "0.output.lock"):
        (locks / name).write_text("x")
    if owner is not None:
        (tmp_path / runlock.OWNER).write_text(json.dumps(owner))
    return locks


def dead_pid() -> int:
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(process.stdout)


def test_lock_of_a_dead_process_on_this_host_is_removed(tmp_path):
    locks = make_lock(tmp_path, {"host": socket.gethostname(), "pid": dead_pid()})
    assert runlock.clear_stale_lock(tmp_path)
    assert list(locks.iterdir()) == []


def test_lock_of_a_live_process_is_kept(tmp_path):
    # Stands in for a running `snakemake`; it says when it is up, after exec.
    script = "import time; print('up', flush=True); time.sleep(30)  # snakemake"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "up"
        locks = make_lock(tmp_path, {"host": socket.gethostname(), "pid": process.pid})
        assert not runlock.clear_stale_lock(tmp_path)
        assert len(list(locks.glob("*.lock"))) == 2
    finally:
        process.kill()


def test_lock_of_another_host_or_without_owner_is_kept(tmp_path):
    locks = make_lock(tmp_path / "a", {"host": "some-other-node", "pid": dead_pid()})
    assert not runlock.clear_stale_lock(tmp_path / "a")
    assert len(list(locks.glob("*.lock"))) == 2
    locks = make_lock(tmp_path / "b", None)
    assert not runlock.clear_stale_lock(tmp_path / "b")
    assert len(list(locks.glob("*.lock"))) == 2


def test_record_and_release_owner(tmp_path):
    runlock.record_owner(tmp_path)
    owner = json.loads((tmp_path / runlock.OWNER).read_text())
    assert owner == {"host": socket.gethostname(), "pid": os.getpid()}
    runlock.release_owner(tmp_path)
    assert not (tmp_path / runlock.OWNER).exists()
