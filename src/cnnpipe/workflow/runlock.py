"""One run at a time in a working folder, enforced by the kernel.

Snakemake's own locks are files: a run killed with SIGKILL leaves them behind, and a run that
finishes removes the whole lock folder, other runs' locks included. So every run that may
execute jobs also holds an exclusive ``flock`` on ``.snakemake/cnnpipe-run.lock`` from the
moment the workflow is parsed until its process ends; the kernel releases it when the process
dies, however it dies. A second run finds the lock taken, says which process holds it and stops
before Snakemake writes anything. Holding the lock also proves that no other run is alive, so
Snakemake lock files found then are stale and are removed.

Jobs hold locks of their own and end with their run (:mod:`cnnpipe.runtime.jobs`); a run
also refuses to start while a job of an earlier one still lives.

Invocations that only read (a dry run, ``--lint``, ``--summary``, ``--report``, ...) take no
lock and remove nothing, so they work beside a running pipeline; a dry run that finds
Snakemake's lock files says whose they are (:class:`ExplainLockWarning`)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from cnnpipe.runtime.jobs import RUN_LOCK, live_jobs, run_lock_info

log = logging.getLogger(__name__)

SNAKEMAKE_LOCKS = Path(".snakemake") / "locks"
# Command-line options after which Snakemake runs no job (a short-option cluster such as -np
# counts as a dry run through its n).
READ_ONLY_OPTIONS = frozenset({
    "--dry-run", "--dryrun", "--lint", "--summary", "--detailed-summary", "--list", "--list-rules",
    "--list-target-rules", "--lt", "--list-changes", "--lc", "--list-code-changes", "--list-input-changes",
    "--list-params-changes", "--dag", "--rulegraph", "--filegraph", "--d3dag", "--report", "--containerize",
    "--print-compilation", "--help", "--version", "-S", "-D", "-l",
})
_held: dict[Path, int] = {}  # lock path -> open descriptor, kept for the process's lifetime


class RunLockError(RuntimeError):
    """Another run holds the working folder."""


def runs_no_jobs(argv: Sequence[str]) -> bool:
    """Whether a Snakemake command line only reads (dry run, lint, summaries, report, ...)."""
    for arg in argv[1:]:
        option = arg.split("=", 1)[0]
        if option in READ_ONLY_OPTIONS:
            return True
        if arg.startswith("-") and not arg.startswith("--") and "n" in arg[1:] and arg[1:].isalpha():
            return True
    return False


def _holder(path: Path) -> str:
    info = run_lock_info(path)
    try:
        return (f"process {info['pid']} on {info['host']}, started {info['started']}: "
                f"{' '.join(info['command'])}")
    except (KeyError, TypeError):
        return "a process that has not yet said who it is"


def acquire(workdir: str | os.PathLike = ".", argv: Sequence[str] = ()) -> bool:
    """Take the run lock of ``workdir`` for the rest of this process, then remove Snakemake's
    stale lock files. Returns True when this process holds the lock.

    Raises :class:`RunLockError`, naming the holder, when another live run has it. Taking it
    again in the same process is a no-op."""
    path = Path(workdir, RUN_LOCK).absolute()
    if path in _held:
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLockError(
            f"another run is working in {Path(workdir).absolute()}: {_holder(path)}. Wait for it to "
            "finish or stop it; this run changed nothing. (Dry runs, --lint, --summary and --report "
            "work beside it.)"
        ) from None
    jobs = live_jobs(workdir)
    if jobs:  # orphans of a run killed with SIGKILL that have not noticed yet, or a cluster's
        os.close(fd)
        raise RunLockError(
            f"jobs of an earlier run, which has ended, still run in {Path(workdir).absolute()}: {'; '.join(jobs)}. "
            "They write the files this run would write: wait for them to end or stop them (kill <pid>); "
            "this run changed nothing."
        )
    _held[path] = fd
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": list(argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _remove_stale_snakemake_locks(Path(workdir))
    return True


def _remove_stale_snakemake_locks(workdir: Path) -> None:
    stale = sorted((workdir / SNAKEMAKE_LOCKS).glob("*.lock"))
    for lock in stale:
        lock.unlink(missing_ok=True)
    if stale:
        log.warning("removed %d lock file(s) left by a run that no longer runs", len(stale))


def _holder_alive(path: Path) -> bool:
    """Whether the process named in the run lock file ``path`` is alive on this host (what a
    read-only invocation can tell without taking the lock, which would race a starting run)."""
    info = run_lock_info(path)
    try:
        if info["host"] != socket.gethostname():
            return True  # another machine's process: assume it runs
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return isinstance(error, PermissionError)  # alive, but another user's
    return True


def lock_note(workdir: str | os.PathLike = ".") -> str:
    """What Snakemake's lock files mean to a dry run (which warns 'Directory cannot be locked'
    and goes on): a live run's, or those of a run that no longer runs."""
    path, folder = Path(workdir, RUN_LOCK), Path(workdir).absolute()
    if _holder_alive(path):
        return (f"cnnpipe: another run is working in {folder} ({_holder(path)}); Snakemake found its lock files. "
                "The plan below is what is left to do as of now; this dry run changes nothing.")
    return (f"cnnpipe: Snakemake found lock files in {folder} left by a run that no longer runs; the next run "
            "removes them. This dry run changes nothing.")


class ExplainLockWarning(logging.Filter):
    """On Snakemake's logger: replaces the 'Error: Directory cannot be locked' that a dry run
    prints (and then ignores) with :func:`lock_note`, which says what is going on."""

    def __init__(self, workdir: str | os.PathLike = "."):
        super().__init__()
        self.workdir = workdir

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Error: Directory cannot be locked"):
            record.msg, record.args = lock_note(self.workdir), ()
        return True


def release(workdir: str | os.PathLike = ".") -> None:
    """Give the lock back before the process ends (tests; a run lets the kernel do it)."""
    fd = _held.pop(Path(workdir, RUN_LOCK).absolute(), None)
    if fd is not None:
        os.close(fd)
