"""Rule `backbone_weights`: download a torchvision backbone's ImageNet weights into the cache."""

from cnnpipe.backbones import download_weights
from cnnpipe.logs import job_logging

with job_logging(snakemake.log[0]):
    download_weights(snakemake.params.backbone, snakemake.params.cache, progress=True)
