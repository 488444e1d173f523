"""Rule `dream_summary`: every image's DeepDream row in one CSV, and a before/after figure."""

from cnnpipe.captions import dream_key_numbers, write_caption
from cnnpipe.dream_summary import write_summary
from cnnpipe.logs import job_logging

with job_logging(snakemake.log[0]):
    write_summary(
        snakemake.input.csv,
        snakemake.input.originals,
        snakemake.input.dreams,
        snakemake.output.csv,
        snakemake.output.figure,
    )
    write_caption(snakemake.output.caption, dream_key_numbers(snakemake.output.csv))
