"""Rule `first_layer_filters`: a network's first convolution filters as images."""

from cnnpipe.networks.build import load_backbone
from cnnpipe.runtime.logs import job_logging
from cnnpipe.stages.lecture import write_first_layer_filters

with job_logging(snakemake.log[0]):
    trained = snakemake.params.backbone == "trained"
    model = load_backbone(
        snakemake.params.backbone,
        cache_dir=snakemake.params.cache,
        checkpoint=snakemake.input.backbone[0] if trained else None,
        key="first_layer_filters.backbones",
    )
    write_first_layer_filters(model, snakemake.output[0], network=model.backbone_name)
