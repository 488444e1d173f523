"""Style transfer with softmax-smoothed features, and the independent judge that measures the
results: smoothing's gradients, the style distance's two fixed points, the content-kept rule,
the judge's columns in one job, and the refusal of a judge that is the generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from pipeline import snakemake
from test_style import TINY, TINY_LAYERS, smooth_image, tiny_net, write_png

from cnnpipe.io.images import load_image, pil_to_tensor
from cnnpipe.judges.imagenet import ImageNetJudge, content_kept, top_classes
from cnnpipe.judges.specs import check_judge, style_layers
from cnnpipe.judges.style_distance import style_distance
from cnnpipe.judges.style_verdict import judge_result
from cnnpipe.methods.style import losses, optimize
from cnnpipe.methods.style import targets as style_targets
from cnnpipe.networks.spec import parse_backbone
from cnnpipe.report import captions
from cnnpipe.stages import style


@pytest.fixture(scope="module")
def judge():
    return ImageNetJudge("efficientnet_lite1")


# --------------------------------------------------------------------------- smoothing


def test_smoothed_features_are_a_softmax_over_channels():
    features = torch.randn(2, 3, 4, 5)
    smoothed = losses.smooth_features(features, 0.5)
    assert smoothed.shape == features.shape
    # at every position the channels average 1, however large the activations there
    assert torch.allclose(smoothed.mean(1), torch.ones(2, 4, 5), atol=1e-6)
    assert torch.allclose(losses.smooth_features(features + 100, 0.5), smoothed, atol=1e-5)
    expected = torch.softmax(features / 0.5, dim=1) * 3
    assert torch.allclose(smoothed, expected, atol=1e-6)
    # equal channels give 1, and a large temperature flattens any features
    assert torch.allclose(losses.smooth_features(torch.full((1, 1, 3, 3), 7.0)), torch.ones(1, 1, 3, 3))
    assert float((losses.smooth_features(features, 1e4) - 1).abs().max()) < 1e-3


@pytest.mark.parametrize("channels_last", [False, True])
def test_smoothed_losses_pass_gradcheck(channels_last):
    """The fused Gram backward stays exact behind the softmax (float64, tiny tensors)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 4, 3, 5, generator=gen, dtype=torch.double)
    if channels_last:
        a = a.contiguous(memory_format=torch.channels_last)
    a.requires_grad_(True)
    other = torch.randn(1, 4, 3, 5, generator=gen, dtype=torch.double)
    gram_target = losses.gram_matrix(losses.smooth_features(other, 0.8))[0]
    content_target = losses.smooth_features(other, 0.8)[0]
    weights = torch.tensor([1.0, 2.5], dtype=torch.double)

    def loss(x):
        smoothed = losses.smooth_features(x, 0.8)
        return (losses.gram_loss(smoothed, gram_target)
                + 3.0 * losses.content_loss(smoothed, content_target)) * weights

    assert torch.autograd.gradcheck(loss, (a,))
    # and it equals plain autograd through the unfused Gram matrix
    plain = ((losses.gram_matrix(losses.smooth_features(a, 0.8)) - gram_target) ** 2).mean((1, 2))
    fused = losses.gram_loss(losses.smooth_features(a, 0.8), gram_target)
    expected = torch.autograd.grad((plain * weights).sum(), a)[0]
    assert torch.allclose(torch.autograd.grad((fused * weights).sum(), a)[0], expected, atol=1e-12)


def test_smoothed_targets_and_transfer():
    net = tiny_net()
    content, style_image = smooth_image(16, 24, 0), smooth_image(20, 12, 1)
    targets = style_targets.compute_targets(net, content, style_image, ["conv2"], ["conv1", "conv3"], pad=4,
                                             smoothing="softmax", temperature=0.5)
    assert set(targets.smooth_scale) == {"conv1", "conv2", "conv3"}
    weights = {"content_weight": 1.0, "style_weight": 1.0, "tv_weight": 0.0}
    # the content itself has zero content loss, smoothed too
    assert optimize.evaluate_losses(net, content, targets, weights)["content_loss"] == pytest.approx(0, abs=1e-9)
    result = optimize.transfer(net, content, style_image, **TINY_LAYERS, style_weight=10.0, steps=15,
                                     smoothing="softmax", temperature=0.5, progress=False)
    assert result.final["style_loss"] < 0.7 * result.initial["style_loss"]
    with pytest.raises(ValueError, match="style.smoothing must"):
        style_targets.compute_targets(net, content, style_image, ["conv2"], ["conv1"], smoothing="gauss")
    with pytest.raises(ValueError, match="style.smoothing_temperature"):
        style_targets.compute_targets(net, content, style_image, ["conv2"], ["conv1"], smoothing="softmax",
                                       temperature=0)


# --------------------------------------------------------------------------- the judge's measures


def test_style_distance_is_0_for_the_style_and_1_for_the_content(judge):
    content, style_image = smooth_image(40, 48, 0), smooth_image(36, 36, 1)
    assert list(style_layers(judge.spec)) == ["stem", "blocks.1", "blocks.2", "blocks.3", "blocks.5"]
    at_style = style_distance(judge, style_image, style_image, content)
    at_content = style_distance(judge, content, style_image, content)
    assert set(at_style) == {"stem", "blocks.1", "blocks.2", "blocks.3", "blocks.5", "mean"}
    assert all(value == 0 for value in at_style.values())
    assert all(value == pytest.approx(1.0) for value in at_content.values())
    between = style_distance(judge, 0.5 * (content + torch.nn.functional.interpolate(
        style_image[None], size=(40, 48), mode="bilinear")[0]), style_image, content)
    assert 0 < between["mean"] < 2


def test_content_kept_is_the_photos_top_1_in_the_results_top_5():
    photo = np.zeros(1000)
    photo[[3, 7]] = [0.6, 0.3]  # top-1: class 3
    result = np.linspace(0, 1, 1000)[::-1].copy()  # class 0 first, then 1, 2, ...
    assert content_kept(photo, result)  # class 3 is 4th
    result[3] = 0.0
    assert not content_kept(photo, result)  # now 1000th
    assert content_kept(photo[None], result[None], k=1000)
    assert top_classes(np.array([[0.1, 0.5, 0.4]]), 2).tolist() == [[1, 2]]


def test_judge_result_names_both_classes(judge):
    content, style_image = smooth_image(32, 32, 0), smooth_image(32, 32, 1)
    row = judge_result(judge, content, style_image, content)
    assert row["judge"] == "efficientnet_lite1" and row["style_distance"] == pytest.approx(1.0)
    assert row["content_kept"] is True and row["content_class"] == row["result_class"]
    assert isinstance(row["content_class"], str) and row["style_distance_blocks.5"] == pytest.approx(1.0)
    assert row["content_rank"] == 0 and 1 / 1000 <= row["content_probability"] <= 1


def test_judge_result_ranks_the_photos_class_in_the_result(judge):
    # a different picture: the photo's class is no longer top-1, and kept means rank < 5
    content, other = smooth_image(32, 32, 0), 1 - smooth_image(32, 32, 3)
    row = judge_result(judge, content, other, other)
    proba = judge.predict_proba(torch.stack([content, other]))
    first = int(np.argmax(proba[0]))
    assert row["content_probability"] == pytest.approx(float(proba[0, first]))
    assert row["content_rank"] == int((proba[1] > proba[1, first]).sum())
    assert row["content_kept"] == (row["content_rank"] < 5)


# --------------------------------------------------------------------------- the stage


SETTINGS = {"backbone": "efficientnet_lite0", "content_layers": [], "style_layers": [], "content_weight": 1.0,
            "style_weight": 10.0, "tv_weight": 1.0, "optimizer": "lbfgs", "steps": 3, "lr": None,
            "init": "content", "preserve_color": False, "smoothing": "softmax", "smoothing_temperature": 1.0,
            "judge": "efficientnet_lite1", "image_size": 32, "style_scale": 1.0}


def test_run_pair_writes_the_judges_columns(tmp_path):
    content_png = write_png(tmp_path / "c.png", height=24, width=32)
    style_png = write_png(tmp_path / "s.png", height=32, width=32, seed=2)
    outputs = dict(output_image=tmp_path / "x.png", output_figure=tmp_path / "fig.png", output_csv=tmp_path / "x.csv")
    style.run_pair(content_png, style_png, SETTINGS, device="cpu", progress=False, **outputs)
    row = pd.read_csv(tmp_path / "x.csv").iloc[0]
    assert row["judge"] == "efficientnet_lite1" and row["smoothing"] == "softmax (T = 1)"
    assert 0 <= row["style_distance"] < 5 and row["content_kept"] in (True, False)
    assert isinstance(row["content_class"], str) and isinstance(row["result_class"], str)
    assert 0 <= row["content_rank"] < 1000 and row["content_kept"] == (row["content_rank"] < 5)
    assert 0 < row["content_probability"] <= 1
    # without a judge the columns stay, empty
    style.run_pair(content_png, style_png, {**SETTINGS, "judge": None, "smoothing": "none"}, device="cpu",
                   progress=False, **outputs)
    row = pd.read_csv(tmp_path / "x.csv").iloc[0]
    assert row["smoothing"] == "none" and pd.isna(row["judge"]) and pd.isna(row["style_distance"])
    assert pd.isna(row["content_rank"]) and pd.isna(row["content_probability"])


def test_a_judge_that_is_the_generator_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"style\.judge: 'efficientnet_lite0' is the network"):
        check_judge("style", "efficientnet_lite0", "efficientnet_lite0")
    content_png = write_png(tmp_path / "c.png")
    with pytest.raises(ValueError, match=r"style\.judge"):
        style.run_pair(content_png, content_png, {**SETTINGS, "judge": "efficientnet_lite0"}, device="cpu",
                       progress=False, output_image=tmp_path / "x.png", output_figure=tmp_path / "f.png",
                       output_csv=tmp_path / "x.csv")
    assert not (tmp_path / "x.png").exists()  # refused before any work
    assert style_layers(parse_backbone("resnet50", "style.judge")) == ()


def test_the_workflow_refuses_the_generator_as_judge(tmp_path):
    tiny = yaml.safe_load(TINY.read_text())["style"]
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"style": {**tiny, "judge": "efficientnet_lite0"}}))
    run = snakemake(tmp_path, "--dry-run", "results/style/chelsea__ihc.png", configfiles=(TINY, override),
                    check=False)
    assert run.returncode != 0
    assert "style.judge: 'efficientnet_lite0' is the network" in run.stdout + run.stderr
    override.write_text(yaml.safe_dump({"style": {**tiny, "smoothing": "gauss"}}))
    run = snakemake(tmp_path, "--dry-run", "results/style/chelsea__ihc.png", configfiles=(TINY, override),
                    check=False)
    assert run.returncode != 0 and "gauss" in run.stdout + run.stderr


def test_a_generator_of_other_classes_keeps_the_style_judge(tmp_path):
    """The judge measures style and content (its own classes for the photo and the result),
    which do not depend on the generator's classes: a 5-class backbone keeps it (issue 26,
    item 6: the judge's columns were empty, without a word)."""
    import torchvision

    weights = tmp_path / "five.pt"
    torch.save(torchvision.models.resnet18(num_classes=5).state_dict(), weights)
    generator = {"arch": "resnet18", "weights": str(weights), "num_classes": 5}
    assert check_judge("style", "efficientnet_lite1", generator).arch == "efficientnet_lite1"
    assert check_judge("classes", "efficientnet_lite1", generator) is None  # images made for 5 classes
    content_png = write_png(tmp_path / "c.png", height=24, width=32)
    style_png = write_png(tmp_path / "s.png", height=32, width=32, seed=2)
    settings = {**SETTINGS, "backbone": generator, "content_layers": ["layer3"], "style_layers": ["layer1", "layer2"],
                "smoothing": "none"}
    outputs = dict(output_image=tmp_path / "x.png", output_figure=tmp_path / "fig.png", output_csv=tmp_path / "x.csv")
    style.run_pair(content_png, style_png, settings, device="cpu", progress=False, **outputs)
    row = pd.read_csv(tmp_path / "x.csv").iloc[0]
    assert row["judge"] == "efficientnet_lite1" and 0 <= row["style_distance"] < 5
    assert isinstance(row["content_class"], str) and row["content_kept"] in (True, False)
    assert np.isfinite(row["content_retention"]) and "judges" not in row  # one judge: no per-judge columns
    # Two judges (Lite1 and Lite0, neither the generator): the headline is their mean, each one's columns follow.
    style.run_pair(content_png, style_png, {**settings, "judge": ["efficientnet_lite1", "efficientnet_lite0"]},
                   device="cpu", progress=False, **outputs)
    row = pd.read_csv(tmp_path / "x.csv").iloc[0]
    assert row["judge"] == "efficientnet_lite1 + efficientnet_lite0" and row["judges"] == 2
    for measure in ("style_distance", "content_retention"):
        each = [row[f"{measure}__{slug}"] for slug in ("efficientnet_lite1", "efficientnet_lite0")]
        assert row[measure] == pytest.approx(np.mean(each), abs=1e-6)
    kept = [bool(row[f"content_kept__{slug}"]) for slug in ("efficientnet_lite1", "efficientnet_lite0")]
    assert row["content_kept_judges"] == sum(kept) and bool(row["content_kept"]) == all(kept)
    # Lite1's columns are what Lite1 alone measured on the same PNG
    content, style_image = style.load_pair(content_png, style_png, settings["image_size"], settings["style_scale"])
    alone = judge_result(ImageNetJudge("efficientnet_lite1"), content, style_image,
                         pil_to_tensor(load_image(tmp_path / "x.png")))
    assert row["style_distance__efficientnet_lite1"] == pytest.approx(alone["style_distance"], rel=1e-5)
    assert row["content_retention__efficientnet_lite1"] == pytest.approx(alone["content_retention"], abs=1e-5)
    caption = captions.style_key_numbers(tmp_path / "x.csv")
    assert "The 2 judges, efficientnet\\_lite1, efficientnet\\_lite0, each trained separately" in caption[2]
    assert f"content retention **{row['content_retention']:.2f}**" in caption[2]
    assert caption[3].startswith("efficientnet\\_lite1: content retention **") and len(caption) == 5
