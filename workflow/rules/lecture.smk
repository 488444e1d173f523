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
    conda:
        "../envs/cnnpipe.yaml"
    params:
        model=section("model"),
    script:
        "../scripts/lecture.py"


# The lecture's first-layer slide, for each network in first_layer_filters.backbones (named
# by its spec's slug: trained, efficientnet_lite0, alexnet, ...).
rule first_layer_filters:
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
