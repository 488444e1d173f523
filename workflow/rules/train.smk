from cnnpipe.workflow.checks import check_model_fits

# Checked while the workflow is parsed: a model too deep for the image size stops the run
# before training could start (and delete the previous model).
check_model_fits(config["dataset"], config["model"])


rule train:
    input:
        data="results/data/dataset.pt",
        manifest="results/data/manifest.json",
        code=code("train"),
    output:
        model="results/train/model.pt",
        metrics="results/train/metrics.csv",
        curve=report(
            "results/train/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="2. Training",
        ),
        confusion=report(
            "results/train/confusion_matrix.png",
            caption="../report/confusion_matrix.rst",
            category="2. Training",
        ),
        eval="results/metrics/eval.json",
        caption="results/captions/train.rst",
    log:
        "results/logs/train.log",
    benchmark:
        "results/benchmarks/train.tsv"
    # on the critical path: training gates filters, classes and fooling, so it goes first
    priority: 20
    conda:
        "../envs/cnnpipe.yaml"
    # One thread: the lecture CNN is small, and a fixed count keeps the bytes identical
    # whatever --cores is. Raise it for big data with --set-threads train=N.
    threads: 1
    resources:
        gpu=GPU_PER_JOB,
        mem_mb=4000,
        runtime=60,
    params:
        model=section("model"),
        train=section("train"),
        seed=config["seed"],
        device=config["device"],
        # Per-epoch checkpoints live here, outside the outputs, so a killed job resumes.
        checkpoints="results/train/checkpoints",
    script:
        "../scripts/train.py"
