import random

import numpy as np
import pytest
import torch

from cnnpipe.runtime.device import autocast, seed_everything, select_device


def test_auto_falls_back_to_the_cpu_here():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type in {expected, "mps"}
    assert select_device("cpu") == torch.device("cpu")


def test_unknown_or_absent_devices_are_named():
    with pytest.raises(ValueError, match="tpu"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            select_device("cuda")


def test_seed_everything_repeats_every_stream():
    def draw():
        generator = seed_everything(7)
        return torch.rand(2), np.random.rand(2), random.random(), torch.rand(2, generator=generator)

    first, second = draw(), draw()
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2] and torch.equal(first[3], second[3])


def test_autocast_is_off_on_the_cpu():
    with autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_seed_everything_turns_tf32_off():
    """GPU results stay float32 (TF32 would keep ~3 digits and drift from the CPU's)."""
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    seed_everything(0)
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
