"""Atomic, deterministic writers: an output either appears whole or not at all.

Every file the pipeline produces goes through these helpers, so a killed job never
leaves a half-written file behind, and two runs of the same config write the same bytes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the output the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Sorted keys and a trailing newline, so equal content gives equal bytes."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _canonical(obj: Any) -> Any:
    """Rebuild containers with interned strings. Pickle shares repeated objects by identity,
    so an equal dict whose keys came from a loaded file would otherwise pickle differently."""
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_canonical(key): _canonical(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_canonical(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(_canonical(item) for item in obj)
    return obj


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` into memory first (the archive then does not embed the temporary
    file's name) of a canonical copy, so equal objects give identical bytes."""
    import torch  # here, so that importing fileio stays light for the Snakefile

    buffer = io.BytesIO()
    torch.save(_canonical(obj), buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def write_csv(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame as CSV without the index, atomically."""
    return atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def write_rows(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` (mappings) as CSV with these columns, atomically: the bytes ``write_csv``
    gives for the same table when each column holds one type (NaN and None as empty fields),
    without importing pandas, which costs a job that writes one row 0.6 s here."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow("" if is_missing(row.get(column)) else row.get(column) for column in columns)
    return atomic_write_text(path, buffer.getvalue())


def is_missing(value: Any) -> bool:
    """An empty CSV field: None, or NaN (as pandas reads and writes one)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG without the software/date metadata, atomically, and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


HASH_ALGORITHMS = ("md5", "sha256")


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """The ``algorithm`` ("md5" or "sha256") digest of a file's bytes, read in 1 MiB blocks, as hex."""
    if algorithm not in HASH_ALGORITHMS:
        raise ValueError(f"hash algorithm must be one of {HASH_ALGORITHMS}, got {algorithm!r}")
    # MD5 only checks the dataset mirrors' files; usedforsecurity=False lets it run on FIPS systems.
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes as hex."""
    return file_digest(path, "sha256")


def file_md5(path: str | os.PathLike) -> str:
    """The MD5 of a file's bytes as hex."""
    return file_digest(path, "md5")
