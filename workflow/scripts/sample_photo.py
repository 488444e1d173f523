"""Rule `sample_photo`: export one of scikit-image's bundled photos as PNG."""

from cnnpipe.io.photos import export_sample_photo
from cnnpipe.runtime.logs import job_logging

with job_logging(snakemake.log[0]):
    export_sample_photo(snakemake.wildcards.photo, snakemake.output[0])
