import logging

import pytest

from cnnpipe.runtime.logs import job_logging, progress


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


def test_a_resumed_jobs_log_starts_with_the_earlier_attempts_lines(tmp_path):
    log, history = tmp_path / "logs" / "train.log", tmp_path / "checkpoints" / "train.log"
    with job_logging(log, history=history):
        print("first attempt, epoch 1")
    log.unlink()  # Snakemake deletes the log of an incomplete job before it reruns it
    with job_logging(log, history=history, resume=True):
        print("resumed, epoch 2")
    assert log.read_text() == history.read_text() == "first attempt, epoch 1\nresumed, epoch 2\n"
    with job_logging(log, history=history):  # a fresh start forgets them
        print("fresh")
    assert log.read_text() == history.read_text() == "fresh\n"


def test_a_job_freezes_its_objects_at_exit_so_python_skips_the_last_collection(tmp_path):
    import subprocess
    import sys

    # registered first, so it runs after job_logging's exit hook (last in, first out)
    code = ("import atexit, gc; atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0)); "
            "from cnnpipe.runtime.logs import job_logging\n"
            f"with job_logging({str(tmp_path / 'job.log')!r}):\n    print('working')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "frozen True"
    assert "working" in (tmp_path / "job.log").read_text()
