"""Stale Snakemake locks: a run killed with SIGKILL leaves its lock behind, and the next run
refuses to start until someone runs ``--unlock``. We record which process holds the lock;
the next run removes the lock only when that process is gone from this very machine."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_DIR = Path(".snakemake") / "locks"
OWNER = LOCK_DIR / "cnnpipe-owner.json"


def record_owner(workdir: str | os.PathLike = ".") -> None:
    """Called when a run has taken the lock: remember this host and process."""
    path = Path(workdir) / OWNER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def release_owner(workdir: str | os.PathLike = ".") -> None:
    (Path(workdir) / OWNER).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    # A recycled pid that now belongs to something else does not hold our lock.
    return not cmdline.exists() or b"snakemake" in cmdline.read_bytes()


def clear_stale_lock(workdir: str | os.PathLike = ".") -> bool:
    """Remove the lock of a run that died on this machine; True when one was removed.

    A lock without an owner record, or owned by another host (a cluster node on a shared
    filesystem), is left alone: only ``snakemake --unlock`` may remove those."""
    workdir = Path(workdir)
    owner_path = workdir / OWNER
    if not owner_path.exists():
        return False
    try:
        owner = json.loads(owner_path.read_text())
        host, pid = owner["host"], int(owner["pid"])
    except (ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname() or _alive(pid):
        return False
    for lock in (workdir / LOCK_DIR).glob("*.lock"):
        lock.unlink(missing_ok=True)
    owner_path.unlink(missing_ok=True)
    log.warning("removed the stale lock of Snakemake process %d, which no longer runs", pid)
    return True
