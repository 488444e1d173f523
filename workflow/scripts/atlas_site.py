"""Rule `atlas_site`: the atlas's static pages from the dataset passes and the chunks."""

from pathlib import Path

from cnnpipe.report.atlas_site import build_site
from cnnpipe.runtime.logs import job_logging

with job_logging(snakemake.log[0]):
    build_site(
        snakemake.params.network,
        dict(zip(snakemake.params.layers, snakemake.input.layers)),
        list(snakemake.input.chunks),
        snakemake.output.index,
        Path(snakemake.output.pages),
        snakemake.params.described,
    )
