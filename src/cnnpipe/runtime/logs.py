"""Logging for pipeline jobs: everything a job prints goes to its rule's ``log:`` file."""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm.auto import tqdm

from cnnpipe.runtime.jobs import guard_job

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Tee:
    """A text stream that writes to several, for a log kept in two places."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


@functools.cache
def _skip_collection_at_exit() -> None:
    """A job is one process. At its exit Python's last garbage collection would walk every
    object that torch and timm made: 2.2 s per job measured here, 0.4 s with them frozen
    (``gc.freeze``) first. Nothing written depends on it: outputs are closed by then, and
    logging flushes its handlers in its own exit hook, which runs after this one."""
    atexit.register(gc.freeze)


@contextlib.contextmanager
def job_logging(log_path: str | os.PathLike | None, *, history: str | os.PathLike | None = None,
                resume: bool = False) -> Iterator[logging.Logger]:
    """Send stdout, stderr (tqdm included) and the ``logging`` records of one job to ``log_path``.

    A failure is written to the log with its traceback and raised again, so Snakemake
    reports the job as failed and removes its outputs. ``history``: a second copy of the log
    outside Snakemake's outputs, which survives a killed job; with ``resume`` the log starts
    with the earlier attempts' lines from it, and the copy grows on.
    """
    logger = logging.getLogger("cnnpipe")
    _skip_collection_at_exit()
    # A Snakemake job ends with its run and holds a lock that the next run checks
    # (runtime.jobs); first, so that an orphan stops before it opens (and empties) its log.
    guard_job()
    if log_path is None:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        yield logger
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        handle = stack.enter_context(open(log_path, "w", encoding="utf-8", buffering=1))
        if history is not None:
            history = Path(history)
            history.parent.mkdir(parents=True, exist_ok=True)
            if resume and history.exists():
                handle.write(history.read_text(encoding="utf-8"))
            kept = stack.enter_context(open(history, "a" if resume else "w", encoding="utf-8", buffering=1))
            handle = _Tee(handle, kept)
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
                yield logger
        except BaseException:
            handle.write(traceback.format_exc())
            raise
        finally:
            root.removeHandler(handler)


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A tqdm bar that stays readable in a log file: fewer updates when not on a terminal."""
    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.1 if interactive else 5.0)
    kwargs.setdefault("ascii", not interactive)
    kwargs.setdefault("dynamic_ncols", interactive)
    return tqdm(iterable, file=sys.stderr, **kwargs)


@contextlib.contextmanager
def image_log(path: str | os.PathLike, mode: str = "w") -> Iterator[None]:
    """Also send the ``logging`` records made inside the block to ``path`` (``mode`` "w": a new
    file, "a": appended): one image's own log within a job that processes several (the job's
    log keeps every line)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode=mode, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    except BaseException:
        handler.stream.write(traceback.format_exc())
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


def process_age() -> float | None:
    """Seconds since this process started (Linux: from /proc), or None where unknown."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class StartupClock:
    """Where a chunk job's start-up time goes. Made at the top of its script, before the heavy
    imports; ``log_imports`` then logs the time of Python and Snakemake's script preamble
    (``process_age`` at creation) and of the imports since creation."""

    def __init__(self):
        self.before_imports = process_age()
        self.began = time.perf_counter()

    def log_imports(self, log: logging.Logger) -> None:
        imported = time.perf_counter() - self.began
        if self.before_imports is not None:
            log.info("start-up: %.2f s for Python and Snakemake's script preamble", self.before_imports)
        log.info("start-up: %.2f s importing torch and cnnpipe", imported)
