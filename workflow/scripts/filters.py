"""Rule `filters`: per-filter activation maximization for one layer, grid and table."""

import torch

from cnnpipe.report.captions import filters_key_numbers, write_caption
from cnnpipe.runtime.logs import job_logging
from cnnpipe.stages.filters import run_filters

with job_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    trained = snakemake.params.settings["backbone"] == "trained"
    run_filters(
        snakemake.wildcards.layer,
        snakemake.params.settings,
        seed=snakemake.params.seed,
        device_name=snakemake.params.device,
        png_path=snakemake.output.grid,
        csv_path=snakemake.output.table,
        image_dir=snakemake.output.images,
        model_path=snakemake.input.backbone[0] if trained else None,
        data_path=snakemake.input.data[0] if trained else None,
        cache_dir=snakemake.params.cache,
    )
    write_caption(snakemake.output.caption, filters_key_numbers(snakemake.output.table, snakemake.wildcards.layer))
