"""Rule `classes`: per-class activation maximization in three variants, judged by the network
and (for the trained CNN) by an independent pixel classifier."""

import torch

from cnnpipe.report.captions import classes_key_numbers, write_caption
from cnnpipe.runtime.logs import job_logging
from cnnpipe.stages.classes import run_classes

with job_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    trained = snakemake.params.classes["backbone"] == "trained"
    run_classes(
        snakemake.params.classes,
        seed=snakemake.params.seed,
        device_name=snakemake.params.device,
        summary_csv=snakemake.output.summary,
        judges_csv=snakemake.output.judges,
        attainment_json=snakemake.output.attainment,
        grid_png=snakemake.output.grid,
        image_dir=snakemake.output.images,
        model_path=snakemake.input.backbone[0] if trained else None,
        data_path=snakemake.input.data[0] if trained else None,
        cache_dir=snakemake.params.cache,
    )
    write_caption(snakemake.output.caption, classes_key_numbers(snakemake.output.attainment))
