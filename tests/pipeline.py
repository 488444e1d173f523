"""Driving the real Snakemake workflow from tests: run it in a temporary folder on the tiny
config, and read a dry run's plan."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / ".test" / "config.yaml"
# The rules that read the trained checkpoint.
TRAINED = {"first_layer_filters_network", "filters_layer", "classes", "fooling_method", "atlas_dataset", "atlas_chunk"}


def copy_workflow(target: Path) -> Path:
    """A copy of the workflow and its code (Snakefile, config, workflow/, src/), so a test can
    edit a stage's module without touching the repository. Returns the copy's Snakefile."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "Snakefile", target / "Snakefile")
    shutil.copy2(ROOT / "config.yaml", target / "config.yaml")
    shutil.copytree(ROOT / "workflow", target / "workflow")
    shutil.copytree(ROOT / "src" / "cnnpipe", target / "src" / "cnnpipe",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return target / "Snakefile"


def snakefile_for(workdir: Path) -> Path:
    """The workflow copy beside ``workdir`` (see the ``tiny_run`` fixture), else the repository's."""
    copy = workdir.parent / "code" / "Snakefile"
    return copy if copy.exists() else ROOT / "Snakefile"


def snakemake_command(workdir: Path, *args: str, configfiles=(TINY,)) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile_for(workdir)),
            "--directory", str(workdir), "--configfile", *map(str, configfiles), *args]


def absolute_pythonpath() -> dict[str, str]:
    """The environment with PYTHONPATH's entries made absolute: jobs run in their working
    folder, where a relative ``PYTHONPATH=src`` finds nothing, and would silently import the
    installed cnnpipe (another checkout's) instead of this one."""
    entries = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if not entries:
        return dict(os.environ)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(entry) for entry in entries)}


def snakemake(workdir: Path, *args: str, configfiles=(TINY,), check=True, timeout=900) -> subprocess.CompletedProcess:
    result = subprocess.run(snakemake_command(workdir, *args, configfiles=configfiles),
                            capture_output=True, text=True, timeout=timeout, env=absolute_pythonpath())
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule name -> count from a dry run's job stats table."""
    counts = {}
    text = result.stdout + result.stderr
    table = text.split("Job stats:")[-1] if "Job stats:" in text else ""
    for line in table.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def result_files(workdir: Path, skip=("logs", "benchmarks")) -> dict[str, Path]:
    """Every file the pipeline wrote under results/, by relative path (logs and timings aside)."""
    results = workdir / "results"
    return {
        str(path.relative_to(results)): path
        for path in sorted(results.rglob("*"))
        if path.is_file() and path.relative_to(results).parts[0] not in skip and path.suffix != ".html"
    }


def planned_resources(result: subprocess.CompletedProcess) -> dict[str, list[dict[str, str]]]:
    """Rule -> the resources of each of its planned jobs, as a dry run lists them
    (``resources: tmpdir=/tmp, gpu=1, ...``)."""
    jobs: dict[str, list[dict[str, str]]] = {}
    rule = None
    for line in (result.stdout + result.stderr).splitlines():
        if match := re.match(r"^\s*(?:local)?rule (\w+):\s*$", line):
            rule = match.group(1)
        elif (match := re.match(r"^\s*resources: (.*)$", line)) and rule is not None:
            pairs = (item.split("=", 1) for item in match.group(1).split(", ") if "=" in item)
            jobs.setdefault(rule, []).append({key.strip(): value.strip() for key, value in pairs})
            rule = None
    return jobs


def render_caption(template: str, config: dict, *, caption: str, params: dict | None = None, **wildcards) -> str:
    """The caption ``workflow/report/<template>.rst`` as the report shows it: rendered by Jinja
    with a stand-in ``snakemake`` object (its ``config``, ``params``, ``wildcards`` and
    ``output.caption``), then by docutils to HTML (the body). ``caption``, the key-numbers file,
    is included relative to the working directory, as Snakemake renders it."""
    import types

    import jinja2
    from docutils.core import publish_parts

    snakemake = types.SimpleNamespace(config=config, params=types.SimpleNamespace(**(params or {})),
                                      wildcards=types.SimpleNamespace(**wildcards),
                                      output=types.SimpleNamespace(caption=str(caption)))
    text = jinja2.Environment().from_string((ROOT / "workflow" / "report" / f"{template}.rst").read_text())
    return publish_parts(text.render(snakemake=snakemake), writer="html", settings_overrides={"report_level": 1})["body"]
