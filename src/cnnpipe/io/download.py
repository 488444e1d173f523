"""The one download path: fetch a file from the first of several URLs that gives bytes with
the expected digest, and never leave a partial or wrong file under the real name.

Datasets are checked by their full MD5, torchvision weights by the SHA-256 prefix in their
file name; both come through :func:`download`. The bytes are streamed to disk by
``torch.hub.download_url_to_file`` (weights files reach 548 MB)."""

from __future__ import annotations

import http.client
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cnnpipe.io.files import HASH_ALGORITHMS, file_digest

log = logging.getLogger(__name__)

_LABELS = {"md5": "MD5", "sha256": "SHA-256"}
_HEX_LENGTH = {"md5": 32, "sha256": 64}
# What urlopen raises for a dead mirror: HTTP and socket errors (OSError), a malformed
# URL (ValueError), a broken response (HTTPException).
_NETWORK_ERRORS = (OSError, ValueError, http.client.HTTPException)


@dataclass(frozen=True)
class Failure:
    """Why one URL gave no valid copy. ``actual`` is the digest of bytes that arrived but
    did not match (they were deleted); None when nothing usable arrived."""

    url: str
    reason: str
    actual: str | None = None

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


class DownloadError(RuntimeError):
    """No URL gave a valid copy of a file; ``failures`` says why for each URL tried."""

    def __init__(self, message: str, failures: Sequence[Failure] = ()):
        super().__init__(message)
        self.failures = tuple(failures)


class ChecksumError(DownloadError):
    """Some URL served bytes with the wrong digest; they were deleted, never used."""


def _check_expected(algorithm: str, expected: str) -> str:
    if algorithm not in HASH_ALGORITHMS:
        raise ValueError(f"hash algorithm must be one of {HASH_ALGORITHMS}, got {algorithm!r}")
    expected = str(expected).lower()
    if not re.fullmatch(rf"[0-9a-f]{{6,{_HEX_LENGTH[algorithm]}}}", expected):
        raise ValueError(f"expected {_LABELS[algorithm]} must be 6 to {_HEX_LENGTH[algorithm]} hex digits, "
                         f"got {expected!r}")
    return expected


def download(
    urls: str | Sequence[str],
    target: str | os.PathLike,
    *,
    algorithm: str,
    expected: str,
    progress: bool = False,
) -> Path:
    """Put a copy of the file whose ``algorithm`` ("md5" or "sha256") digest is (or starts
    with) ``expected`` at ``target``, trying ``urls`` in order, and return ``target``.

    A file already at ``target`` with the right digest is kept without any network access;
    one with another digest is deleted first. Each download goes to a temporary folder next
    to ``target`` and is renamed onto it only after its digest matched. When no URL gives a
    valid copy, raises :class:`ChecksumError` if some URL served wrong bytes, else
    :class:`DownloadError`; the message lists every URL's failure.
    """
    # A prefix is enough: torchvision names its weights files with the first hex digits of
    # their SHA-256, and that is all it publishes.
    expected = _check_expected(algorithm, expected)
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError(f"{target}: no URL to download it from")
    target = Path(target)
    label = _LABELS[algorithm]
    if target.is_file():
        actual = file_digest(target, algorithm)
        if actual.startswith(expected):
            return target
        log.warning("%s: cached file has %s %s, expected %s; downloading it again", target, label, actual, expected)
        target.unlink()  # a file failing its checksum must never be read later
    target.parent.mkdir(parents=True, exist_ok=True)
    wanted = expected if len(expected) == _HEX_LENGTH[algorithm] else f"a digest starting with {expected}"
    failures: list[Failure] = []
    # Lazy: importing cnnpipe.io stays free of torch for the Snakefile.
    from torch.hub import download_url_to_file

    # The temporary folder sits next to target, so the final rename is atomic, and it
    # disappears with whatever a failed or interrupted download left in it.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        partial = Path(tmp) / target.name
        for index, url in enumerate(urls):
            partial.unlink(missing_ok=True)
            try:
                download_url_to_file(url, str(partial), hash_prefix=None, progress=progress)
            except _NETWORK_ERRORS as error:
                failures.append(Failure(url, f"{type(error).__name__}: {error}"))
            else:
                actual = file_digest(partial, algorithm)
                if actual.startswith(expected):
                    os.replace(partial, target)
                    return target
                failures.append(Failure(url, f"{label} mismatch, expected {wanted}, got {actual} "
                                             "(the download was deleted)", actual))
            if index < len(urls) - 1:  # the last failure is in the error raised below
                log.warning("%s: no valid copy from %s; trying the next URL", target, failures[-1])
    error = ChecksumError if any(f.actual is not None for f in failures) else DownloadError
    raise error(f"{target}: could not download a valid copy:\n  " + "\n  ".join(map(str, failures)), failures)
