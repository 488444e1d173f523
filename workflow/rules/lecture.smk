LECTURE_OUTPUTS = [
    "results/lecture/conv_example.json",
    "results/lecture/conv_example.png",
    "results/lecture/parameters.json",
    "results/lecture/parameters.png",
]
FIRST_LAYER_OUTPUTS = expand(
    "results/lecture/first_layer_filters/{backbone}.png",
    backbone=FIRST_LAYER_BACKBONES,
)


rule lecture:
    input:
        manifest="results/data/manifest.json",
        code=code("lecture"),
    output:
        example="results/lecture/conv_example.json",
        example_png=report(
            "results/lecture/conv_example.png",
            caption="../report/conv_example.rst",
            category="1. Convolution",
        ),
        example_caption="results/captions/conv_example.rst",
        parameters="results/lecture/parameters.json",
        parameters_png=report(
            "results/lecture/parameters.png",
            caption="../report/parameters.rst",
            category="1. Convolution",
        ),
        parameters_caption="results/captions/parameters.rst",
    log:
        "results/logs/lecture.log",
    benchmark:
        "results/benchmarks/lecture.tsv"
    conda:
        "../envs/cnnpipe.yaml"
    params:
        model=section("model"),
    script:
        "../scripts/lecture.py"


# The lecture's first-layer slide, for each network in first_layer_filters.backbones (named
# by its spec's slug: trained, efficientnet_lite0, alexnet, ...).
rule first_layer_filters_network:
    input:
        backbone=lambda wildcards: backbone_inputs(
            FIRST_LAYER_BACKBONES[wildcards.backbone]
        ),
        code=code("first_layer_filters"),
    output:
        report(
            "results/lecture/first_layer_filters/{backbone}.png",
            caption="../report/first_layer_filters.rst",
            category="3. Filters",
            subcategory="First layer",
            labels={"network": "{backbone}"},
        ),
    log:
        "results/logs/first_layer_filters/{backbone}.log",
    benchmark:
        "results/benchmarks/first_layer_filters/{backbone}.tsv"
    wildcard_constraints:
        backbone="|".join(re.escape(slug) for slug in FIRST_LAYER_BACKBONES) or "(?!)",
    priority: 10
    conda:
        "../envs/cnnpipe.yaml"
    params:
        backbone=lambda wildcards: FIRST_LAYER_BACKBONES[wildcards.backbone].to_config(),
        cache=lambda wildcards: backbone_cache(
            FIRST_LAYER_BACKBONES[wildcards.backbone]
        ),
    script:
        "../scripts/first_layer_filters.py"


# `snakemake first_layer_filters`: the slide for every network.
rule first_layer_filters:
    input:
        FIRST_LAYER_OUTPUTS,
    localrule: True
