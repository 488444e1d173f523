"""Rule `style`: style transfer of one content/style pair; writes the image, figure and losses."""

import torch

from cnnpipe.captions import style_key_numbers, write_caption
from cnnpipe.logs import job_logging
from cnnpipe.style import run_pair

with job_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    run_pair(
        snakemake.input.content,
        snakemake.input.style,
        snakemake.params.style,
        output_image=snakemake.output.image,
        output_figure=snakemake.output.figure,
        output_csv=snakemake.output.losses,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        cache_dir=snakemake.params.cache,
    )
    write_caption(snakemake.output.caption, style_key_numbers(snakemake.output.losses))
