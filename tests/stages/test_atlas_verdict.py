"""Verdicts on class units' x*: equal to a direct computation, written by a chunk, shown on a page."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from cnnpipe.networks.lecture_cnn import LectureCNN
from cnnpipe.stages import atlas_chunk as chunk_stage
from cnnpipe.stages import atlas_verdict


def _digits_cnn() -> LectureCNN:
    torch.manual_seed(0)
    return LectureCNN(1, 10, 12, conv_channels=(4, 8), hidden=(16,)).eval()


def test_a_verdict_equals_the_direct_computation(tiny_cnn):
    model = tiny_cnn(size=8, fit_steps=15)
    images = torch.rand(2, 3, 1, 8, 8)  # 2 units x 3 members
    rows = atlas_verdict.class_verdicts("logits", [1, 3], images, [atlas_verdict.own_judge(model, "own")])
    shown = (images.flatten(0, 1) * 255).round() / 255
    with torch.no_grad():
        proba = torch.softmax(model(shown), dim=1).double()
    assert len(rows) == 6
    for i, row in enumerate(rows):
        unit = [1, 3][i // 3]
        assert (row["unit"], row["member"], row["judge"]) == (unit, i % 3, "own")
        assert row["top1"] == int(proba[i].argmax())
        assert row["top1_probability"] == pytest.approx(float(proba[i].max()), abs=1e-4)
        assert row["unit_rank"] == int((proba[i] > proba[i, unit]).sum())
        assert row["unit_probability"] == pytest.approx(float(proba[i, unit]), abs=1e-4)


def test_only_the_class_scores_are_class_units(tiny_cnn):
    model = tiny_cnn()
    assert atlas_verdict.is_class_layer(model, "logits")
    assert not atlas_verdict.is_class_layer(model, "fc_relu1")
    model.layer_aliases = {"logits": "classifier"}  # as a backbone's
    assert atlas_verdict.is_class_layer(model, "classifier") and not atlas_verdict.is_class_layer(model, "logits")


def test_a_chunk_writes_verdicts_for_its_class_units_only(tmp_path, monkeypatch, tiny_dataset):
    model = _digits_cnn()
    monkeypatch.setattr(chunk_stage, "load_network", lambda *args, **kwargs: (model, (1, 12, 12)))
    settings = {"backbone": "trained", "steps": 3, "lr": 0.05, "parameterization": "auto", "jitter": 0.0,
                "leak": 0.01, "memory_mb": 64, "diverse": 2, "diversity": 0.25}
    chunk_stage.run_atlas_chunk(["logits:2", "logits:7", "fc1:0"], settings, tmp_path, seed=0,
                                data_path=tiny_dataset["data"])
    with open(tmp_path / "verdicts.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert {r["layer"] for r in rows} == {"logits"}
    assert {r["judge"] for r in rows} == {"the network itself", "pixel classifier (logistic)"}
    assert len(rows) == 2 * 2 * 2  # units x members x judges
    # the network's own verdict on the PNG it wrote (8 bits: the same rounding)
    from PIL import Image

    strip = np.asarray(Image.open(tmp_path / "logits" / "7.png").convert("L"), dtype=np.float64) / 255
    tile = strip[:96:8, :96:8]  # x*, enlarged 8x (nearest) in the strip
    with torch.no_grad():
        proba = torch.softmax(model(torch.as_tensor(tile, dtype=torch.float32)[None, None]), dim=1)[0]
    own = next(r for r in rows if r["unit"] == "7" and r["member"] == "0" and r["judge"] == "the network itself")
    assert int(own["unit_rank"]) == int((proba > proba[7]).sum())
    assert float(own["unit_probability"]) == pytest.approx(float(proba[7]), abs=2e-3)


def test_auto_parameterization_is_pixel_for_the_trained_cnn_and_fft_otherwise():
    assert chunk_stage.resolve_parameterization("auto", "trained") == "pixel"
    assert chunk_stage.resolve_parameterization("auto", "efficientnet_lite0") == "fft"
    assert chunk_stage.resolve_parameterization("auto", {"arch": "resnet50"}) == "fft"
    assert chunk_stage.resolve_parameterization("pixel", "efficientnet_lite0") == "pixel"
