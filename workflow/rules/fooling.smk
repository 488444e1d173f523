rule fooling:
    input:
        model="results/train/model.pt",
        data="results/data/dataset.pt",
        code=code("fooling", "ascent", "independent"),
    output:
        csv="results/fooling/{method}.csv",
        grid=report(
            "results/fooling/{method}.png",
            caption="../report/fooling.rst",
            category="5. Fooling",
            subcategory="{method}",
        ),
    log:
        "results/logs/fooling_{method}.log",
    benchmark:
        "results/benchmarks/fooling_{method}.tsv"
    wildcard_constraints:
        method="gradient|evolution",
    conda:
        "../envs/cnnpipe.yaml"
    # One thread: these small batches gain little from more, and one-thread jobs run side by
    # side (and give the same bytes with any --cores).
    threads: 1
    resources:
        gpu=0 if config["device"] == "cpu" else 1,
        mem_mb=2000,
        runtime=20,
    params:
        fooling=section("fooling"),
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/fooling.py"
