"""Training: learning, determinism, exact resume after SIGKILL, outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from cnnpipe.networks import checkpoint as ckpt
from cnnpipe.stages.train import fingerprint, make_optimizer, make_scheduler, run_training


def train_into(folder, tiny_dataset, tiny_config, **overrides):
    train_cfg = {**tiny_config["train"], **overrides}
    outputs = {
        "model_path": folder / "model.pt",
        "metrics_csv": folder / "metrics.csv",
        "eval_json": folder / "eval.json",
        "curve_png": folder / "curve.png",
        "confusion_png": folder / "confusion.png",
    }
    summary = run_training(
        data_path=tiny_dataset["data"],
        manifest_path=tiny_dataset["manifest"],
        model_cfg=tiny_config["model"],
        train_cfg=train_cfg,
        seed=tiny_config["seed"],
        device_name="cpu",
        checkpoint_dir=folder / "checkpoints",
        show_progress=False,
        **outputs,
    )
    return summary, outputs


def test_training_learns_and_writes_every_output(tmp_path, tiny_dataset, tiny_config):
    summary, outputs = train_into(tmp_path, tiny_dataset, tiny_config, epochs=4)
    for path in outputs.values():
        assert path.stat().st_size > 0, path
    metrics = pd.read_csv(outputs["metrics_csv"])
    assert list(metrics["epoch"]) == [1, 2, 3, 4]
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]
    assert summary["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    evaluation = json.loads(outputs["eval_json"].read_text())
    assert evaluation["test_accuracy"] == metrics["test_accuracy"].iloc[-1]
    # The written checkpoint, asked again about every test image: the accuracy reported.
    from cnnpipe.data.prepare import load_prepared

    data = load_prepared(tiny_dataset["data"])
    with torch.no_grad():
        predicted = ckpt.load_model(outputs["model_path"])(data["test_images"].float() / 255).argmax(dim=1)
    assert evaluation["test_accuracy"] == pytest.approx(float((predicted == data["test_labels"]).double().mean()),
                                                        abs=1e-6)
    assert sum(map(sum, evaluation["confusion_matrix"])) == json.loads(tiny_dataset["manifest"].read_text())["counts"]["test"]
    state = torch.load(outputs["model_path"], weights_only=True)
    for key in ckpt.REQUIRED_KEYS:
        assert key in state
    assert state["epoch"] == 4 and state["classes"] == [str(i) for i in range(10)]


def test_two_runs_are_byte_identical(tmp_path, tiny_dataset, tiny_config):
    _, first = train_into(tmp_path / "a", tiny_dataset, tiny_config)
    _, second = train_into(tmp_path / "b", tiny_dataset, tiny_config)
    for key in ("model_path", "metrics_csv", "eval_json", "curve_png", "confusion_png"):
        assert first[key].read_bytes() == second[key].read_bytes(), key


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path, tiny_dataset, tiny_config):
    train_into(tmp_path, tiny_dataset, tiny_config, epochs=1)
    summary, outputs = train_into(tmp_path, tiny_dataset, tiny_config, epochs=2, lr=0.02)
    metrics = pd.read_csv(outputs["metrics_csv"])
    assert list(metrics["epoch"]) == [1, 2]
    reference, ref_outputs = train_into(tmp_path / "fresh", tiny_dataset, tiny_config, epochs=2, lr=0.02)
    assert outputs["model_path"].read_bytes() == ref_outputs["model_path"].read_bytes()


KILL_SCRIPT = """
import sys, torch
from pathlib import Path
from cnnpipe.stages.train import run_training
folder = Path(sys.argv[1])
run_training(data_path=sys.argv[2], manifest_path=sys.argv[3],
             model_cfg={"conv_channels": [16, 32], "kernel_size": 3, "hidden": [64], "dropout": 0.1,
                        "batch_norm": False},
             train_cfg={"epochs": 12, "batch_size": 16, "optimizer": "adamw", "lr": 0.003,
                        "weight_decay": 0.0, "scheduler": "onecycle", "amp": False},
             seed=0, device_name="cpu", checkpoint_dir=folder / "checkpoints",
             model_path=folder / "model.pt", metrics_csv=folder / "metrics.csv",
             eval_json=folder / "eval.json", curve_png=folder / "curve.png",
             confusion_png=folder / "confusion.png", show_progress=False)
"""


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_to_the_same_weights(tmp_path, tiny_dataset):
    """A training process killed with SIGKILL resumes from its last completed epoch and ends
    with exactly the checkpoint an uninterrupted run writes."""
    args = [str(tiny_dataset["data"]), str(tiny_dataset["manifest"])]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(killed), *args], env=env)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "training finished before it could be killed"
    done_before_kill = ckpt.load_checkpoint(last)["epoch"]
    assert 1 <= done_before_kill < 12
    assert not (killed / "model.pt").exists()

    subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(killed), *args], env=env, check=True)
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(whole), *args], env=env, check=True)
    assert (killed / "model.pt").read_bytes() == (whole / "model.pt").read_bytes()
    assert (killed / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()


def test_schedulers_and_optimizers_cover_the_config_choices():
    model = torch.nn.Linear(2, 2)
    for name in ("adamw", "adam", "sgd", "adadelta"):
        for scheduler_name in ("onecycle", "cosine", "step", "none"):
            optimizer = make_optimizer(model.parameters(), {"optimizer": name, "lr": 0.1})
            scheduler = make_scheduler(optimizer, {"scheduler": scheduler_name, "epochs": 2, "lr": 0.1}, 3)
            model(torch.ones(1, 2)).sum().backward()
            optimizer.step()
            scheduler.step()
            assert scheduler.get_last_lr()[0] > 0
    with pytest.raises(ValueError, match="train.optimizer"):
        make_optimizer(model.parameters(), {"optimizer": "rmsprop", "lr": 0.1})


def test_fingerprint_changes_with_every_setting():
    base = fingerprint({"a": 1}, {"epochs": 2}, 0, torch.device("cpu"), "hash")
    assert base == fingerprint({"a": 1}, {"epochs": 2}, 0, torch.device("cpu"), "hash")
    assert base != fingerprint({"a": 1}, {"epochs": 3}, 0, torch.device("cpu"), "hash")
    assert base != fingerprint({"a": 1}, {"epochs": 2}, 1, torch.device("cpu"), "hash")
    assert base != fingerprint({"a": 1}, {"epochs": 2}, 0, torch.device("cpu"), "other")


def test_mixed_precision_only_on_gpus_that_run_bfloat16_natively(monkeypatch):
    from cnnpipe.stages.train import use_amp

    asked = []

    def supported(including_emulation=True):
        asked.append(including_emulation)
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    cuda = torch.device("cuda")
    for native in (True, False):
        assert use_amp(cuda, True) is native
        assert use_amp(cuda, False) is False
    assert asked == [False, False]  # emulated bfloat16 (slower than float32) does not count
    assert use_amp(torch.device("cpu"), True) is False and use_amp(torch.device("mps"), True) is False
