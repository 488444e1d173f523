# DeepDream: one job per image (the bundled photos, or every image in dream.folder), then a
# summary table and figure.
import re

from cnnpipe.plan import (
    check_dream_tile,
    check_layer_names,
    dream_inputs,
    dream_mem_mb,
    folder_files,
)

# Decided while the workflow is parsed: a dream.folder that is missing or holds no image
# stops the run before any job starts, with the folder named.
# A named layer must exist and have a spatial output (DeepDream raises its feature maps).
check_layer_names(
    "dream.layers",
    BACKBONES["dream"],
    config["dream"]["layers"],
    config["model"],
    input_shape=(
        None if BACKBONES["dream"].kind in ("trained", "checkpoint") else (3, 224, 224)
    ),
)
check_dream_tile(config["dream"], config["model"])
DREAM_IMAGES = dream_inputs(
    config["dream"],
    folder_files(config["dream"]["folder"]) if config["dream"]["folder"] else [],
)


rule dream:
    input:
        image=lambda wildcards: DREAM_IMAGES[wildcards.name],
        backbone=backbone_inputs(BACKBONES["dream"]),
        code=code("dream"),
    output:
        image=report(
            "results/dream/{name}.png",
            caption="../report/dream.rst",
            category="6. DeepDream",
            labels={"image": "{name}", "figure": "DeepDream"},
        ),
        csv="results/dream/{name}.csv",
        caption="results/captions/dream/{name}.rst",
    log:
        "results/logs/dream/{name}.log",
    wildcard_constraints:
        name="|".join(re.escape(name) for name in DREAM_IMAGES),
    conda:
        "../envs/cnnpipe.yaml"
    # One thread per job: jobs run side by side instead, and the bytes do not depend on
    # --cores. Raise it with --set-threads for large images.
    threads: 1
    resources:
        gpu=0 if config["device"] == "cpu" else 1,
        # from the photo's size and the tile (plan.dream_mem_mb, measured by
        # benchmarks/dream_memory.py)
        mem_mb=lambda wildcards, input: dream_mem_mb(input.image, config["dream"]),
        runtime=60,
    params:
        # the image list is left out: adding an image reruns no other image
        dream={
            k: v for k, v in section("dream").items() if k not in ("folder", "photos")
        },
        seed=config["seed"],
        device=config["device"],
        cache=backbone_cache(BACKBONES["dream"]),
    script:
        "../scripts/dream.py"


rule dream_summary:
    input:
        # functions, so that braces in file names are not read as wildcards
        csv=lambda wildcards: [f"results/dream/{n}.csv" for n in sorted(DREAM_IMAGES)],
        originals=lambda wildcards: [DREAM_IMAGES[n] for n in sorted(DREAM_IMAGES)],
        dreams=lambda wildcards: [
            f"results/dream/{n}.png" for n in sorted(DREAM_IMAGES)
        ],
        code=code("dream_summary"),
    output:
        csv="results/dream/summary.csv",
        figure=report(
            "results/dream/summary.png",
            caption="../report/dream.rst",
            category="6. DeepDream",
            labels={"image": "all", "figure": "summary"},
        ),
        caption="results/captions/dream/summary.rst",
    log:
        "results/logs/dream/summary.log",
    conda:
        "../envs/cnnpipe.yaml"
    script:
        "../scripts/dream_summary.py"
