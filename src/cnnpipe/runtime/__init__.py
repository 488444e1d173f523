"""Running a job: device choice and determinism, logging and progress, chunk batches and publishing. Imports nothing else of cnnpipe."""
