import pytest
import torch

from cnnpipe.networks import checkpoint as ckpt
from cnnpipe.networks.lecture_cnn import build_model

MANIFEST = {"image_shape": [1, 12, 12], "classes": [str(i) for i in range(10)],
            "normalization": {"mean": [0.3], "std": [0.4]}, "dataset": "digits"}
MODEL_CFG = {"conv_channels": [4], "kernel_size": 3, "hidden": [8], "dropout": 0.0, "batch_norm": False}


def make_state():
    model = build_model(MODEL_CFG, MANIFEST)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.rand(2, 1, 12, 12)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(3)
    return model, {
        "format": ckpt.FORMAT,
        "model_state": model.state_dict(),
        "model_config": MODEL_CFG,
        "classes": MANIFEST["classes"],
        "image_shape": MANIFEST["image_shape"],
        "normalization": MANIFEST["normalization"],
        "epoch": 1,
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": {},
        "rng_state": ckpt.capture_rng_state(generator),
        "metrics": [{"epoch": 1, "test_accuracy": 0.5}],
        "fingerprint": "abc",
    }


def test_roundtrip_is_weights_only_and_rebuilds_the_model(tmp_path):
    model, state = make_state()
    path = ckpt.save_checkpoint(tmp_path / "model.pt", state)
    raw = torch.load(path, weights_only=True)  # no pickled code needed
    assert raw["epoch"] == 1 and raw["classes"] == MANIFEST["classes"]
    loaded = ckpt.load_model(path)
    x = torch.rand(3, 1, 12, 12)
    model.eval()
    assert torch.equal(loaded(x), model(x))
    assert loaded.classes == MANIFEST["classes"]
    assert torch.allclose(loaded.normalize.mean.flatten(), torch.tensor([0.3]))


def test_same_state_gives_same_bytes(tmp_path):
    _, state = make_state()
    first = ckpt.save_checkpoint(tmp_path / "a.pt", state).read_bytes()
    second = ckpt.save_checkpoint(tmp_path / "b.pt", state).read_bytes()
    assert first == second


def test_rng_state_roundtrip_restores_every_stream():
    import random

    import numpy as np

    generator = torch.Generator().manual_seed(5)
    state = ckpt.capture_rng_state(generator)
    expected = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=generator))
    ckpt.restore_rng_state(state, generator)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=generator))
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]
    assert torch.equal(expected[3], again[3])


def test_missing_key_is_refused(tmp_path):
    _, state = make_state()
    del state["optimizer_state"]
    with pytest.raises(ValueError, match="optimizer_state"):
        ckpt.save_checkpoint(tmp_path / "x.pt", state)
    assert not (tmp_path / "x.pt").exists()


def test_foreign_and_truncated_files_name_the_file(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="foreign.pt"):
        ckpt.load_checkpoint(foreign)
    _, state = make_state()
    good = ckpt.save_checkpoint(tmp_path / "good.pt", state)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.pt"):
        ckpt.load_checkpoint(truncated)
    # A stage reading the trained model says how to get it back.
    with pytest.raises(ValueError, match=r"truncated.pt cannot be read.*-R train.*checkpoints/last.pt"):
        ckpt.load_model(truncated)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


class FakeCuda:
    """torch.cuda's RNG calls on a machine without a GPU: records what a resume sets."""

    def __init__(self, visible: int, current: int = 0):
        self.visible, self.current, self.set = visible, current, []

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": torch.full((4,), 7, dtype=torch.uint8))
        monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": self.set.append((state, device)))


def test_a_checkpoint_from_two_gpus_resumes_on_one(monkeypatch):
    """Older checkpoints hold every visible GPU's stream; a job resumed with one GPU (SLURM's
    --gpus=1) takes the stream of the device it runs on, where an index lookup used to fail."""
    fake = FakeCuda(visible=1)
    fake.install(monkeypatch)
    generator = torch.Generator().manual_seed(1)
    state = ckpt.capture_rng_state(generator)
    two = [torch.full((4,), 1, dtype=torch.uint8), torch.full((4,), 2, dtype=torch.uint8)]
    ckpt.restore_rng_state({**state, "cuda": two}, generator, torch.device("cuda"))
    assert len(fake.set) == 1 and torch.equal(fake.set[0][0], two[0])
    # On the second GPU of two it is that GPU's stream; on a third, absent from the file, the first.
    fake.set.clear()
    ckpt.restore_rng_state({**state, "cuda": two}, generator, torch.device("cuda:1"))
    ckpt.restore_rng_state({**state, "cuda": two}, generator, torch.device("cuda:2"))
    assert [int(s[0]) for s, _ in fake.set] == [2, 1]


def test_new_checkpoints_keep_the_stream_of_the_device_in_use(monkeypatch):
    fake = FakeCuda(visible=2)
    fake.install(monkeypatch)
    generator = torch.Generator().manual_seed(1)
    state = ckpt.capture_rng_state(generator, torch.device("cuda"))
    assert isinstance(state["cuda"], torch.Tensor) and state["mps"] == []
    ckpt.restore_rng_state(state, generator, torch.device("cuda"))
    assert torch.equal(fake.set[0][0], state["cuda"])
    # A CPU run saves no GPU stream and restores none.
    cpu = ckpt.capture_rng_state(generator)
    assert cpu["cuda"] == [] and cpu["mps"] == []
    fake.set.clear()
    ckpt.restore_rng_state(cpu, generator)
    assert fake.set == []


def test_mps_stream_is_saved_and_restored(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: torch.full((2,), 9, dtype=torch.uint8))
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state: calls.append(state))
    generator = torch.Generator().manual_seed(1)
    state = ckpt.capture_rng_state(generator, torch.device("mps"))
    ckpt.restore_rng_state(state, generator, torch.device("mps"))
    assert len(calls) == 1 and torch.equal(calls[0], state["mps"])
