"""A job never outlives the run that started it.

Killing Snakemake with SIGKILL leaves its jobs running (they are processes of their own), and a
next run would start a second copy beside them, both writing the same files. Two guards, both
taken by every job when it starts its log (:func:`cnnpipe.runtime.logs.job_logging`):

* The job watches its run. The run holds ``.snakemake/cnnpipe-run.lock`` and writes its pid
  there (:mod:`cnnpipe.workflow.runlock`). A job of a local run, a descendant of that process,
  checks every half second that the process still lives, and ends itself (SIGTERM) once it is
  gone. (``PR_SET_PDEATHSIG`` would fire only for the job's direct parent, which under a shell
  or a conda wrapper is not Snakemake, and only when the parent's forking thread ends.) A job
  that finds its run already gone when it starts, or a newer run in its place, ends at once,
  before it opens any file.
* The job holds a lock of its own, an exclusive ``flock`` on
  ``.snakemake/cnnpipe-jobs/<host>-<pid>.lock`` (with its pid, host, start and command), for
  its whole life; the kernel frees it when the process dies, however it dies. The next run,
  once it holds the run lock, refuses to start while any such lock is held, naming the jobs
  (:func:`live_jobs`). This also covers what the watch cannot: a job of a cluster run, a job
  that was still starting, or one between two checks.

Standard library only: the parse-time package reads these locks too."""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

RUN_LOCK = Path(".snakemake") / "cnnpipe-run.lock"
JOB_LOCKS = Path(".snakemake") / "cnnpipe-jobs"
# How often a job checks that its run lives.
WATCH_SECONDS = 0.5
_held: list[int] = []  # this job's lock descriptor, kept open for the process's lifetime
_guarded = False


def _stat_field(pid: int, index: int) -> int | None:
    """Field ``index`` of /proc/<pid>/stat after the command name (Linux), or None when there
    is no such process."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[index])
    except (OSError, ValueError, IndexError):
        return None


def _start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None when there is no
    such process: with the pid it names one process, even after the pid is reused."""
    return _stat_field(pid, 19)


def _parent(pid: int) -> int | None:
    return _stat_field(pid, 1)


def _is_ancestor(pid: int) -> bool:
    """Whether ``pid`` is this process's parent, grandparent, ..."""
    current = os.getppid()
    while current and current > 1:
        if current == pid:
            return True
        current = _parent(current)
    return False


def run_lock_info(path: str | os.PathLike) -> dict | None:
    """What the run holding the run lock ``path`` wrote there (pid, host, started, command), or
    None while nothing readable is there."""
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _run_info(workdir: Path) -> dict | None:
    info = run_lock_info(workdir / RUN_LOCK)
    try:
        return {"pid": int(info["pid"]), "host": str(info["host"])}
    except (KeyError, TypeError, ValueError):
        return None


def _end_job(reason: str) -> None:
    log.error("%s; this job stops so that it cannot outlive its run", reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGTERM)


def _watch(pid: int, started: int) -> None:
    while _start_time(pid) == started:
        time.sleep(WATCH_SECONDS)
    _end_job(f"the Snakemake run that started this job (process {pid}) has ended")


def watch_run(workdir: str | os.PathLike = ".") -> bool:
    """End this job with its run: watch the run's process (named in the run lock of
    ``workdir``) from a daemon thread when it is an ancestor of this one, on this host. The
    job ends now when that process is gone, or when it started after this job (a new run took
    the folder while this orphan was starting up). Returns whether a watch started (not for a
    job of a cluster node)."""
    info = _run_info(Path(workdir))
    if info is None or info["host"] != socket.gethostname() or _start_time(os.getpid()) is None:
        return False  # a cluster node's job, or no /proc to watch with (macOS): the job lock still guards
    started = _start_time(info["pid"])
    if started is None:
        _end_job(f"the Snakemake run that started this job (process {info['pid']}) has already ended")
        return False
    if _start_time(os.getpid()) < started:  # every job of a run starts after it
        _end_job(f"this job started before the run that now holds the folder (process {info['pid']}), so its own "
                 "run has ended")
        return False
    if not _is_ancestor(info["pid"]):
        return False
    threading.Thread(target=_watch, args=(info["pid"], started), name="cnnpipe-run-watch", daemon=True).start()
    return True


def hold_job_lock(workdir: str | os.PathLike = ".") -> Path | None:
    """Hold this job's lock under ``workdir``/.snakemake/cnnpipe-jobs until the process ends;
    returns its path (None outside a Snakemake working folder, or where the file system has
    no locks)."""
    workdir = Path(workdir)
    if not (workdir / ".snakemake").is_dir():
        return None
    folder = workdir / JOB_LOCKS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{socket.gethostname()}-{os.getpid()}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:  # e.g. ENOLCK on a network file system without locks
        os.close(fd)
        log.warning("cannot lock %s (%s): a run started after this one's death would not see this job", path, error)
        return None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": sys.argv}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _held.append(fd)
    # A job that ends normally takes its file along; a killed job's is removed by the next run.
    atexit.register(path.unlink, missing_ok=True)
    return path


def snakemake_workdir(argv0: str | None = None) -> Path | None:
    """The working folder of the Snakemake ``script:`` job this process runs, from its script's
    path (Snakemake runs ``python <workdir>/.snakemake/scripts/tmp....py``); None for any other
    process (a test, a command), which the guards leave alone."""
    script = Path(sys.argv[0] if argv0 is None else argv0).absolute()
    if script.parent.name == "scripts" and script.parent.parent.name == ".snakemake":
        return script.parent.parent.parent
    return None


def guard_job() -> None:
    """Both guards of this module, once per process, when it is a Snakemake job."""
    global _guarded
    workdir = snakemake_workdir()
    if _guarded or workdir is None:
        return
    _guarded = True
    hold_job_lock(workdir)
    watch_run(workdir)


def live_jobs(workdir: str | os.PathLike = ".") -> list[str]:
    """The jobs whose locks are held under ``workdir`` (each as 'process <pid> on <host>,
    started <time>: <command>'); the files of jobs that have ended are removed."""
    found = []
    for path in sorted(Path(workdir, JOB_LOCKS).glob("*.lock")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # removed meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            found.append(_describe(path))
        except OSError:  # a file system without locks: nothing to tell
            pass
        else:
            path.unlink(missing_ok=True)  # its job has ended
        finally:
            os.close(fd)
    return found


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"process {info['pid']} on {info['host']}, started {info['started']}: {' '.join(info['command'])}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"the process of {path.name}"
