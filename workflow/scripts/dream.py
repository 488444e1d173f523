"""Rule `dream_chunk`: DeepDream every image of one chunk in one process (the network loaded
once), writing each image's PNG, CSV, caption and log into the chunk's folder. The job log
starts with where the start-up time went."""

from cnnpipe.runtime.logs import StartupClock, job_logging

# Before the heavy imports: the interpreter and Snakemake's script preamble are behind us.
clock = StartupClock()

with job_logging(snakemake.log[0]) as log:
    import torch

    from cnnpipe.stages.dream import run_dream_chunk

    clock.log_imports(log)
    torch.set_num_threads(snakemake.threads)
    settings = snakemake.params.dream
    trained = settings["backbone"] == "trained"
    run_dream_chunk(
        dict(zip(snakemake.params.names, snakemake.input.images)),
        snakemake.output[0],
        settings,
        seed=snakemake.params.seed,
        device_name=snakemake.params.device,
        cache_dir=snakemake.params.cache,
        checkpoint=snakemake.input.backbone[0] if trained else None,
    )
