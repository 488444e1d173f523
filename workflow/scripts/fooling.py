"""Rule `fooling`: fooling images for every class by one method (gradient or evolution)."""

import torch

from cnnpipe.judges.specs import check_judges
from cnnpipe.report.captions import fooling_key_numbers, write_caption
from cnnpipe.runtime.logs import job_logging
from cnnpipe.stages.fooling import run_fooling, target_confidence

with job_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    method, cfg = snakemake.wildcards.method, snakemake.params.fooling
    trained = cfg["backbone"] == "trained"
    run_fooling(
        method,
        cfg,
        seed=snakemake.params.seed,
        device_name=snakemake.params.device,
        csv_path=snakemake.output.csv,
        judges_csv=snakemake.output.judges,
        png_path=snakemake.output.grid,
        image_dir=snakemake.output.images,
        model_path=snakemake.input.backbone[0] if trained else None,
        data_path=snakemake.input.data[0] if trained else None,
        cache_dir=snakemake.params.cache,
    )
    judges = check_judges("fooling", cfg.get("judge"), cfg["backbone"])
    numbers = fooling_key_numbers(
        snakemake.output.csv,
        method,
        target_confidence(method, cfg),
        judge=judges[0].label if judges else None,
        judges_csv=snakemake.output.judges,
    )
    write_caption(snakemake.output.caption, numbers)
