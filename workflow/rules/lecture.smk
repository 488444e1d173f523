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


rule first_layer_filters:
    input:
        model="results/train/model.pt",
        code=code("first_layer_filters"),
    output:
        report(
            "results/lecture/first_layer_filters.png",
            caption="../report/first_layer_filters.rst",
            category="3. Filters",
        ),
    log:
        "results/logs/first_layer_filters.log",
    priority: 10
    conda:
        "../envs/cnnpipe.yaml"
    script:
        "../scripts/first_layer_filters.py"
