"""Rule `fooling`: fooling images for every class by one method (gradient or evolution)."""

import torch

from cnnpipe.fooling import run_fooling
from cnnpipe.logs import job_logging

with job_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    run_fooling(
        snakemake.wildcards.method,
        snakemake.input.model,
        snakemake.input.data,
        snakemake.params.fooling,
        seed=snakemake.params.seed,
        device_name=snakemake.params.device,
        csv_path=snakemake.output.csv,
        png_path=snakemake.output.grid,
    )
