rule classes:
    input:
        model="results/train/model.pt",
        data="results/data/dataset.pt",
        code=code("classes", "ascent", "independent"),
    output:
        summary="results/classes/summary.csv",
        attainment="results/classes/attainment.json",
        grid=report(
            "results/classes/classes.png",
            caption="../report/classes.rst",
            category="4. Classes",
        ),
    log:
        "results/logs/classes.log",
    benchmark:
        "results/benchmarks/classes.tsv"
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
        classes=section("classes"),
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/classes.py"
