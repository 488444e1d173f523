"""The style's palette given to the photo before the transfer (style.style_colors)."""

from __future__ import annotations

import pytest
import torch
from test_style import TINY_LAYERS, smooth_image, tiny_net

from cnnpipe.methods.style import optimize
from cnnpipe.methods.style.colors import match_colors


def test_the_photo_takes_the_styles_colour_statistics_and_keeps_its_layout():
    content = smooth_image(48, 64, 0)
    style = (0.2 * smooth_image(40, 40, 1) + torch.tensor([0.05, 0.3, 0.6])[:, None, None]).clamp(0, 1)
    matched = match_colors(content, style)
    assert matched.shape == content.shape and matched.dtype == content.dtype
    for ours, theirs in zip(matched.reshape(3, -1), style.reshape(3, -1)):
        assert abs(float(ours.mean() - theirs.mean())) < 0.01
        assert abs(float(ours.std() - theirs.std())) < 0.01
    assert float((content.mean((1, 2)) - style.mean((1, 2))).abs().max()) > 0.1  # it did move
    # Along the style's first principal axis the photo's brightness order is kept.
    _, axes = torch.linalg.eigh(torch.cov(style.reshape(3, -1).double()))
    before = content.reshape(3, -1).T.double() @ axes[:, -1]
    after = matched.reshape(3, -1).T.double() @ axes[:, -1]
    rank = lambda v: v.argsort().argsort().double()  # noqa: E731
    assert torch.corrcoef(torch.stack([rank(before), rank(after)]))[0, 1] > 0.95


def test_a_photo_matched_to_itself_is_unchanged_and_a_blend_pools_its_styles():
    content = smooth_image(32, 32, 2)
    assert torch.allclose(match_colors(content, content), content, atol=1e-5)
    assert torch.allclose(match_colors(content[None], [content]), content[None], atol=1e-5)
    dark, light = 0.2 * smooth_image(16, 16, 3), 0.8 + 0.2 * smooth_image(16, 16, 4)
    blend = match_colors(content, [dark, light])
    assert abs(float(blend.mean()) - float(torch.cat([dark, light], 1).mean())) < 0.01


def test_grey_or_four_channel_images_are_refused():
    with pytest.raises(ValueError, match="RGB"):
        match_colors(torch.rand(1, 8, 8), torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="RGB"):
        match_colors(torch.rand(3, 8, 8), torch.rand(4, 8, 8))


def test_style_colors_start_begins_at_the_recoloured_photo_and_content_also_aims_there():
    net, content, style = tiny_net(), smooth_image(16, 16, 0), 0.3 * smooth_image(16, 16, 1)
    reads = [lambda size: (content, style)]
    recoloured = match_colors(content, style)
    common = dict(**TINY_LAYERS, content_weight=1.0, style_weight=1.0, progress=False)
    start, = optimize.transfer_multiscale_batch(net, reads, [16], steps=0, style_colors="start", **common)
    target, = optimize.transfer_multiscale_batch(net, reads, [16], steps=0, style_colors="content", **common)
    plain, = optimize.transfer_multiscale_batch(net, reads, [16], steps=0, **common)
    assert torch.allclose(start.image, recoloured, atol=1e-6)
    assert torch.allclose(target.image, recoloured, atol=1e-6)
    assert torch.allclose(plain.image, content, atol=1e-6)
    # The content loss is measured against the photo (start) or the recoloured photo (content).
    assert start.initial["content_loss"] > 0.01
    assert target.initial["content_loss"] < 1e-6
    assert start.initial["style_loss"] < plain.initial["style_loss"]
    with pytest.raises(ValueError, match="style.preserve_color is true"):
        optimize.transfer_multiscale_batch(net, reads, [16], steps=0, style_colors="start", preserve_color=True,
                                           **common)
    with pytest.raises(ValueError, match="style.init is 'noise'"):
        optimize.transfer_multiscale_batch(net, reads, [16], steps=0, style_colors="start", init="noise", **common)
    with pytest.raises(ValueError, match="style.style_colors must be one of"):
        optimize.transfer_multiscale_batch(net, reads, [16], steps=0, style_colors="both", **common)


def test_the_caption_says_where_the_optimization_started():
    from cnnpipe.stages.style import _start

    assert _start({"init": "noise", "style_colors": "none"}) == "noise image"
    assert _start({"init": "content", "style_colors": "start"}) == "content image in the style's colours"
    assert _start({"init": "content", "style_colors": "content"}).endswith("(also the content target)")
