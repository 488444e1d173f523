"""Rule `backbone_weights`: download a torchvision network's ImageNet weights into the cache."""

from pathlib import Path

from cnnpipe.networks.weights import download_weights
from cnnpipe.runtime.logs import job_logging

with job_logging(snakemake.log[0]):
    mirror = snakemake.params.mirror
    download_weights(
        snakemake.params.backbone,
        snakemake.params.cache,
        url=f"{mirror.rstrip('/')}/{Path(snakemake.output[0]).name}" if mirror else None,
        progress=True,
    )
