"""Rule `style_chunk`: style transfer of every content/style pair of one chunk in one process
(the backbone and the judge loaded once), writing each pair's image, figure, losses, caption
and log into the chunk's folder. The job log starts with where the start-up time went."""

import time

from cnnpipe.logs import job_logging, process_age

# Before the heavy imports: the interpreter and Snakemake's script preamble are behind us.
before_imports = process_age()
began = time.perf_counter()

with job_logging(snakemake.log[0]) as log:
    import torch

    from cnnpipe.style import run_style_chunk

    imported = time.perf_counter() - began
    if before_imports is not None:
        log.info("start-up: %.2f s for Python and Snakemake's script preamble", before_imports)
    log.info("start-up: %.2f s importing torch and cnnpipe", imported)
    torch.set_num_threads(snakemake.threads)
    run_style_chunk(
        {name: tuple(pair) for name, pair in snakemake.params.pairs.items()},
        snakemake.output[0],
        snakemake.params.style,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        cache_dir=snakemake.params.cache,
    )
