"""Shared fixtures: the repository root, a tiny prepared dataset, tiny configs."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_config) -> dict:
    """The digits dataset prepared at the tiny config's image size, once per session."""
    from cnnpipe.data import prepare_dataset

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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole workflow run once on the tiny config in a temporary folder, from a copy of
    the workflow beside it (``code/``) that tests may edit."""
    from pipeline import copy_workflow, snakemake

    base = tmp_path_factory.mktemp("pipeline")
    copy_workflow(base / "code")
    workdir = base / "work"
    workdir.mkdir()
    snakemake(workdir, "--cores", "2")
    return workdir


@pytest.fixture(scope="session")
def tiny_report(tiny_run) -> Path:
    """The HTML report of the tiny run, built by `snakemake --report`."""
    from pipeline import snakemake

    snakemake(tiny_run, "--report", "report.html")
    return tiny_run / "report.html"
