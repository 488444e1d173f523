"""Rule `classes`: per-class activation maximization in three variants, judged by the CNN
and by an independent pixel classifier."""

import torch

from cnnpipe.classes import run_classes
from cnnpipe.logs import job_logging

with job_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    run_classes(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.params.classes,
        seed=snakemake.params.seed,
        device_name=snakemake.params.device,
        summary_csv=snakemake.output.summary,
        attainment_json=snakemake.output.attainment,
        grid_png=snakemake.output.grid,
    )
