# Per-filter activation maximization: for every filter k of a layer, the input
# x* = argmax_x a^k with a^k = sum_ij a^k_ij, found by one batched gradient ascent per layer.
import re

from cnnpipe.workflow.checks import filter_layers

# Checked while the workflow is parsed: a layer that is not a convolution of the configured
# model (or not a feature map of the backbone) stops the run before any job starts.
FILTER_LAYERS = filter_layers(config["filters"], config["model"])
FILTER_BACKBONE = BACKBONES["filters"]
FILTER_OUTPUTS = expand(
    "results/filters/{layer}.{ext}", layer=FILTER_LAYERS, ext=["png", "csv"]
)


rule filters_layer:
    input:
        # the trained checkpoint, or an ImageNet backbone's downloaded weights (or none)
        backbone=backbone_inputs(FILTER_BACKBONE),
        # the trained CNN's x* are compared with every training image
        data=training_data(FILTER_BACKBONE),
        code=code("filters"),
    output:
        grid=report(
            "results/filters/{layer}.png",
            caption="../report/filters.rst",
            category="3. Filters",
            subcategory="Activation maximization",
            labels={"layer": "{layer}", "output": "x* per filter"},
        ),
        table=report(
            "results/filters/{layer}.csv",
            caption="../report/filters.rst",
            category="3. Filters",
            subcategory="Activation maximization",
            labels={"layer": "{layer}", "output": "table"},
        ),
        caption="results/captions/filters/{layer}.rst",
        # every x* as <unit>.png; the table and the grid are made from these files
        images=directory("results/filters/{layer}"),
    log:
        "results/logs/filters/{layer}.log",
    benchmark:
        "results/benchmarks/filters/{layer}.tsv"
    wildcard_constraints:
        layer="|".join(re.escape(layer) for layer in FILTER_LAYERS),
    priority: 10
    conda:
        "../envs/cnnpipe.yaml"
    # The lecture CNN's small convolutions run fastest on one thread per job (two layers
    # then run side by side); ImageNet backbones use more.
    threads: backbone_threads(FILTER_BACKBONE)
    resources:
        gpu=GPU_PER_JOB,
        mem_mb=int(config["filters"]["memory_mb"]) + 2000,
        runtime=30,
    params:
        # everything but `layers`, so that adding a layer does not rerun the others
        settings={k: v for k, v in section("filters").items() if k != "layers"},
        seed=config["seed"],
        device=config["device"],
        cache=backbone_cache(FILTER_BACKBONE),
    script:
        "../scripts/filters.py"


# `snakemake filters`: every layer (a target rule cannot have wildcards).
rule filters:
    input:
        FILTER_OUTPUTS,
    localrule: True
