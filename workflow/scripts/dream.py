"""Rule `dream`: DeepDream one image and write its PNG and one-row CSV."""

import torch

from cnnpipe.backbones import load_backbone
from cnnpipe.captions import dream, write_caption
from cnnpipe.device import seed_everything, select_device
from cnnpipe.dream import dream_file
from cnnpipe.logs import job_logging

with job_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    seed_everything(snakemake.params.seed)
    settings = snakemake.params.dream
    trained = settings["backbone"] == "trained"
    model = load_backbone(
        settings["backbone"],
        cache_dir=snakemake.params.cache,
        checkpoint=snakemake.input.backbone[0] if trained else None,
    )
    dream_file(
        snakemake.input.image,
        snakemake.output.image,
        snakemake.output.csv,
        model,
        settings,
        name=snakemake.wildcards.name,
        seed=snakemake.params.seed,
        device=select_device(snakemake.params.device),
    )
    write_caption(snakemake.output.caption, dream(snakemake.output.csv))
