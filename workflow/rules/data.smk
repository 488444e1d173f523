from cnnpipe.workflow.checks import check_dataset_split

# Checked while the workflow is parsed: a test_fraction that cannot split the dataset (or an
# image folder without classes to split) stops the run before the download job could fail
# and Snakemake delete the prepared data.
check_dataset_split(config["dataset"])


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
