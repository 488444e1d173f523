"""The tiny pipeline through the SLURM executor, on a real single-node cluster on localhost.

Part of the slow tier (`make test-slow`, which sets CNNPIPE_SLURM=1): it installs and starts
munge and SLURM daemons (tests/slurm/start.sh, as root), so a bare `pytest` without
CNNPIPE_SLURM=1 skips it; `CNNPIPE_SLURM=1 pytest tests/end_to_end/test_slurm.py` runs it alone. A cluster this test started is stopped at the end (tests/slurm/stop.sh);
one that was already running is left running. CNNPIPE_SLURM_KEEP=1 keeps it either way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / ".test" / "config.yaml"
PROFILE = ROOT / "profiles" / "slurm"
START = ROOT / "tests" / "slurm" / "start.sh"
STOP = ROOT / "tests" / "slurm" / "stop.sh"
STATE = Path(os.environ.get("CNNPIPE_SLURM_DIR", "/tmp/cnnpipe-slurm"))
# What the run builds: the whole tiny pipeline (rule `all`; 77 s here on two cores, each job
# starting Python, Snakemake and torch). CNNPIPE_SLURM_TARGETS (space-separated) runs other
# targets, CNNPIPE_SLURM_TIMEOUT changes the limit.
TARGETS = os.environ.get("CNNPIPE_SLURM_TARGETS", "all").split()
# Seconds for the whole Snakemake run; then it is interrupted with SIGINT, on which the plugin
# cancels its jobs and exits (after SIGTERM it keeps waiting).
RUN_LIMIT_S = int(os.environ.get("CNNPIPE_SLURM_TIMEOUT", "600"))

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CNNPIPE_SLURM") != "1",
        reason="needs a local SLURM cluster (root, apt): run `make test-slow` or set CNNPIPE_SLURM=1",
    ),
]


def _script(path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CNNPIPE_SLURM_DIR": str(STATE)}
    result = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=600, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{path.name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    """Environment for SLURM commands against the local cluster, started for this module."""
    already_running = _script(START, "--check", check=False).returncode == 0
    _script(START)
    try:
        yield {**os.environ, "SLURM_CONF": str(STATE / "etc" / "slurm.conf")}
    finally:
        if not already_running and os.environ.get("CNNPIPE_SLURM_KEEP") != "1":
            _script(STOP)


def _snakemake(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(TINY), *args]


def _job_stats(output: str) -> dict[str, int]:
    """Rule -> number of jobs, from the first "Job stats:" table Snakemake prints."""
    counts: dict[str, int] = {}
    table = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match:
            break
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


@pytest.fixture(scope="module")
def slurm_run(slurm_env, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """One finished run of the tiny pipeline through SLURM: its directory and planned jobs."""
    workdir = tmp_path_factory.mktemp("slurm_pipeline")
    command = ["timeout", "-s", "INT", "-k", "60", str(RUN_LIMIT_S), *_snakemake(
        workdir,
        "--workflow-profile", str(PROFILE),
        # No accounting daemon here: squeue (with MinJobAge=3600) instead of sacct, which
        # never reports the jobs as finished. (The plugin then fails to guess an account with
        # sacct and submits without one; --slurm-no-account does nothing in plugin 2.8.0.)
        "--slurm-status-command", "squeue",
        # Quick status checks: by default the first comes after 40 s. The plugin then adds
        # 10 s to the wait after each round in which no job finished and goes back to this
        # initial wait when one did; --seconds-between-status-checks is used only until then.
        "--slurm-init-seconds-before-status-checks", "2",
        "--seconds-between-status-checks", "1",
        # Keep the per-job SLURM logs, which the checks below read.
        "--slurm-keep-successful-logs",
        "--latency-wait", "5",
        # A job asking for more CPUs than the node has would be refused by sbatch.
        "--max-threads", str(len(os.sched_getaffinity(0))),
        *TARGETS,
    )]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=slurm_env,
                            timeout=RUN_LIMIT_S + 120)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise AssertionError(
            f"snakemake on SLURM failed ({result.returncode}; 124: timed out after {RUN_LIMIT_S} s)"
            f" after {elapsed:.0f} s:\n{result.stdout}\n{result.stderr[-20000:]}"
        )
    print(f"snakemake on SLURM took {elapsed:.0f} s")
    planned = _job_stats(result.stdout + result.stderr)
    assert planned, result.stderr
    return workdir, planned


def _job_ids(workdir: Path) -> dict[str, list[str]]:
    """Rule -> SLURM job ids, from the per-job logs the plugin writes under rule_<name>/."""
    logs = workdir / ".snakemake" / "slurm_logs"
    found: dict[str, list[str]] = {}
    for log in sorted(logs.glob("rule_*/**/*.log")):
        rule = log.relative_to(logs).parts[0].removeprefix("rule_")
        found.setdefault(rule, []).append(log.stem)
    return found


def _completion_log(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """Job id -> fields of its line in the cluster's job completion log (jobcomp/filetxt)."""
    records = {}
    for line in (STATE / "log" / "jobcomp.log").read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("JobId") in job_ids:
            records[fields["JobId"]] = fields
    return records


def _profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def test_profile_asks_for_what_the_plugin_accepts():
    profile = _profile()
    assert profile["executor"] == "slurm"
    defaults = profile["default-resources"]
    assert {"slurm_partition", "runtime", "mem_mb", "cpus_per_task"} <= set(defaults)
    for mapping in [defaults, *profile["set-resources"].values()]:
        extra = str(mapping.get("slurm_extra", ""))
        for option in ("--gres", "--gpus", "--mem", "--partition", "--time"):
            assert option not in extra, (option, mapping)
    train = profile["set-resources"]["train"]
    assert train["runtime"] > defaults["runtime"] and train["mem_mb"] > defaults["mem_mb"]


def test_tiny_pipeline_runs_through_slurm(slurm_run):
    workdir, _ = slurm_run
    results = workdir / "results"
    assert (results / "metrics" / "eval.json").stat().st_size > 0
    for png in ["lecture/first_layer_filters/trained.png", "train/learning_curve.png",
                "train/confusion_matrix.png"]:
        assert (results / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "test acc" in (results / "logs" / "train.log").read_text()
    if TARGETS == ["all"]:  # every stage's tables, as the local run writes them
        for table in ["classes/summary.csv", "fooling/gradient.csv", "fooling/evolution.csv", "dream/summary.csv",
                      "filters/conv1.csv", "captions/train.rst"]:
            assert (results / table).stat().st_size > 0, table
        assert list((results / "style" / "losses").glob("*.csv"))
    # Every target and everything it needs is there and up to date.
    again = subprocess.run(_snakemake(workdir, "--dry-run", "--workflow-profile", "none", *TARGETS),
                           capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout + again.stderr


def test_every_job_ran_as_a_slurm_job_with_the_profiles_resources(slurm_run, slurm_env):
    workdir, planned = slurm_run
    job_ids = _job_ids(workdir)
    # `all` and the stage targets (`filters`, `dream`, ... as CNNPIPE_SLURM_TARGETS) only collect
    # files, and `dream_photo` and `style_pair` link a chunk's files into place: local rules,
    # never submitted.
    local = {"all", "filters", "fooling", "first_layer_filters", "dream", "style", "dream_photo", "style_pair"}
    assert {rule: len(ids) for rule, ids in job_ids.items()} == {
        rule: count for rule, count in planned.items() if rule not in local
    }
    assert "train" in job_ids
    profile = _profile()
    records = _completion_log([job_id for ids in job_ids.values() for job_id in ids])
    for rule, ids in job_ids.items():
        partition = profile["set-resources"].get(rule, {}).get(
            "slurm_partition", profile["default-resources"]["slurm_partition"]
        )
        for job_id in ids:
            record = records.get(job_id)
            assert record is not None, f"job {job_id} ({rule}) is not in the completion log"
            assert record["JobState"] == "COMPLETED", (rule, record)
            assert record["Partition"] == partition, (rule, record)
            # The tiny config runs on the CPU: the rules' gpu=0 must not become a GPU request.
            assert "gpu" not in record["Tres"], (rule, record)
    # The controller still knows the finished jobs (MinJobAge): the rule is in the comment,
    # and train got the profile's memory and time limit.
    train = profile["set-resources"]["train"]
    shown = subprocess.run(["scontrol", "show", "job", job_ids["train"][0]], capture_output=True,
                           text=True, env=slurm_env, check=True).stdout
    assert "Comment=rule_train" in shown, shown
    assert re.search(rf"\bmem={train['mem_mb']}M\b", shown), shown
    hours, minutes = divmod(train["runtime"], 60)
    assert f"TimeLimit={hours:02d}:{minutes:02d}:00" in shown, shown


def test_a_folder_of_24_photos_in_chunks_of_8_is_3_slurm_jobs(slurm_env, tmp_path):
    """DeepDream over 24 photos with dream.per_job 8: three SLURM jobs (one per chunk), each
    photo's own files, and each job's time limit and memory set from its chunk's size."""
    import numpy as np
    from PIL import Image

    from cnnpipe.workflow.chunks import assign_chunks

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sizes = {}
    for i in range(24):
        sizes[f"photo {i:02d}"] = (32 + i, 24)
        Image.fromarray(rng.integers(0, 256, (24, 32 + i, 3), dtype=np.uint8)).save(folder / f"photo {i:02d}.png")
    override = tmp_path / "dream.yaml"
    override.write_text(yaml.safe_dump({"dream": {"folder": str(folder), "per_job": 8, "octaves": 1, "steps": 1,
                                                  "max_side": None}}))
    workdir = tmp_path / "work"
    command = ["timeout", "-s", "INT", "-k", "60", str(RUN_LIMIT_S), *_snakemake(
        workdir, "--configfile", str(override), "--workflow-profile", str(PROFILE), "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "1",
        "--slurm-keep-successful-logs", "--latency-wait", "5", "results/dream/summary.csv")]
    result = subprocess.run(command, capture_output=True, text=True, env=slurm_env, timeout=RUN_LIMIT_S + 120)
    assert result.returncode == 0, result.stdout + result.stderr[-20000:]
    chunks = assign_chunks(sizes, 8)
    assert len(chunks) == 3
    job_ids = _job_ids(workdir)
    assert {rule: len(ids) for rule, ids in job_ids.items()} == {"dream_chunk": 3, "dream_summary": 1}
    for name, size in sizes.items():
        with Image.open(workdir / "results" / "dream" / f"{name}.png") as dreamed:
            assert dreamed.size == size, name
        assert f"{name}: done" in (workdir / "results" / "logs" / "dream" / f"{name}.log").read_text()
    # Each chunk's job asked for 10 + 5 minutes per photo.
    limits = []
    for job_id in job_ids["dream_chunk"]:
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, env=slurm_env,
                               check=True).stdout
        hours, minutes = re.search(r"TimeLimit=(\d+):(\d+):00", shown).groups()
        limits.append(60 * int(hours) + int(minutes))
    assert sorted(limits) == sorted(10 + 5 * len(names) for names in chunks.values())
