"""Rule `lecture`: the convolution worked example and the parameter counts."""

from cnnpipe.data.prepare import load_manifest
from cnnpipe.report.captions import conv_example_key_numbers, parameters_key_numbers, write_caption
from cnnpipe.runtime.logs import job_logging
from cnnpipe.stages.lecture import write_conv_example, write_parameter_counts

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
