# DeepDream over the bundled photos or every image in dream.folder: one job per chunk of
# dream.per_job images (one process, the network loaded once), each image's files published
# to results/dream/ by a local job, then a summary table and figure.
import re

from cnnpipe.workflow.chunks import assign_chunks
from cnnpipe.workflow.checks import check_dream_tile
from cnnpipe.workflow.probes import check_layer_names
from cnnpipe.workflow.inputs import dream_inputs, folder_files
from cnnpipe.workflow.resources import dream_mem_mb

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


# Images go to chunks by a hash of their name (cnnpipe.runtime.chunks): adding, removing or editing
# one image reruns only the chunk that holds it.
DREAM_CHUNKS = assign_chunks(DREAM_IMAGES, config["dream"]["per_job"])
DREAM_CHUNK_OF = {
    name: chunk for chunk, names in DREAM_CHUNKS.items() for name in names
}
# Every image's dream and table, and the summary: the stage's final files.
DREAM_OUTPUTS = [
    *(
        f"results/dream/{name}.{ext}"
        for name in sorted(DREAM_IMAGES)
        for ext in ("png", "csv")
    ),
    "results/dream/summary.csv",
    "results/dream/summary.png",
]
# What the images' results depend on besides their image: a change reruns every chunk.
DREAM_SETTINGS = {
    k: v
    for k, v in section("dream").items()
    if k not in ("folder", "photos", "per_job")
}


rule dream_chunk:
    input:
        images=lambda wildcards: [
            DREAM_IMAGES[n] for n in DREAM_CHUNKS[wildcards.chunk]
        ],
        backbone=backbone_inputs(BACKBONES["dream"]),
        code=code("dream"),
    output:
        # each image's PNG, CSV, caption and log; the dream_photo rule publishes them
        temp(directory("results/dream/chunks/{chunk}")),
    log:
        "results/logs/dream/chunks/{chunk}.log",
    benchmark:
        "results/benchmarks/dream/chunks/{chunk}.tsv"
    wildcard_constraints:
        chunk=r"[0-9a-f]+",
    conda:
        "../envs/cnnpipe.yaml"
    # One thread per job: jobs run side by side instead, and the bytes do not depend on
    # --cores. Raise it with --set-threads for large images.
    threads: 1
    resources:
        gpu=GPU_PER_JOB,
        # the largest photo's need: the chunk's photos are dreamed one after another
        # (plan.dream_mem_mb, measured by benchmarks/dream_memory.py)
        mem_mb=lambda wildcards, input: max(
            dream_mem_mb(image, config["dream"]) for image in input.images
        ),
        runtime=lambda wildcards: 10 + 5 * len(DREAM_CHUNKS[wildcards.chunk]),
    params:
        names=lambda wildcards: DREAM_CHUNKS[wildcards.chunk],
        dream=DREAM_SETTINGS,
        seed=config["seed"],
        device=config["device"],
        cache=backbone_cache(BACKBONES["dream"]),
    script:
        "../scripts/dream.py"


rule dream_photo:
    input:
        chunk=lambda wildcards: f"results/dream/chunks/{DREAM_CHUNK_OF[wildcards.name]}",
        # as the chunk's: an edited image, network or code reruns this image's results
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
    # links the chunk's files into place: a torch-free command, no cluster job
    localrule: True
    conda:
        "../envs/cnnpipe.yaml"
    params:
        # as the chunk's: a changed setting reruns this image's results
        dream=DREAM_SETTINGS,
        seed=config["seed"],
        device=config["device"],
    shell:
        "python -m cnnpipe publish -- {input.chunk:q} {wildcards.name:q} {log:q}"
        " png={output.image:q} csv={output.csv:q} rst={output.caption:q}"


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
    benchmark:
        "results/benchmarks/dream/summary.tsv"
    conda:
        "../envs/cnnpipe.yaml"
    script:
        "../scripts/dream_summary.py"


# `snakemake dream`: every image and the summary.
rule dream:
    input:
        DREAM_OUTPUTS,
    localrule: True
