"""What a chunk job does besides its work: it groups its images into batches, and a small job
per image publishes that image's files from the chunk's folder (``python -m cnnpipe
publish``), so each image keeps its own outputs.

Torch-free: the publishing jobs run this as a command, which starts in a fraction of a
second; a ``run:`` block would make Snakemake start a whole new Snakemake process, which
parses the workflow again, per image."""

from __future__ import annotations

import os
import shutil
from collections.abc import Hashable, Mapping
from pathlib import Path

# A chunk job writes <name>.error for an image it could not process, and goes on with the others.
ERROR_SUFFIX = ".error"


def batches(keys: Mapping[str, Hashable], size: int) -> list[list[str]]:
    """A chunk's names in batches of at most ``size`` names that share a key (a photo's shape,
    a style pair's content size): in the mapping's order within each key, keys in order of
    their first name."""
    groups: dict[Hashable, list[str]] = {}
    for name, key in keys.items():
        groups.setdefault(key, []).append(name)
    return [names[i : i + size] for names in groups.values() for i in range(0, len(names), size)]


def publish(files: Mapping[str | os.PathLike, str | os.PathLike]) -> None:
    """Put each source file (a chunk's output for one image) at its target path: a hard link
    where the file system allows one (no copy of the data), else a copy; each target appears
    whole or not at all, and the sources stay, so an interrupted publish can be repeated."""
    for source, target in files.items():
        source, target = Path(source), Path(target)
        if not source.is_file():
            raise FileNotFoundError(f"{source}: the chunk did not produce this file")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.publish")
        staging.unlink(missing_ok=True)
        try:
            os.link(source, staging)
        except OSError:
            shutil.copyfile(source, staging)
        os.replace(staging, target)


def publish_item(folder: str | os.PathLike, name: str, outputs: Mapping[str, str | os.PathLike],
                 log: str | os.PathLike) -> None:
    """Publish one image's files from its chunk's ``folder``: its log to ``log`` first (so it
    is there whatever happens), then ``folder/<name>.<ext>`` to ``outputs[ext]``. An image the
    chunk could not process raises its error here, in the image's own job."""
    folder = Path(folder)
    publish({folder / f"{name}.log": log})
    error = folder / f"{name}{ERROR_SUFFIX}"
    if error.exists():
        raise RuntimeError(f"{name}: {error.read_text(encoding='utf-8').strip()} (log: {log})")
    publish({folder / f"{name}.{ext}": target for ext, target in outputs.items()})
