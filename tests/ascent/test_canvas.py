"""A canvas seen through random crops, noise on what the network sees, and NAdam."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnpipe import ascent


def fresh_gens(indices, seed=0):
    return [ascent.sample_generator(seed, i, stream=1) for i in indices]


def test_a_centred_crop_of_half_the_side_is_that_region_averaged_down():
    canvas = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    crops = ascent.RandomCrops(8, side=(0.5, 0.5), spread=0.0)(canvas, fresh_gens([0, 1]))
    assert crops.shape == (2, 3, 8, 8)
    assert torch.allclose(crops, F.avg_pool2d(canvas[..., 8:24, 8:24], 2), atol=1e-5)


def test_crops_stay_inside_the_canvas_and_follow_the_side_range():
    crops = ascent.RandomCrops(16, side=(0.2, 0.3), spread=1.0)
    params = crops.draw_batch(fresh_gens(range(2000)), 64, 48)
    side, cy, cx = params[:, 0], params[:, 1], params[:, 2]
    assert side.min() >= 0.2 and side.max() <= 0.3 and side.max() - side.min() > 0.09
    half_y, half_x = side * 48 / 64 / 2, side / 2  # the crop's half-extent as a fraction of each side
    assert (cy - half_y >= -1e-6).all() and (cy + half_y <= 1 + 1e-6).all()
    assert (cx - half_x >= -1e-6).all() and (cx + half_x <= 1 + 1e-6).all()
    assert cy.std() > 0.2  # the spread is used, not a fixed centre


def test_crops_are_seeded_per_sample_and_independent_of_the_batch():
    canvas = torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    crops = ascent.RandomCrops(12, side=(0.3, 0.6))
    out = crops(canvas, fresh_gens(range(4)))
    assert out.shape == (4, 3, 12, 12)
    assert torch.equal(out, crops(canvas, fresh_gens(range(4))))
    assert torch.allclose(out[2:3], crops(canvas[2:3], fresh_gens([2])))
    assert not torch.allclose(out[0], crops(canvas[0:1], fresh_gens([0], seed=5))[0])


@pytest.mark.parametrize("side", [(0.0, 0.5), (0.6, 0.5), (0.5, 1.5)])
def test_bad_crop_sides_are_refused(side):
    with pytest.raises(ValueError, match="crop side"):
        ascent.RandomCrops(8, side=side)


def test_noise_has_its_size_and_is_seeded_per_sample():
    x = torch.full((3, 3, 32, 32), 0.5)
    noise = ascent.Noise(0.1)
    out = noise(x, fresh_gens(range(3)))
    delta = out - x
    # Gaussian std 0.1 plus uniform of width 0.1 (std 0.1 / sqrt(12)): std 0.104.
    assert delta.mean().abs() < 0.01 and 0.095 < delta.std() < 0.113
    assert torch.equal(out, noise(x, fresh_gens(range(3))))
    assert torch.equal(out[1:2], noise(x[1:2], fresh_gens([1])))
    assert torch.equal(ascent.Noise(0.0)(x, fresh_gens(range(3))), x)
    with pytest.raises(ValueError):
        ascent.Noise(-0.1)


@pytest.mark.parametrize("parameterization", [ascent.pixel_image, ascent.fft_image])
def test_a_canvas_ascended_through_crops_raises_the_class_on_the_crops(tiny_cnn, parameterization):
    model = tiny_cnn(size=16, classes=5)
    transforms = [ascent.RandomCrops(16, side=(0.5, 0.7)), ascent.Noise(0.05)]
    result = ascent.ascend(model, [ascent.class_logit("logits", c) for c in (1, 3)],
                           parameterization((1, 32, 32)), steps=15, optimizer="nadam", lr=0.1,
                           transforms=transforms, copies=3, progress=False)
    assert result.images.shape == (2, 1, 32, 32)
    assert result.history["objective"].shape == (15, 2)
    # Scored on the same fixed crops of the start and the final canvas.
    assert (result.objective > result.initial_objective).all(), (result.initial_objective, result.objective)


def test_nadam_is_a_known_optimizer_and_increases_the_objective(tiny_cnn):
    model = tiny_cnn(size=16, classes=5)
    result = ascent.ascend(model, ascent.class_log_softmax("logits", 2), ascent.pixel_image((1, 16, 16)),
                           steps=10, optimizer="nadam", progress=False)
    assert (result.objective > result.initial_objective).all()
    with pytest.raises(ValueError, match="optimizer"):
        ascent.ascend(model, ascent.class_logit("logits", 2), ascent.pixel_image((1, 16, 16)), steps=1,
                      optimizer="sgd", progress=False)
