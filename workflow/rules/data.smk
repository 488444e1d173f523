rule download:
    input:
        code=code("data"),
    output:
        data="results/data/dataset.pt",
        manifest="results/data/manifest.json",
    params:
        dataset=section("dataset"),
        seed=config["seed"],
        cache=config["cache"],
    conda:
        "../envs/cnnpipe.yaml"
    log:
        "results/logs/download.log",
    script:
        "../scripts/download.py"
