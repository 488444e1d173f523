"""Rule `dream_summary`: every image's DeepDream row in one CSV, and a before/after figure."""

from cnnpipe.report.captions import dream_key_numbers, write_caption
from cnnpipe.runtime.logs import job_logging
from cnnpipe.stages.dream_summary import write_summary

with job_logging(snakemake.log[0]):
    write_summary(
        snakemake.input.csv,
        snakemake.input.originals,
        snakemake.input.dreams,
        snakemake.output.csv,
        snakemake.output.figure,
    )
    write_caption(snakemake.output.caption, dream_key_numbers(snakemake.output.csv))
