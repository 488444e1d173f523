"""Rule `atlas_dataset`: every unit of one layer ranked on the folder, written as files that
the chunks' pages read."""

from cnnpipe.runtime.logs import job_logging

with job_logging(snakemake.log[0]):
    import torch

    from cnnpipe.stages.atlas import run_dataset_pass

    torch.set_num_threads(snakemake.threads)
    settings = snakemake.params.settings
    trained = settings["backbone"] == "trained"
    run_dataset_pass(
        snakemake.wildcards.layer,
        settings,
        snakemake.output[0],
        seed=snakemake.params.seed,
        device_name=snakemake.params.device,
        model_path=snakemake.input.backbone[0] if trained else None,
        data_path=snakemake.input.data[0] if trained else None,
        files=list(snakemake.input.images),
        cache_dir=snakemake.params.cache,
    )
