"""Rule `train`: train (or resume) the lecture CNN and write its checkpoint and metrics."""

from pathlib import Path

import torch

from cnnpipe.report.captions import training_key_numbers, write_caption
from cnnpipe.runtime.logs import job_logging
from cnnpipe.stages.train import interrupted_attempt, run_training

# The log is kept in a second file too, so a resumed run's log starts with the killed
# attempt's lines (Snakemake deletes the log of an incomplete job, not this copy).
resumed = interrupted_attempt(snakemake.params.checkpoints, snakemake.params.train["epochs"])
history = Path(snakemake.log[0]).with_suffix(".attempts.log")
with job_logging(snakemake.log[0], history=history, resume=resumed):
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
