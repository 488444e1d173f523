"""Rule `style_chunk`: style transfer of every content/style pair of one chunk in one process
(the backbone and the judge loaded once), writing each pair's image, figure, losses, caption
and log into the chunk's folder. The job log starts with where the start-up time went."""

from cnnpipe.runtime.logs import StartupClock, job_logging

# Before the heavy imports: the interpreter and Snakemake's script preamble are behind us.
clock = StartupClock()

with job_logging(snakemake.log[0]) as log:
    import torch

    from cnnpipe.stages.style import run_style_chunk

    clock.log_imports(log)
    torch.set_num_threads(snakemake.threads)
    run_style_chunk(
        {name: tuple(pair) for name, pair in snakemake.params.pairs.items()},
        snakemake.output[0],
        snakemake.params.style,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        cache_dir=snakemake.params.cache,
    )
