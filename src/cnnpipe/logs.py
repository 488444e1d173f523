"""Logging for pipeline jobs: everything a job prints goes to its rule's ``log:`` file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm.auto import tqdm

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def job_logging(log_path: str | os.PathLike | None) -> Iterator[logging.Logger]:
    """Send stdout, stderr (tqdm included) and the ``logging`` records of one job to ``log_path``.

    A failure is written to the log with its traceback and raised again, so Snakemake
    reports the job as failed and removes its outputs.
    """
    logger = logging.getLogger("cnnpipe")
    if log_path is None:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        yield logger
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8", buffering=1) as handle:
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
