"""Rule `dream`: DeepDream one image and write its PNG and one-row CSV."""

import torch

from cnnpipe.captions import dream_key_numbers, write_caption
from cnnpipe.dream import run_dream
from cnnpipe.logs import job_logging

with job_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    settings = snakemake.params.dream
    trained = settings["backbone"] == "trained"
    run_dream(
        snakemake.input.image,
        snakemake.output.image,
        snakemake.output.csv,
        settings,
        name=snakemake.wildcards.name,
        seed=snakemake.params.seed,
        device_name=snakemake.params.device,
        cache_dir=snakemake.params.cache,
        checkpoint=snakemake.input.backbone[0] if trained else None,
    )
    write_caption(snakemake.output.caption, dream_key_numbers(snakemake.output.csv))
