rule download:
    input:
        code=code("download"),
    output:
        data="results/data/dataset.pt",
        manifest="results/data/manifest.json",
    log:
        "results/logs/download.log",
    priority: 30
    conda:
        "../envs/cnnpipe.yaml"
    params:
        dataset=section("dataset"),
        seed=config["seed"],
        cache=config["cache"],
    script:
        "../scripts/download.py"
