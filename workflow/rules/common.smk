# Shared helpers: config slices for params, code inputs, and the final targets.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from cnnpipe.backbone_names import DOWNLOADABLE
from cnnpipe.codegraph import package_files_used_by
from cnnpipe.photos import SAMPLE_PHOTOS
from cnnpipe.plan import weights_file
from cnnpipe.runlock import RunLockError, acquire, runs_no_jobs

# One run at a time in this folder, held by the kernel until the process ends (see
# cnnpipe.runlock); jobs that a cluster or a subprocess runs belong to the run holding it.
if workflow.is_main_process and not runs_no_jobs(sys.argv):
    try:
        acquire(".", sys.argv)
    except RunLockError as error:
        raise WorkflowError(str(error)) from None


def code(script):
    """The cnnpipe source files that workflow/scripts/<script>.py imports, directly or not, as
    inputs: editing one reruns the stage. Paths are relative to the working folder, so a
    finished run that is moved or copied (with its code) stays complete."""
    basedir = Path(workflow.basedir)
    files = package_files_used_by(
        basedir / "workflow" / "scripts" / f"{script}.py", basedir / "src"
    )
    return [os.path.relpath(path) for path in files]


def section(name):
    """A config section as a dict with sorted keys, so params compare stably."""
    return dict(sorted(config[name].items()))


def backbone_inputs(name):
    """The files a backbone needs: the trained checkpoint, downloaded weights, or none
    (EfficientNet-Lite0's weights ship inside a Python package)."""
    if name == "trained":
        return ["results/train/model.pt"]
    if name in DOWNLOADABLE:
        return [str(weights_file(name, config["cache"]))]
    return []


def training_data(name):
    """The prepared dataset for stages that compare with (or fit on) the trained CNN's
    training images; an ImageNet backbone has none here."""
    return ["results/data/dataset.pt"] if name == "trained" else []


CLASSES_OUTPUTS = [
    "results/classes/summary.csv",
    "results/classes/attainment.json",
    "results/classes/classes.png",
]
FOOLING_OUTPUTS = expand(
    "results/fooling/{method}.{ext}",
    method=["gradient", "evolution"],
    ext=["csv", "png"],
)


def final_outputs():
    return [
        "results/metrics/eval.json",
        "results/lecture/conv_example.json",
        "results/lecture/conv_example.png",
        "results/lecture/parameters.json",
        "results/lecture/parameters.png",
        "results/lecture/first_layer_filters.png",
        *CLASSES_OUTPUTS,
        *FOOLING_OUTPUTS,
        "results/dream/summary.csv",
        "results/dream/summary.png",
        *STYLE_OUTPUTS,
        *expand(
            "results/filters/{layer}.{ext}", layer=FILTER_LAYERS, ext=["png", "csv"]
        ),
    ]
