"""The whole pipeline as users live with it: identical reruns, a killed run resumed,
the report, and nothing written outside results/ and the download cache."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from pipeline import TINY, result_files, snakemake, snakemake_command


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_two_fresh_runs_write_byte_identical_results(tiny_run, tmp_path):
    snakemake(tmp_path, "--cores", "2")
    first, second = result_files(tiny_run), result_files(tmp_path)
    assert sorted(first) == sorted(second)
    assert any(name.endswith(".pt") for name in first) and any(name.endswith(".png") for name in first)
    differing = [name for name in first if digest(first[name]) != digest(second[name])]
    assert differing == []


def test_nothing_is_written_outside_results_and_the_cache(tiny_run):
    cache = yaml.safe_load(TINY.read_text()).get("cache") or yaml.safe_load(
        (TINY.parent.parent / "config.yaml").read_text())["cache"]
    allowed = {"results", cache.split("/")[0], ".snakemake"}
    assert {path.name for path in tiny_run.iterdir()} <= allowed


@pytest.mark.parametrize("override", [
    {"model": {"conv_channels": [4, 8, 8, 8, 8]}},  # too deep for 12 px images: would fail in training
    {"dream": {"tile": 1}},                          # no room for a margin: would fail in every dream job
    {"dataset": {"test_fraction": 0.999}},           # 1 train image per class at most: would fail in download
])
def test_a_config_rejected_at_parse_time_leaves_every_result_as_it_was(tiny_run_copy, tmp_path, override):
    """A setting that passes the schema but cannot work is refused before any job, so
    Snakemake never deletes the outputs of the jobs it would have rerun."""
    tiny_run = tiny_run_copy
    before = {name: digest(path) for name, path in result_files(tiny_run, skip=()).items()}
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(override))
    result = snakemake(tiny_run, "--cores", "2", configfiles=(TINY, config), check=False)
    assert result.returncode != 0 and next(iter(override)) in result.stderr
    assert {name: digest(path) for name, path in result_files(tiny_run, skip=()).items()} == before


# Folders of optimized images saved one per file (data to reuse, not figures): each x* of
# classes/images/<variant>/, fooling/<method>/ and filters/<layer>/; their grids are figures.
# The atlas's images belong to its site (atlas/<network>/...), which the report links.
IMAGE_FOLDERS = ("classes", "fooling", "filters", "atlas")


def figures(workdir: Path) -> list[Path]:
    """Every figure the pipeline drew (the exported sample photos are inputs, and the x* files
    in the stages' image folders are data, not figures)."""
    return [path for name, path in result_files(workdir).items()
            if path.suffix == ".png" and not name.startswith("photos/")
            and not (Path(name).parts[0] in IMAGE_FOLDERS and len(Path(name).parts) > 2)]


def test_report_contains_every_figure(tiny_run, tiny_report):
    html = tiny_report.read_text(errors="replace")
    assert figures(tiny_run)
    missing = [path.name for path in figures(tiny_run) if path.name not in html]
    assert missing == []


def test_report_captions_give_this_runs_numbers(tiny_run, tiny_report):
    html = tiny_report.read_text(errors="replace")
    result = json.loads((tiny_run / "results/metrics/eval.json").read_text())
    assert f"Test accuracy <strong>{100 * result['test_accuracy']:.1f}%</strong>" in html
    for method in ("gradient", "evolution"):
        table = pd.read_csv(tiny_run / f"results/fooling/{method}.csv")
        reached = int(table["reached_target"].sum())
        assert f"<strong>{reached} of {len(table)}</strong> classes at a confidence" in html
    # Every report item cites numbers except the first-layer filters (weights, no measurement:
    # one figure per network); the filter tables (CSV) are items too. No docutils error shows.
    tables = list((tiny_run / "results/filters").glob("*.csv"))
    first_layer = list((tiny_run / "results/lecture/first_layer_filters").glob("*.png"))
    assert len(first_layer) == 2
    assert html.count("Key numbers of this run") == len(figures(tiny_run)) - len(first_layer) + len(tables)
    assert "System Message" not in html and "system-message" not in html


KILL_CONFIG = {
    "model": {"conv_channels": [16, 32], "hidden": [64], "dropout": 0.1},
    "train": {"epochs": 12, "batch_size": 16, "lr": 0.003},
}


@pytest.mark.slow
def test_sigkill_during_training_then_rerun_incomplete_resumes(tmp_path):
    """Kill the whole snakemake process group mid-training; a run started meanwhile is refused,
    `--rerun-incomplete` afterwards completes, and the final checkpoint equals an uninterrupted
    run's."""
    override = tmp_path / "kill.yaml"
    override.write_text(yaml.safe_dump(KILL_CONFIG))
    configs = (TINY, override)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    target = "results/train/model.pt"

    process = subprocess.Popen(snakemake_command(killed, "--cores", "2", target, configfiles=configs),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = killed / "results" / "train" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)

    # While it trains (paused, so that it cannot finish meanwhile), a second run on other
    # targets is refused before it changes anything: it cannot start a second training or
    # remove the first run's Snakemake locks.
    os.killpg(process.pid, signal.SIGSTOP)
    locks = sorted((killed / ".snakemake" / "locks").iterdir())
    second = snakemake(killed, "--cores", "1", "--rerun-incomplete", target, "results/lecture/conv_example.json",
                       configfiles=configs, check=False)
    assert second.returncode != 0 and f"another run is working in {killed}: process {process.pid}" in second.stderr
    assert not (killed / "results" / "lecture").exists()
    assert sorted((killed / ".snakemake" / "locks").iterdir()) == locks and locks
    # A dry run works beside it.
    assert snakemake(killed, "--dry-run", target, configfiles=configs).returncode == 0

    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / target).exists(), "training finished before it could be killed"
    assert 1 <= torch.load(last, weights_only=True)["epoch"] < 12

    # The kernel freed the killed run's lock: the next run takes it, removes the stale
    # Snakemake locks and resumes.
    snakemake(killed, "--cores", "2", "--rerun-incomplete", target, configfiles=configs)
    log = (killed / "results" / "logs" / "train.log").read_text()
    # The log keeps the killed attempt's epochs above the resumed ones.
    assert log.count("training on") == 2 and log.index("epoch 1/12") < log.index("resuming from")
    assert not list((killed / ".snakemake" / "locks").glob("*.lock"))
    snakemake(whole, "--cores", "2", target, configfiles=configs)
    assert (killed / target).read_bytes() == (whole / target).read_bytes()


def _live(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _training_process(work: Path) -> int:
    """The pid of the training job working in ``work``, found in /proc by its command line."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.startswith(str(work).encode()) and part.endswith(b".train.py") for part in command):
            found.append(int(entry.name))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.slow
def test_sigkill_of_snakemake_alone_ends_its_jobs(tmp_path):
    """Issue 26, item 1, as reported: SIGKILL to the Snakemake process only (not its process
    group) while it trains. The training job used to train on, and the next run started a
    second training beside it; now the job sees its run gone and stops within a second, and
    the next run works alone."""
    override = tmp_path / "long.yaml"
    override.write_text(yaml.safe_dump({"train": {"epochs": 600}}))
    work, target = tmp_path / "work", "results/train/model.pt"
    process = subprocess.Popen(snakemake_command(work, "--cores", "2", target, configfiles=(TINY, override)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = work / "results" / "train" / "checkpoints" / "last.pt"
    jobs = work / ".snakemake" / "cnnpipe-jobs"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job = _training_process(work)
    # its lock (the download job has ended and taken its own lock file along)
    assert [json.loads(path.read_text())["pid"] for path in jobs.glob("*.lock")] == [job]
    try:
        process.kill()
        process.wait()
        deadline = time.monotonic() + 10
        while _live(job) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _live(job), "the training job outlived its run"
    finally:
        if _live(job):
            os.kill(job, signal.SIGKILL)
    assert not (work / target).exists()
    assert "this job stops so that it cannot outlive its run" in (work / "results" / "logs" / "train.log").read_text()
    # The next run is not refused, and trains alone (six epochs here).
    snakemake(work, "--cores", "2", target)
    assert json.loads((work / "results" / "metrics" / "eval.json").read_text())["epochs"] == 6
    assert not list(jobs.glob("*.lock"))
