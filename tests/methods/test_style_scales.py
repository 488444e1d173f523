"""Style transfer as people use it (issue 14): multiscale generation, the style scale, blended
styles, the L-BFGS history setting, and their parse-time checks."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_style import tiny_net
from torch import nn

from cnnpipe.judges.style_distance import gram_matrices, style_distance
from cnnpipe.methods.style import configured, optimize
from cnnpipe.methods.style import names as style_names
from cnnpipe.methods.style import targets as style_targets
from cnnpipe.stages import style
from cnnpipe.workflow import style_pairs as workflow_style_pairs

PHOTOS = ["astronaut", "chelsea", "coffee", "hubble_deep_field", "ihc", "rocket"]


def pixel_net() -> nn.Sequential:
    """A 1x1 identity convolution: its features are the pixels, so Gram matrices are by hand
    the mean over pixels of x_p x_p^T / 3."""
    conv = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    return nn.Sequential(OrderedDict(pixels=conv)).eval().requires_grad_(False)


def write_png(path: Path, height: int, width: int, seed: int = 0, noise: bool = False) -> Path:
    """A smooth colourful image, or (noise) one of independent random pixels."""
    gen = torch.Generator().manual_seed(seed)
    if noise:
        image = torch.rand(3, height, width, generator=gen)
    else:
        small = torch.rand(1, 3, max(2, height // 4), max(2, width // 4), generator=gen)
        image = torch.nn.functional.interpolate(small, size=(height, width), mode="bilinear",
                                                align_corners=False)[0]
    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


OPTIONS = dict(content_layers=["relu2"], style_layers=["relu1", "relu2"], content_weight=1.0,
               style_weight=10.0, tv_weight=1.0, optimizer="lbfgs", progress=False)


@pytest.fixture
def pair_files(tmp_path):
    return write_png(tmp_path / "content.png", 30, 40, seed=1), write_png(tmp_path / "style.png", 50, 36, seed=2)


# --------------------------------------------------------------------------- multiscale


def test_multiscale_ends_at_the_last_size_and_records_every_scale(pair_files):
    content_png, style_png = pair_files
    sizes = []

    def images_at(size):
        sizes.append(size)
        return style.load_pair(content_png, style_png, size)

    result = optimize.transfer_multiscale(tiny_net(), images_at, [16, 24, 40], steps=[6, 4, 3], **OPTIONS)
    assert sizes == [16, 24, 40]  # content and style read afresh at each size
    assert tuple(result.image.shape) == (3, 30, 40)
    assert [(s["size"], s["height"], s["width"]) for s in result.scales] == [(16, 12, 16), (24, 18, 24),
                                                                             (40, 30, 40)]
    assert [s["evaluations"] for s in result.scales] == [6, 4, 3]
    assert len(result.history) == 13
    assert result.final == result.scales[-1]["final"]
    assert result.initial == result.scales[0]["initial"]
    # every scale lowers its own loss
    for scale in result.scales:
        assert scale["final"]["total_loss"] < scale["initial"]["total_loss"]
    columns = configured.scale_columns(result)
    assert columns["scale1_size"] == 16 and columns["scale3_size"] == 40
    assert columns["scale2_style_loss_final"] == result.scales[1]["final"]["style_loss"]
    assert len(columns) == 3 * (2 + 4 * 2)


def test_each_scale_starts_from_the_previous_result_upscaled(pair_files):
    content_png, style_png = pair_files
    seen = {}
    # the last scale makes no step: its result is its start image
    result = optimize.transfer_multiscale(
        tiny_net(), lambda size: style.load_pair(content_png, style_png, size), [20, 40], steps=[8, 0],
        on_scale=lambda index, r: seen.setdefault(index, r.image), **OPTIONS)
    expected = optimize.upscale(seen[0], (30, 40))
    assert torch.equal(result.image, expected)
    content = style.load_pair(content_png, style_png, 40)[0]
    # ... which is not the content image: the first scale's style shows through
    assert (result.image - content).abs().mean() > 0.01
    # and the upscaled start scores better on style than the content photo at that scale
    assert result.scales[1]["initial"]["style_loss"] < result.scales[0]["initial"]["style_loss"]


def test_upscale_is_bicubic_and_stays_in_range():
    image = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    up = optimize.upscale(image, (10, 14))
    reference = torch.nn.functional.interpolate(image[None], size=(10, 14), mode="bicubic",
                                                align_corners=False)[0].clamp(0, 1)
    assert torch.equal(up, reference)
    assert float(up.min()) >= 0 and float(up.max()) <= 1
    assert optimize.upscale(image, (5, 7)) is image or torch.equal(optimize.upscale(image, (5, 7)), image)


def test_multiscale_reruns_are_byte_identical(pair_files):
    content_png, style_png = pair_files

    def run():
        return optimize.transfer_multiscale(
            tiny_net(), lambda size: style.load_pair(content_png, style_png, size), [16, 32], steps=5, **OPTIONS)

    first, second = run(), run()
    assert torch.equal(first.image, second.image)
    assert torch.equal(first.history, second.history)
    assert configured.scale_columns(first) == configured.scale_columns(second)


@pytest.mark.parametrize("sizes, steps, message", [
    ([32, 16], 5, "must grow"),
    ([], 5, "list of integers"),
    ([16, 32], [5], "one per size"),
    ([16, 32], [5, -1], "one per size"),
])
def test_multiscale_refuses_bad_schedules(pair_files, sizes, steps, message):
    content_png, style_png = pair_files
    with pytest.raises(ValueError, match=message):
        optimize.transfer_multiscale(
            tiny_net(), lambda size: style.load_pair(content_png, style_png, size), sizes, steps=steps, **OPTIONS)


def test_transfer_configured_reads_the_style_section(pair_files):
    content_png, style_png = pair_files
    settings = {"content_layers": ["relu2"], "style_layers": ["relu1"], "content_weight": 1.0,
                "style_weight": 10.0, "tv_weight": 0.0, "optimizer": "lbfgs", "steps": [4, 2], "lr": None,
                "init": "content", "preserve_color": False, "smoothing": "none", "smoothing_temperature": 1.0,
                "image_size": 32, "sizes": [16, 32], "style_scale": 1.0, "lbfgs_history": 5}
    result = configured.transfer_configured(
        tiny_net(), lambda size: style.load_pair(content_png, style_png, size), settings, progress=False)
    assert [s["evaluations"] for s in result.scales] == [4, 2]
    assert tuple(result.image.shape[-2:]) == (24, 32)
    single = configured.transfer_configured(
        tiny_net(), lambda size: style.load_pair(content_png, style_png, size),
        {**settings, "sizes": None, "steps": 3}, progress=False)
    assert tuple(single.image.shape[-2:]) == (24, 32) and len(single.history) == 3


# --------------------------------------------------------------------------- L-BFGS history


def test_lbfgs_history_reaches_the_optimizer(monkeypatch, pair_files):
    content_png, style_png = pair_files
    content, style_image = style.load_pair(content_png, style_png, 24)
    sizes = []
    original = torch.optim.LBFGS

    class Recording(original):
        def __init__(self, *args, **kwargs):
            sizes.append(kwargs.get("history_size"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "LBFGS", Recording)
    optimize.transfer(tiny_net(), content, style_image, steps=3, lbfgs_history=3, **OPTIONS)
    optimize.transfer(tiny_net(), content, style_image, steps=3, **OPTIONS)
    assert sizes == [3, 20]
    with pytest.raises(ValueError, match="style.lbfgs_history"):
        optimize.transfer(tiny_net(), content, style_image, steps=3, lbfgs_history=0, **OPTIONS)


# --------------------------------------------------------------------------- style scale


def test_style_scale_changes_the_gram_target_as_computed_by_hand(tmp_path):
    content_png = write_png(tmp_path / "content.png", 30, 40, seed=1)
    # independent random pixels: shrinking averages them, so the Gram matrix moves towards
    # mean x mean^T; enlarging keeps their spread
    style_png = write_png(tmp_path / "style.png", 40, 60, seed=2, noise=True)
    net = pixel_net()
    grams = {}
    for scale in (0.5, 1.0, 2.0):
        content, style_image = style.load_pair(content_png, style_png, 40, scale)
        # by hand: the content is 40 x 30 = 1200 px; the style (60 x 40, 2400 px) gets
        # 1200 * scale^2 px with its aspect 3:2, i.e. factor sqrt(1200 * scale^2 / 2400)
        factor = (1200 * scale**2 / 2400) ** 0.5
        assert tuple(style_image.shape) == (3, round(40 * factor), round(60 * factor))
        expected = np.asarray(Image.open(style_png).convert("RGB").resize(
            (round(60 * factor), round(40 * factor)), Image.Resampling.LANCZOS), dtype=np.float64) / 255
        pixels = expected.reshape(-1, 3)
        by_hand = pixels.T @ pixels / pixels.size  # F F^T / (C H W) with F the pixels
        targets = style_targets.compute_targets(net, content, style_image, ["pixels"], ["pixels"], relative=False)
        assert np.allclose(targets.style["pixels"].double().numpy(), by_hand, atol=1e-6)
        grams[scale] = by_hand
    # smaller style image: less spread (the diagonal's second moments shrink)
    assert np.trace(grams[0.5]) < np.trace(grams[1.0]) - 0.01
    assert not np.allclose(grams[1.0], grams[2.0], atol=1e-3)


# --------------------------------------------------------------------------- blends


def test_blend_targets_are_the_weighted_mean_of_the_gram_matrices():
    net = pixel_net()
    content = torch.full((3, 6, 8), 0.5)
    colours = [torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0.2, 0.8, 0.4])]
    # plain colour images of different sizes: each Gram matrix is c c^T / 3 by hand
    images = [colours[0].view(3, 1, 1).expand(3, 5, 7).clone(), colours[1].view(3, 1, 1).expand(3, 9, 4).clone()]
    by_hand = (0.25 * torch.outer(colours[0], colours[0]) + 0.75 * torch.outer(colours[1], colours[1])) / 3
    for weights in ([0.25, 0.75], [1, 3]):  # weights are normalized to sum 1
        targets = style_targets.compute_targets(net, content, images, ["pixels"], ["pixels"], relative=False,
                                                 style_weights=weights)
        assert torch.allclose(targets.style["pixels"], by_hand, atol=1e-6)
    # the weighted mean of what each image alone gives, on a real network too
    net, gen = tiny_net(), torch.Generator().manual_seed(0)
    images = [torch.rand(3, 20, 24, generator=gen), torch.rand(3, 16, 30, generator=gen)]
    alone = [style_targets.compute_targets(net, content, image, ["relu2"], ["relu1", "relu2"]).style
             for image in images]
    blend = style_targets.compute_targets(net, content, images, ["relu2"], ["relu1", "relu2"],
                                           style_weights=[0.3, 0.7]).style
    for layer in ("relu1", "relu2"):
        assert torch.allclose(blend[layer], 0.3 * alone[0][layer] + 0.7 * alone[1][layer], rtol=1e-5, atol=1e-7)
    # a blend of one image is that image's target, bit for bit
    one = style_targets.compute_targets(net, content, [images[0]], ["relu2"], ["relu1"], style_weights=[5]).style
    assert torch.equal(one["relu1"], alone[0]["relu1"])


@pytest.mark.parametrize("weights", [[0.5, -0.5], [0, 1], [True, 1], [float("nan"), 1], [1]])
def test_blend_weights_must_be_positive_and_one_per_image(weights):
    with pytest.raises(ValueError, match="style blend"):
        style_names.blend_weights(weights, 2)


def test_blend_transfer_and_load_pair_with_several_styles(tmp_path):
    content_png = write_png(tmp_path / "c.png", 30, 40, seed=1)
    styles = [write_png(tmp_path / "a.png", 20, 20, seed=2), write_png(tmp_path / "b.png", 60, 30, seed=3)]
    content, images = style.load_pair(content_png, styles, 40, 1.0)
    assert isinstance(images, list) and len(images) == 2
    # each style image gets the content's area (1200 px) with its own aspect
    assert [tuple(i.shape) for i in images] == [(3, 35, 35), (3, 49, 24)]
    result = optimize.transfer(tiny_net(), content, images, style_weights=[0.7, 0.3], steps=6, **OPTIONS)
    assert result.final["style_loss"] < result.initial["style_loss"]


def _png(tmp_path, name):
    return str(write_png(tmp_path / name, 20, 20))


def test_style_pairs_name_and_weigh_blends(tmp_path):
    starry, scream = _png(tmp_path, "starry.png"), _png(tmp_path, "scream.png")
    settings = {"pairs": [{"content": "chelsea", "style": {starry: 0.7, scream: 0.3}},
                          {"content": "chelsea", "style": [{starry: 7}, {scream: 3}]},
                          {"content": "chelsea", "style": [starry, scream]},
                          {"content": "chelsea", "style": "ihc"}]}
    pairs = workflow_style_pairs.style_pairs(settings, sample_photos=PHOTOS)
    # the same blend twice (weights normalized) is one job
    assert list(pairs) == ["chelsea__starry70+scream30", "chelsea__starry+scream", "chelsea__ihc"]
    blend = pairs["chelsea__starry70+scream30"]
    assert blend == ("results/photos/chelsea.png", (starry, scream))
    assert blend.styles == (starry, scream) and blend.weights == pytest.approx((0.7, 0.3))
    assert pairs["chelsea__starry+scream"].weights == (0.5, 0.5)
    single = pairs["chelsea__ihc"]
    assert single == ("results/photos/chelsea.png", "results/photos/ihc.png")
    assert single.styles == ("results/photos/ihc.png",) and single.weights == (1.0,)
    assert style_names.blend_label(blend.styles, blend.weights) == "70% 'starry' + 30% 'scream'"
    assert style_names.blend_label(single.styles) == "'ihc'"


@pytest.mark.parametrize("style_value, message", [
    ({"STARRY": -0.5, "ihc": 1}, r"style.pairs\[0\].style.STARRY: a style's weight must be a positive number"),
    ({"STARRY": 0, "ihc": 1}, r"style.pairs\[0\].style.STARRY: .*positive"),
    ({"STARRY": "lots", "ihc": 1}, r"style.pairs\[0\].style.STARRY: .*'lots'"),
    ([{"ihc": 0.5}, {"STARRY": True}], r"style.pairs\[0\].style\[1\].STARRY: .*True"),
    ({"nope.png": 0.5, "ihc": 0.5}, r"style.pairs\[0\].style.nope.png: 'nope.png' is neither"),
    (["ihc", "missing.jpg"], r"style.pairs\[0\].style\[1\]: 'missing.jpg' is neither"),
    ({}, r"style.pairs\[0\].style: no style image"),
    (["ihc", ["x"]], r"style.pairs\[0\].style\[1\]: expected a style image"),
    (["ihc", {"ihc": 2}], r"style.pairs\[0\].style: a style image appears twice"),
])
def test_bad_blends_stop_at_parse_time_naming_the_key(tmp_path, style_value, message):
    starry = _png(tmp_path, "starry.png")
    if isinstance(style_value, dict):
        style_value = {starry if k == "STARRY" else k: v for k, v in style_value.items()}
        message = message.replace("STARRY", re.escape(starry))
    else:
        style_value = [{starry if k == "STARRY" else k: v for k, v in item.items()} if isinstance(item, dict)
                       else item for item in style_value]
        message = message.replace("STARRY", re.escape(starry))
    with pytest.raises(ValueError, match=message):
        workflow_style_pairs.style_pairs({"pairs": [{"content": "chelsea", "style": style_value}]}, sample_photos=PHOTOS)


@pytest.mark.parametrize("settings, message", [
    ({"image_size": 512, "sizes": [256, 1024]}, "must equal style.image_size"),
    ({"image_size": 512, "sizes": [512, 256]}, "must grow"),
    ({"image_size": 512, "sizes": [4, 512]}, "integers >= 8"),
    ({"image_size": 512, "sizes": "256"}, "style.sizes"),
    ({"image_size": 512, "sizes": [256, 512], "steps": [10, 20, 30]}, "style.steps: 3 step counts for 2 sizes"),
])
def test_style_sizes_errors_name_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        workflow_style_pairs.style_sizes(settings)


def test_style_sizes():
    assert workflow_style_pairs.style_sizes({"image_size": 256, "sizes": None}) == [256]
    assert workflow_style_pairs.style_sizes({"image_size": 1024, "sizes": [256, 512, 1024], "steps": [3, 2, 1]}) == [256, 512, 1024]


def test_the_judge_measures_a_blend_against_the_weighted_mean_gram():
    from cnnpipe.judges.imagenet import ImageNetJudge
    from cnnpipe.judges.specs import style_layers

    judge = ImageNetJudge("efficientnet_lite1")
    gen = torch.Generator().manual_seed(0)
    content, first, second, result = (torch.rand(3, 32, 40, generator=gen) for _ in range(4))
    layers = list(style_layers(judge.spec))
    # a blend of one image twice is that image
    assert style_distance(judge, result, [first, first], content) == style_distance(judge, result, first, content)
    got = style_distance(judge, result, [first, second], content, weights=[1, 3])
    grams = {name: gram_matrices(judge, image, layers) for name, image in
             (("result", result), ("content", content), ("first", first), ("second", second))}
    for i, layer in enumerate(layers):
        target = 0.25 * grams["first"][i] + 0.75 * grams["second"][i]
        expected = float((grams["result"][i] - target).square().mean()) / float(
            (grams["content"][i] - target).square().mean())
        assert got[layer] == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------- in the pipeline


@pytest.mark.e2e
def test_a_blended_multiscale_pair_through_the_workflow(tmp_path):
    """One pair with a 70/30 blend of two styles at sizes 16 -> 32: the job names the pair
    after the blend, writes a 32 px result, both scales' losses, and a caption and figure that
    say it is a blend; the judge measures against the blend."""
    import pandas as pd
    import yaml
    from pipeline import TINY, snakemake

    content = write_png(tmp_path / "images" / "c.png", 24, 30, seed=1)
    first = write_png(tmp_path / "images" / "red.png", 20, 20, seed=2)
    second = write_png(tmp_path / "images" / "stripes.png", 20, 28, seed=3, noise=True)
    tiny = yaml.safe_load(TINY.read_text())["style"]
    override = tmp_path / "blend.yaml"
    override.write_text(yaml.safe_dump({"style": {
        **tiny, "image_size": 32, "sizes": [16, 32], "steps": [3, 2], "per_job": 1,
        "pairs": [{"content": str(content), "style": {str(first): 7, str(second): 3}}]}}))
    name = "c__red70+stripes30"
    work = tmp_path / "work"
    snakemake(work, "--cores", "1", f"results/style/{name}.png", configfiles=(TINY, override))
    results = work / "results"
    with Image.open(results / "style" / f"{name}.png") as image:
        assert max(image.size) == 32
    row = pd.read_csv(results / "style" / "losses" / f"{name}.csv").iloc[0]
    assert row["style"] == "red70+stripes30"
    assert (row["scale1_size"], row["scale2_size"]) == (16, 32)
    assert (row["scale1_evaluations"], row["scale2_evaluations"]) == (3, 2)
    assert row["style_distance"] >= 0 and isinstance(row["judge"], str)
    caption = (results / "captions" / "style" / f"{name}.rst").read_text()
    assert "style of red70\\+stripes30" in caption and "3 + 2 at sizes 16 -> 32 px" in caption
    log = (results / "logs" / "style" / f"{name}.log").read_text()
    assert "weight 0.7" in log and "weight 0.3" in log
