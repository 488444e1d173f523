# Shared helpers: config slices for params, code inputs, and the final targets.
from pathlib import Path

from cnnpipe.plan import DOWNLOADABLE, SAMPLE_PHOTOS, weights_file
from cnnpipe.runlock import clear_stale_lock, record_owner, release_owner

# A run killed with SIGKILL leaves its lock; remove it when its process is gone.
clear_stale_lock()

SRC = Path(workflow.basedir) / "src" / "cnnpipe"


def code(*modules):
    """The cnnpipe modules a stage runs, as inputs: editing one reruns that stage."""
    return [str(SRC / f"{module}.py") for module in modules]


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


def class_stage_modules(name):
    """The extra modules the class stages run: the pixel classifier for the trained CNN, the
    backbone loader for an ImageNet network."""
    if name == "trained":
        return ["independent"]
    return ["backbones"]


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
