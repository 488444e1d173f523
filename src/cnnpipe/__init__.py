"""cnnpipe: train a CNN and show what it learned, as a reproducible Snakemake pipeline."""

__version__ = "0.1.0"
