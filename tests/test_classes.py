"""Per-class activation maximization and the independent pixel classifier; the rule end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cnnpipe import ascent as A
from cnnpipe import classes as C
from cnnpipe.independent import fit_pixel_classifier
from cnnpipe.models import LectureCNN

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / ".test" / "config.yaml"


def tiny_cnn(classes: int = 4, size: int = 8, seed: int = 0) -> LectureCNN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LectureCNN(1, classes, size, conv_channels=(4, 8), hidden=(16,)).eval()


def config(**overrides) -> dict:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())["classes"]
    cfg.update(overrides)
    return cfg


def halves(n: int = 20, size: int = 4, seed: int = 0):
    """Class 0: bright left half, class 1: bright right half, plus a little noise."""
    rng = np.random.default_rng(seed)
    images = np.zeros((2 * n, 1, size, size))
    images[:n, :, :, : size // 2] = 1.0
    images[n:, :, :, size // 2 :] = 1.0
    images = np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1)
    return images, np.repeat([0, 1], n)


# --------------------------------------------------------------------------- independent classifier


@pytest.mark.parametrize("kind", ["logistic", "knn"])
def test_pixel_classifier_learns_a_hand_made_task(kind):
    images, labels = halves()
    clf = fit_pixel_classifier(images, labels, kind)
    left = np.zeros((1, 1, 4, 4))
    left[..., :2] = 1.0
    right = 1.0 - left
    assert clf.predict(np.concatenate([left, right])).tolist() == [0, 1]
    proba = clf.predict_proba(torch.from_numpy(left).float())
    assert proba.shape == (1, 2) and proba[0, 0] > 0.5 and np.isclose(proba.sum(), 1.0)
    assert clf.accuracy(images, labels) == 1.0


def test_uint8_images_are_scaled_and_every_class_gets_a_column():
    images, labels = halves()
    clf = fit_pixel_classifier((images * 255).round().astype(np.uint8), labels, "knn", num_classes=3)
    assert clf.class_means.shape == (3, 16)
    assert clf.class_means[0, 0] == pytest.approx(images[:20, 0, 0, 0].mean(), abs=1e-2)
    assert clf.predict_proba(images[:1]).shape == (1, 3)


def test_mean_image_correlation_by_hand():
    images, labels = halves()
    clf = fit_pixel_classifier(images, labels, "knn")
    mean0 = clf.class_means[0].reshape(1, 1, 4, 4)
    flat = np.full((1, 1, 4, 4), 0.5)
    r = clf.mean_image_correlation(np.concatenate([mean0, 1 - mean0, flat]), [0, 0, 0])
    assert r == pytest.approx([1.0, -1.0, 0.0], abs=1e-9)


def test_pixel_classifier_rejects_bad_input():
    images, labels = halves()
    with pytest.raises(ValueError, match="logistic"):
        fit_pixel_classifier(images, labels, "svm")
    with pytest.raises(ValueError, match="labels"):
        fit_pixel_classifier(images, labels[:3], "knn")
    clf = fit_pixel_classifier(images, labels, "knn")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clf.predict(images * 3)
    with pytest.raises(ValueError, match="fitted on"):
        clf.predict(np.zeros((1, 1, 5, 5)))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        clf.predict(np.zeros((4, 4)))


# --------------------------------------------------------------------------- variants


def test_variants_follow_the_slides():
    settings = C.variant_settings(config(l1_weight=0.3, tv_weight=0.0, regularized_l1_weight=0.05), (1, 8, 8))
    assert list(settings) == ["plain", "l1"] + ["regularized"]
    assert set(settings["plain"]) == {"param"}  # no transforms, no penalty: the slide
    assert settings["l1"]["regularizers"] == {"l1": 0.3}
    assert settings["plain"]["param"] is settings["l1"]["param"]  # same start noise
    reg = settings["regularized"]
    assert reg["regularizers"] == {"l1": 0.05}  # a zero TV weight is left out
    assert isinstance(reg["param"], A.FFTSpec)
    assert [type(t).__name__ for t in reg["transforms"]] == ["Jitter", "RandomAffine", "Jitter"]
    none = C.regularized_transforms(config(jitter=0.0, scale=0.0, degrees=0))
    assert none == []


def test_config_errors_name_the_key():
    cfg = config()
    del cfg["l1_weight"]
    with pytest.raises(KeyError, match="l1_weight"):
        C.check_config(cfg)
    with pytest.raises(ValueError, match="parameterization"):
        C.check_config(config(parameterization="wavelet"))


def test_l1_darkens_and_each_variant_raises_its_objective():
    model = tiny_cnn()
    cfg = config(steps=25, l1_weight=0.02, blur_every=0)
    images = C.visualize_classes(model, (1, 8, 8), cfg, seed=3, show_progress=False)
    assert list(images) == list(C.VARIANTS)
    start = A.pixel_image((1, 8, 8))(range(4), 3)().detach()
    with torch.no_grad():
        before = model(start).diagonal()
        for batch in images.values():
            assert batch.shape == (4, 1, 8, 8) and 0 <= batch.min() and batch.max() <= 1
        assert (model(images["plain"]).diagonal() > before).all()
        # The L1 variant maximizes y^i - lambda * sum|x|: that, not the logit alone, rises.
        l1_objective = model(images["l1"]).diagonal() - 0.02 * A.l1(images["l1"])
        assert (l1_objective > before - 0.02 * A.l1(start)).all()
    # The L1 term pulls pixels in [0, 1] towards black.
    assert images["l1"].mean() < images["plain"].mean() - 0.05
    again = C.visualize_classes(model, (1, 8, 8), cfg, seed=3, show_progress=False)
    assert all(torch.equal(images[k], again[k]) for k in images)


def test_summary_attainment_and_figure():
    model = tiny_cnn()
    images = C.visualize_classes(model, (1, 8, 8), config(steps=5), seed=0, show_progress=False)
    rng = np.random.default_rng(0)
    train = rng.random((40, 1, 8, 8))
    clf = fit_pixel_classifier(train, np.arange(40) % 4, "knn")
    names = ["a", "b", "c", "d"]
    summary = C.summarize(model, images, clf, names)
    assert list(summary.columns[:5]) == ["class", "variant", "logit", "probability", "independent_prediction"]
    assert len(summary) == 12 and set(summary["class"]) == set(names)
    assert summary["probability"].between(0, 1).all()
    counts = C.attainment(summary, {"independent_classifier": "knn"})
    for variant, numbers in counts["variants"].items():
        group = summary[summary["variant"] == variant]
        assert numbers["independent_correct"] == int((group["independent_prediction"] == group["class"]).sum())
        assert numbers["classes"] == 4
    reference = {"independent_classifier": "knn", "test_images_mean_image_correlation_median": 0.5}
    fig = C.classes_figure(images, summary, clf.class_means, names, config(steps=5), reference)
    assert len(fig.axes) == 1


# --------------------------------------------------------------------------- the rule


def snakemake(workdir: Path, *args: str) -> None:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
               str(workdir), "--configfile", str(TINY), "--cores", "2", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


OUTPUTS = ["results/classes/summary.csv", "results/classes/attainment.json", "results/classes/classes.png"]


@pytest.mark.e2e
def test_rule_end_to_end_and_byte_identical_rerun(tmp_path, tiny_config):
    snakemake(tmp_path, *OUTPUTS)
    summary = pd.read_csv(tmp_path / OUTPUTS[0], dtype={"class": str, "independent_prediction": str})
    assert list(summary.columns[:5]) == ["class", "variant", "logit", "probability", "independent_prediction"]
    assert len(summary) == 30 and set(summary["variant"]) == set(C.VARIANTS)
    counts = json.loads((tmp_path / OUTPUTS[1]).read_text())
    assert set(counts["variants"]) == set(C.VARIANTS)
    assert 0 <= counts["reference"]["independent_test_accuracy"] <= 1
    assert (tmp_path / OUTPUTS[2]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "pixel classifier" in (tmp_path / "results/logs/classes.log").read_text()
    # The rule's function again (one thread, as the rule runs it): the same bytes.
    again = tmp_path / "again"
    C.run_classes(
        tiny_config["classes"], seed=tiny_config["seed"], device_name="cpu", summary_csv=again / "summary.csv",
        attainment_json=again / "attainment.json", grid_png=again / "classes.png",
        model_path=tmp_path / "results/train/model.pt", data_path=tmp_path / "results/data/dataset.pt",
    )
    for name in OUTPUTS:
        assert (again / Path(name).name).read_bytes() == (tmp_path / name).read_bytes(), name


@pytest.mark.e2e
def test_rule_on_an_imagenet_backbone_needs_no_training(tmp_path):
    """With `backbone: efficientnet_lite0` the rule depends on no checkpoint or dataset, and
    visualizes the named ImageNet classes; ImageNet is not here, so there is no pixel judge."""
    override = tmp_path / "backbone.yaml"
    override.write_text(yaml.safe_dump({"classes": {
        "backbone": "efficientnet_lite0", "imagenet_classes": [1, 130], "image_size": 32, "steps": 3}}))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
               str(tmp_path), "--cores", "2", OUTPUTS[0], "--configfile", str(TINY), str(override)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "results/train").exists() and not (tmp_path / "results/data").exists()
    summary = pd.read_csv(tmp_path / OUTPUTS[0])
    assert summary["class"].unique().tolist() == ["goldfish", "flamingo"]
    assert summary["independent_prediction"].isna().all() and summary["mean_image_correlation"].isna().all()
    counts = json.loads((tmp_path / OUTPUTS[1]).read_text())
    assert counts["reference"] is None
    assert all("independent_correct" not in numbers for numbers in counts["variants"].values())
    assert "efficientnet_lite0, 2 classes on 3x32x32 images" in (tmp_path / "results/logs/classes.log").read_text()
