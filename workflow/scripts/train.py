"""Rule `train`: train (or resume) the lecture CNN and write its checkpoint and metrics."""

import torch

from cnnpipe.captions import training_key_numbers, write_caption
from cnnpipe.logs import job_logging
from cnnpipe.train import run_training

with job_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    run_training(
        data_path=snakemake.input.data,
        manifest_path=snakemake.input.manifest,
        model_cfg=snakemake.params.model,
        train_cfg=snakemake.params.train,
        seed=snakemake.params.seed,
        device_name=snakemake.params.device,
        checkpoint_dir=snakemake.params.checkpoints,
        model_path=snakemake.output.model,
        metrics_csv=snakemake.output.metrics,
        eval_json=snakemake.output.eval,
        curve_png=snakemake.output.curve,
        confusion_png=snakemake.output.confusion,
    )
    write_caption(snakemake.output.caption, training_key_numbers(snakemake.output.eval, snakemake.output.metrics))
