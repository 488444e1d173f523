"""Rule `first_layer_filters`: the trained model's first convolution filters as images."""

from cnnpipe.checkpoint import load_model
from cnnpipe.lecture import write_first_layer_filters
from cnnpipe.logs import job_logging

with job_logging(snakemake.log[0]):
    write_first_layer_filters(load_model(snakemake.input.model), snakemake.output[0])
