"""Rule `download`: fetch the configured dataset and write the prepared split."""

from cnnpipe.data.prepare import prepare_dataset
from cnnpipe.runtime.logs import job_logging

with job_logging(snakemake.log[0]):
    prepare_dataset(
        snakemake.params.dataset,
        seed=snakemake.params.seed,
        cache_dir=snakemake.params.cache,
        data_path=snakemake.output.data,
        manifest_path=snakemake.output.manifest,
    )
