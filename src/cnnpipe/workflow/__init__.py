"""What Snakemake calls while it parses the workflow: checks, inputs, resources, style pairs, chunk assignment, code inputs and the run lock. Code that runs in a job never imports this package."""
