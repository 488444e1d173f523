"""Rule `dream_chunk`: DeepDream every image of one chunk in one process (the network loaded
once), writing each image's PNG, CSV, caption and log into the chunk's folder. The job log
starts with where the start-up time went."""

import time

from cnnpipe.logs import job_logging, process_age

# Before the heavy imports: the interpreter and Snakemake's script preamble are behind us.
before_imports = process_age()
began = time.perf_counter()

with job_logging(snakemake.log[0]) as log:
    import torch

    from cnnpipe.dream import run_dream_chunk

    imported = time.perf_counter() - began
    if before_imports is not None:
        log.info("start-up: %.2f s for Python and Snakemake's script preamble", before_imports)
    log.info("start-up: %.2f s importing torch and cnnpipe", imported)
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
