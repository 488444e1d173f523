"""Jobs that process many images each: which chunk holds which image, and publishing one
image's files from its chunk.

A job per image pays Python's start-up, the imports and the network's loading for every
image; a job per chunk pays them once. Images are assigned to chunks by a hash of their name,
never by their position in a sorted list, so adding, removing or editing one image changes
one chunk only: ``ceil(N / per_job)`` chunks, each name's chunk picked by jump consistent
hashing (Lamping and Veach, 2014), under which going from n to n + 1 chunks moves only the
names that land in the new chunk (about 1/(n + 1) of them). Chunk sizes vary around
``per_job`` as hashes fall.

Torch-free: the Snakefile imports this, and the publishing jobs run it as a command
(``python -m cnnpipe publish``), which starts in a fraction of a second; a ``run:`` block would
make Snakemake start a whole new Snakemake process, which parses the workflow again, per image.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path

__all__ = ["ERROR_SUFFIX", "assign_chunks", "batches", "chunk_count", "jump_hash", "name_key", "publish",
           "publish_item"]

# A chunk job writes <name>.error for an image it could not process, and goes on with the others.
ERROR_SUFFIX = ".error"

_MULTIPLIER = 2862933555777941757  # the 64-bit linear congruential step of jump consistent hashing
_MASK = (1 << 64) - 1


def name_key(name: str) -> int:
    """A 64-bit key for ``name``, the same on every machine and Python (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def jump_hash(key: int, buckets: int) -> int:
    """The bucket in ``0 .. buckets - 1`` of a 64-bit ``key``, by jump consistent hashing."""
    if buckets < 1:
        raise ValueError(f"jump_hash: need at least one bucket, got {buckets}")
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * _MULTIPLIER + 1) & _MASK
        candidate = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def chunk_count(items: int, per_job: int) -> int:
    """How many chunks ``items`` images make at ``per_job`` images per job (on average)."""
    if isinstance(per_job, bool) or not isinstance(per_job, int) or per_job < 1:
        raise ValueError(f"per_job must be a positive integer, got {per_job!r}")
    return max(1, math.ceil(items / per_job))


def assign_chunks(names: Iterable[str], per_job: int) -> dict[str, list[str]]:
    """Chunk id -> the names in it (sorted), for the non-empty chunks, in chunk order. Chunk
    ids are the bucket numbers as strings ("0", "1", ...); with ``per_job`` 1 every name is its
    own chunk, named by its key in hex (hashing into N buckets would leave some empty and
    others doubled)."""
    names = sorted(set(names))
    if per_job == 1:
        return {f"{name_key(name):016x}": [name] for name in sorted(names, key=name_key)}
    buckets = chunk_count(len(names), per_job)
    chunks: dict[int, list[str]] = {}
    for name in names:
        chunks.setdefault(jump_hash(name_key(name), buckets), []).append(name)
    return {str(bucket): chunks[bucket] for bucket in sorted(chunks)}


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
