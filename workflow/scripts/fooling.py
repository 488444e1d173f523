"""Rule `fooling`: fooling images for every class by one method (gradient or evolution)."""

import torch

from cnnpipe.captions import fooling, write_caption
from cnnpipe.fooling import run_fooling
from cnnpipe.logs import job_logging

with job_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    trained = snakemake.params.fooling["backbone"] == "trained"
    run_fooling(
        snakemake.wildcards.method,
        snakemake.params.fooling,
        seed=snakemake.params.seed,
        device_name=snakemake.params.device,
        csv_path=snakemake.output.csv,
        png_path=snakemake.output.grid,
        model_path=snakemake.input.backbone[0] if trained else None,
        data_path=snakemake.input.data[0] if trained else None,
        cache_dir=snakemake.params.cache,
    )
    method, cfg = snakemake.wildcards.method, snakemake.params.fooling
    target = cfg["target_confidence"] if method == "gradient" else cfg["evolution_target"]
    write_caption(snakemake.output.caption, fooling(snakemake.output.csv, method, target))
