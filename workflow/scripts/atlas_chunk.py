"""Rule `atlas_chunk`: x* and the diverse set of every unit of one chunk, the network loaded once."""

from cnnpipe.runtime.logs import StartupClock, job_logging

clock = StartupClock()

with job_logging(snakemake.log[0]) as log:
    import torch

    from cnnpipe.stages.atlas_chunk import run_atlas_chunk

    clock.log_imports(log)
    torch.set_num_threads(snakemake.threads)
    settings = snakemake.params.settings
    trained = settings["backbone"] == "trained"
    run_atlas_chunk(
        snakemake.params.units,
        settings,
        snakemake.output[0],
        seed=snakemake.params.seed,
        device_name=snakemake.params.device,
        model_path=snakemake.input.backbone[0] if trained else None,
        cache_dir=snakemake.params.cache,
        data_path=snakemake.input.data[0] if trained and snakemake.input.data else None,
    )
