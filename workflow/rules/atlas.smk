# The atlas: every unit of the chosen layers with its x*, a diverse set of x* and the dataset
# images that excite it most and least, as a static site (results/atlas/<network>/index.html).
# Per layer one dataset pass; units in chunks of atlas.per_job (the network loaded once per
# chunk); one job writes the pages.
import re

from cnnpipe.judges.specs import check_judges, judges_config
from cnnpipe.networks.spec import parse_backbone
from cnnpipe.workflow.chunks import assign_chunks
from cnnpipe.workflow.inputs import atlas_images
from cnnpipe.workflow.probes import layer_units
from cnnpipe.workflow.resources import atlas_chunk_mem_mb, atlas_dataset_mem_mb

ATLAS_SPEC = parse_backbone(config["atlas"]["backbone"], "atlas.backbone")
check_backbone_weights("atlas.backbone", ATLAS_SPEC)
ATLAS_TRAINED = ATLAS_SPEC.kind == "trained"
if ATLAS_TRAINED and config["atlas"]["folder"] is not None:
    raise WorkflowError(
        "atlas.folder: the trained CNN's atlas ranks its training images; a folder is "
        "for other networks (set atlas.folder: null)"
    )
# The site's folder name: results/atlas/<network>/.
ATLAS_NETWORK = "trained" if ATLAS_TRAINED else ATLAS_SPEC.slug
# Layer -> units, from the network on the meta device (no weights): a name that is not a
# layer stops the run here, naming atlas.layers.
ATLAS_LAYERS = layer_units(
    "atlas.layers",
    ATLAS_SPEC,
    config["atlas"]["layers"],
    config["model"],
    input_shape=(
        3,
        config["atlas"]["image_size"] or 224,
        config["atlas"]["image_size"] or 224,
    ),
)
ATLAS_MAX_UNITS = config["atlas"]["max_units"]
# The side of x*, for the chunks' memory: the trained CNN's images (native: assumed 28 px, an
# MNIST digit), any other network's atlas.image_size (native: 224).
ATLAS_SIDE = (
    (config["dataset"]["image_size"] or 28)
    if ATLAS_TRAINED
    else (config["atlas"]["image_size"] or 224)
)
ATLAS_UNITS = [
    f"{layer}:{unit}"
    for layer, count in ATLAS_LAYERS.items()
    for unit in range(min(count, ATLAS_MAX_UNITS or count))
]
# Units go to chunks by a hash of their name, as DeepDream's photos do.
ATLAS_CHUNKS = assign_chunks(ATLAS_UNITS, config["atlas"]["per_job"])
ATLAS_FILES = atlas_images(config["atlas"]["folder"])
ATLAS_ROOT = f"results/atlas/{ATLAS_NETWORK}"
ATLAS_OUTPUTS = [f"{ATLAS_ROOT}/index.html"]
# What each job's results depend on: the dataset pass never reads the ascent's settings, and
# the chunks never read the folder, so changing one reruns only its side (and the pages).
ATLAS_DATASET_SETTINGS = {
    k: v
    for k, v in section("atlas").items()
    if k in ("backbone", "image_size", "top_n", "bins")
}
ATLAS_ASCENT_SETTINGS = {
    k: v
    for k, v in section("atlas").items()
    if k
    in (
        "backbone",
        "image_size",
        "steps",
        "lr",
        "parameterization",
        "jitter",
        "leak",
        "memory_mb",
        "diverse",
        "diversity",
    )
}
ATLAS_DATASET_SETTINGS["backbone"] = ATLAS_SPEC.to_config()
ATLAS_ASCENT_SETTINGS["backbone"] = ATLAS_SPEC.to_config()
# The class scores layer (logits; for a network with ImageNet's classes any layer of 1,000
# units, a superset) gets verdicts on its x*: an ImageNet judge's, or for the trained CNN a
# pixel classifier's fitted on its training data. Only then is the judge a chunk setting (a
# changed judge reruns no other atlas).
ATLAS_CLASS_UNITS = any(
    layer == "logits" or (ATLAS_SPEC.imagenet and units == 1000)
    for layer, units in ATLAS_LAYERS.items()
)
# The judges of class units' x* (one spec or a list, as for classes; none without class units).
ATLAS_JUDGES = (
    check_judges("atlas", config["atlas"]["judge"], ATLAS_SPEC)
    if ATLAS_CLASS_UNITS
    else []
)
for spec in ATLAS_JUDGES:
    check_backbone_weights("atlas.judge", spec)
if ATLAS_JUDGES:
    ATLAS_ASCENT_SETTINGS["judge"] = judges_config(ATLAS_JUDGES)


rule atlas_dataset:
    input:
        backbone=backbone_inputs(ATLAS_SPEC),
        # the trained CNN's units are ranked on its training images, others on the folder
        data=training_data(ATLAS_SPEC),
        images=ATLAS_FILES,
        code=code("atlas_dataset"),
    output:
        # activations.npz, units.csv, examples.csv and examples/<unit>.png
        directory(f"{ATLAS_ROOT}/dataset/{{layer}}"),
    log:
        f"results/logs/atlas/dataset/{{layer}}.log",
    benchmark:
        f"results/benchmarks/atlas/dataset/{{layer}}.tsv"
    wildcard_constraints:
        layer="|".join(re.escape(layer) for layer in ATLAS_LAYERS),
    conda:
        "../envs/cnnpipe.yaml"
    threads: backbone_threads(ATLAS_SPEC)
    resources:
        gpu=GPU_PER_JOB,
        mem_mb=lambda wildcards, input: atlas_dataset_mem_mb(
            len(input.images), ATLAS_LAYERS[wildcards.layer], config["atlas"]
        ),
        runtime=30,
    params:
        settings=ATLAS_DATASET_SETTINGS,
        seed=config["seed"],
        device=config["device"],
        cache=backbone_cache(ATLAS_SPEC),
    script:
        "../scripts/atlas_dataset.py"


rule atlas_chunk:
    input:
        backbone=backbone_inputs(ATLAS_SPEC),
        # the judge's weights, and the training data of the trained CNN's pixel classifier,
        # where the atlas has class units
        judge=[path for spec in ATLAS_JUDGES for path in backbone_inputs(spec)],
        data=training_data(ATLAS_SPEC) if ATLAS_CLASS_UNITS else [],
        code=code("atlas_chunk"),
    output:
        # <layer>/<unit>.png (the unit's diverse set, x* first), members.csv and, for class
        # units, verdicts.csv
        directory(f"{ATLAS_ROOT}/chunks/{{chunk}}"),
    log:
        f"results/logs/atlas/chunks/{{chunk}}.log",
    benchmark:
        f"results/benchmarks/atlas/chunks/{{chunk}}.tsv"
    wildcard_constraints:
        chunk=r"[0-9a-f]+",
    conda:
        "../envs/cnnpipe.yaml"
    threads: backbone_threads(ATLAS_SPEC)
    resources:
        gpu=GPU_PER_JOB,
        # measured (benchmarks/atlas_memory.py): the network, plus the chunk's largest batch
        # (units x members) at the image side, at most atlas.memory_mb (estimate_max_batch)
        mem_mb=lambda wildcards: atlas_chunk_mem_mb(
            config["atlas"],
            trained=ATLAS_TRAINED,
            units=len(ATLAS_CHUNKS[wildcards.chunk]),
            side=ATLAS_SIDE,
            judge=bool(ATLAS_JUDGES),
        ),
        runtime=lambda wildcards: 10 + len(ATLAS_CHUNKS[wildcards.chunk]) // 4,
    params:
        units=lambda wildcards: ATLAS_CHUNKS[wildcards.chunk],
        settings=ATLAS_ASCENT_SETTINGS,
        seed=config["seed"],
        device=config["device"],
        cache=backbone_cache(ATLAS_SPEC)
        or next(filter(None, map(backbone_cache, ATLAS_JUDGES)), None),
    script:
        "../scripts/atlas_chunk.py"


rule atlas_site:
    input:
        layers=[f"{ATLAS_ROOT}/dataset/{layer}" for layer in ATLAS_LAYERS],
        chunks=[f"{ATLAS_ROOT}/chunks/{chunk}" for chunk in ATLAS_CHUNKS],
        code=code("atlas_site"),
    output:
        index=report(
            f"{ATLAS_ROOT}/index.html",
            caption="../report/atlas.rst",
            category="3. Filters",
            subcategory="Atlas",
            labels={"network": ATLAS_NETWORK, "output": "site (index.html)"},
        ),
        pages=directory(f"{ATLAS_ROOT}/site"),
    log:
        f"results/logs/atlas/site.log",
    benchmark:
        f"results/benchmarks/atlas/site.tsv"
    conda:
        "../envs/cnnpipe.yaml"
    params:
        network=ATLAS_NETWORK,
        layers=list(ATLAS_LAYERS),
        described=(
            "the training set"
            if ATLAS_TRAINED
            else (config["atlas"]["folder"] or "scikit-image's bundled photos")
        ),
    script:
        "../scripts/atlas_site.py"


# `snakemake atlas`: the site and everything it shows.
rule atlas:
    input:
        ATLAS_OUTPUTS,
    localrule: True
