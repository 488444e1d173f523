"""Shared fixtures: the repository root, a tiny prepared dataset, tiny configs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / ".test" / "config.yaml"


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests' models are tiny: one thread is fastest, and keeps the machine's second core
    free for the Snakemake runs the tests start (their rules pin their own thread counts)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    """The tiny config merged over the default one, as Snakemake would merge them."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for key, value in yaml.safe_load(TINY_CONFIG.read_text()).items():
        if isinstance(value, dict):
            config[key] = {**config.get(key, {}), **value}
        else:
            config[key] = value
    return config


def make_tiny_cnn(*, channels: int = 1, classes: int = 4, size: int = 8, hidden=(16,), seed: int = 0,
                  fit_steps: int = 0):
    """The lecture CNN at toy size (4 then 8 filters), in eval mode, its weights drawn from
    ``seed`` without touching the global RNG.

    ``fit_steps`` > 0 first trains it that many Adam steps on synthetic classes (class 0 a bright
    left half, 1 a right half, 2 a top half, 3 a bottom half, plus noise), so that every class
    can be reached with high confidence."""
    import torch

    from cnnpipe.networks.lecture_cnn import LectureCNN

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LectureCNN(channels, classes, size, conv_channels=(4, 8), hidden=tuple(hidden))
    if fit_steps:
        if classes > 4 or channels != 1:
            raise ValueError("make_tiny_cnn: the synthetic task has 4 gray classes at most")
        half = size // 2
        images = torch.zeros(classes, 1, size, size)
        for c, region in enumerate([(..., slice(None, half)), (..., slice(half, None)),
                                    (..., slice(None, half), slice(None)), (..., slice(half, None), slice(None))]
                                   [:classes]):
            images[c][region] = 1.0
        gen = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
        for _ in range(fit_steps):
            noise = 0.2 * torch.randn(8 * classes, 1, size, size, generator=gen)
            x = (images.repeat(8, 1, 1, 1) + noise).clamp(0, 1)
            loss = torch.nn.functional.cross_entropy(model(x), torch.arange(classes).repeat(8))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture
def tiny_cnn():
    """The factory ``make_tiny_cnn``: ``tiny_cnn(classes=3, fit_steps=15)`` builds a fresh model
    on every call, so a test may change the one it gets."""
    return make_tiny_cnn


def png_read_back(images, folder: Path):
    """Gray images [N, 1, H, W] in [0, 1], each written by Pillow as an 8-bit PNG file in
    ``folder`` and read back, as [N, 1, H, W] float32: what someone opening the saved file
    gets, without cnnpipe's image code."""
    import numpy as np
    import torch
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    back = []
    for i, image in enumerate(images.detach().cpu()):
        path = folder / f"{i}.png"
        Image.fromarray(np.round(image[0].numpy() * 255).astype(np.uint8)).save(path)
        with Image.open(path) as png:
            assert png.mode == "L"
            back.append(torch.from_numpy(np.asarray(png, dtype=np.float32) / 255))
    return torch.stack(back)[:, None]


@pytest.fixture
def read_back_png():
    """``png_read_back``: images through real PNG files and back."""
    return png_read_back


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_config) -> dict:
    """The digits dataset prepared at the tiny config's image size, once per session."""
    from cnnpipe.data.prepare import prepare_dataset

    folder = tmp_path_factory.mktemp("tiny_data")
    paths = {"data": folder / "dataset.pt", "manifest": folder / "manifest.json"}
    prepare_dataset(
        tiny_config["dataset"],
        seed=tiny_config["seed"],
        cache_dir=folder / "cache",
        data_path=paths["data"],
        manifest_path=paths["manifest"],
    )
    return paths


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (held by the kernel: freed if the holder dies)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _shared_temp(tmp_path_factory) -> Path:
    """A folder that every pytest-xdist worker of this session sees (the session's own
    temporary folder when there are no workers)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole workflow run once per test session on the tiny config, in a temporary folder,
    from a copy of the workflow beside it (``code/``). Every pytest-xdist worker reads the same
    run: the first to need it makes it under a lock. Tests only read it (dry runs included); a
    test that edits its code or runs jobs there takes ``tiny_run_copy``."""
    from pipeline import copy_workflow, snakemake

    base = _shared_temp(tmp_path_factory) / "pipeline"
    with _locked(base.parent / "pipeline.lock"):
        if not (base / "done").exists():
            shutil.rmtree(base, ignore_errors=True)
            copy_workflow(base / "code")
            (base / "work").mkdir()
            snakemake(base / "work", "--cores", "2")
            (base / "done").touch()
    return base / "work"


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the tiny run (its code and its working folder, Snakemake's records
    included), for a test that edits code or runs jobs; the copy has nothing to do."""
    shutil.copytree(tiny_run.parent / "code", tmp_path / "code", symlinks=True)
    shutil.copytree(tiny_run, tmp_path / "work", symlinks=True)
    return tmp_path / "work"


@pytest.fixture(scope="session")
def tiny_report(tiny_run, tmp_path_factory) -> Path:
    """The HTML report of the tiny run, built by `snakemake --report` once per session."""
    from pipeline import snakemake

    with _locked(_shared_temp(tmp_path_factory) / "report.lock"):
        if not (tiny_run / "report.html").exists():
            snakemake(tiny_run, "--report", "partial-report.html")
            (tiny_run / "partial-report.html").rename(tiny_run / "report.html")
    return tiny_run / "report.html"


class FileServer:
    """An HTTP server on 127.0.0.1 serving ``files`` (path without the leading slash -> bytes)
    and recording the path of every GET in ``requests``."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append(self.path)
                body = owner.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def serve(self, folder: str, files: dict[str, bytes]) -> str:
        """Serve ``files`` under ``folder``; returns the folder's URL (a download mirror)."""
        for name, body in files.items():
            self.files[f"{folder}/{name}"] = body
        return f"{self.base}/{folder}/"


@pytest.fixture
def file_server(monkeypatch):
    """A local download server; proxies are switched off so requests reach it."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = FileServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)

