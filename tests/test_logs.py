import logging

import pytest

from cnnpipe.logs import job_logging, progress


def test_job_output_and_failures_land_in_the_log(tmp_path):
    log = tmp_path / "logs" / "job.log"
    with pytest.raises(RuntimeError):
        with job_logging(log) as logger:
            print("printed")
            logger.info("logged")
            for _ in progress(range(3), desc="work"):
                pass
            raise RuntimeError("the job failed")
    text = log.read_text()
    assert "printed" in text and "logged" in text and "work" in text
    assert "RuntimeError: the job failed" in text
    assert not any(isinstance(h, logging.StreamHandler) and getattr(h.stream, "name", "") == str(log)
                   for h in logging.getLogger().handlers)
