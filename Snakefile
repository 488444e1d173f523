# cnnpipe: train a CNN and show what it learned. Run: snakemake --cores 4
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


# The default config sits beside this file; --configfile adds to it.
configfile: Path(workflow.basedir) / "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/lecture.smk"
include: "workflow/rules/photos.smk"
# before backbones.smk, whose downloads include the atlas network's weights
include: "workflow/rules/atlas.smk"
include: "workflow/rules/backbones.smk"
include: "workflow/rules/filters.smk"
include: "workflow/rules/dream.smk"
include: "workflow/rules/classes.smk"
include: "workflow/rules/fooling.smk"
include: "workflow/rules/style.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
        ATLAS_OUTPUTS,
