"""Rule `lecture`: the convolution worked example and the parameter counts."""

from cnnpipe.captions import conv_example_key_numbers, parameters_key_numbers, write_caption
from cnnpipe.data import load_manifest
from cnnpipe.lecture import write_conv_example, write_parameter_counts
from cnnpipe.logs import job_logging

with job_logging(snakemake.log[0]):
    write_conv_example(snakemake.output.example, snakemake.output.example_png)
    write_parameter_counts(
        snakemake.params.model,
        load_manifest(snakemake.input.manifest),
        snakemake.output.parameters,
        snakemake.output.parameters_png,
    )
    write_caption(snakemake.output.example_caption, conv_example_key_numbers(snakemake.output.example))
    write_caption(snakemake.output.parameters_caption, parameters_key_numbers(snakemake.output.parameters))
