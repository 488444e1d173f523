"""Jobs that process many images each: which chunk holds which image (decided while the
workflow is parsed).

A job per image pays Python's start-up, the imports and the network's loading for every
image; a job per chunk pays them once. Images are assigned to chunks by a hash of their name,
never by their position in a sorted list, so adding, removing or editing one image changes
one chunk only: ``ceil(N / per_job)`` chunks, each name's chunk picked by jump consistent
hashing (Lamping and Veach, 2014), under which going from n to n + 1 chunks moves only the
names that land in the new chunk (about 1/(n + 1) of them). Chunk sizes vary around
``per_job`` as hashes fall."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

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
