import hashlib

import pytest

from cnnpipe.io import files as fileio
from cnnpipe.io.download import ChecksumError, DownloadError, download

BODY = b"the bytes a mirror should serve\n" * 100


def test_digest_helpers_agree_with_hashlib(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(BODY)
    assert fileio.file_md5(path) == hashlib.md5(BODY).hexdigest()
    assert fileio.file_sha256(path) == fileio.file_digest(path, "sha256") == hashlib.sha256(BODY).hexdigest()
    with pytest.raises(ValueError, match="sha1"):
        fileio.file_digest(path, "sha1")


def test_a_mirror_that_404s_is_skipped_for_the_next_one(file_server, tmp_path):
    file_server.files["good/f.bin"] = BODY
    urls = [file_server.url("bad/f.bin"), file_server.url("good/f.bin")]
    target = tmp_path / "cache" / "f.bin"
    assert download(urls, target, algorithm="md5", expected=hashlib.md5(BODY).hexdigest()) == target
    assert target.read_bytes() == BODY
    assert file_server.requests == ["/bad/f.bin", "/good/f.bin"]
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_a_bad_checksum_leaves_nothing_and_every_url_is_reported(file_server, tmp_path):
    file_server.files["wrong/f.bin"] = b"other bytes"
    urls = [file_server.url("gone/f.bin"), file_server.url("wrong/f.bin")]
    target = tmp_path / "f.bin"
    prefix = hashlib.sha256(BODY).hexdigest()[:8]
    with pytest.raises(ChecksumError) as info:
        download(urls, target, algorithm="sha256", expected=prefix)
    message = str(info.value)
    assert f"{urls[0]}: HTTPError: HTTP Error 404" in message
    assert f"{urls[1]}: SHA-256 mismatch, expected a digest starting with {prefix}" in message
    assert hashlib.sha256(b"other bytes").hexdigest() in message
    assert [f.url for f in info.value.failures] == urls
    assert list(tmp_path.iterdir()) == []


def test_no_url_reachable_is_a_download_error_not_a_checksum_error(file_server, tmp_path):
    with pytest.raises(DownloadError, match="404") as info:
        download([file_server.url("a"), file_server.url("b")], tmp_path / "f", algorithm="md5", expected="0" * 32)
    assert not isinstance(info.value, ChecksumError) and len(info.value.failures) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_cached_good_file_is_not_fetched_again_and_a_bad_one_is_replaced(file_server, tmp_path):
    file_server.files["f.bin"] = BODY
    target = tmp_path / "f.bin"
    target.write_bytes(BODY)
    sha = hashlib.sha256(BODY).hexdigest()
    assert download(file_server.url("f.bin"), target, algorithm="sha256", expected=sha) == target
    assert file_server.requests == []
    target.write_bytes(b"truncated")
    download(file_server.url("f.bin"), target, algorithm="sha256", expected=sha)
    assert target.read_bytes() == BODY and file_server.requests == ["/f.bin"]


def test_the_expected_digest_is_checked_before_any_request(file_server, tmp_path):
    with pytest.raises(ValueError, match="hash algorithm"):
        download(file_server.url("f"), tmp_path / "f", algorithm="sha1", expected="0" * 40)
    with pytest.raises(ValueError, match="6 to 32 hex digits"):
        download(file_server.url("f"), tmp_path / "f", algorithm="md5", expected="xyz")
    with pytest.raises(ValueError, match="no URL"):
        download([], tmp_path / "f", algorithm="md5", expected="0" * 32)
    assert file_server.requests == []
