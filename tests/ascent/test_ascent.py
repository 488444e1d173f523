"""The ascent engine: hooks, objectives, parameterizations, transforms, regularizers, the loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnpipe import ascent


def fresh_gens(indices, seed=0):
    return [ascent.sample_generator(seed, i, stream=1) for i in indices]


# --------------------------------------------------------------------------- regularizers


def test_l1_gradient_is_sign_of_x():
    x = torch.tensor([[[[0.5, -0.25], [0.0, 2.0]]]], requires_grad=True)
    value = ascent.l1(x)
    assert value.tolist() == [2.75]
    value.sum().backward()
    assert x.grad.tolist() == [[[[1.0, -1.0], [0.0, 1.0]]]]
    y = torch.tensor([[[[0.25, 0.75]]]], requires_grad=True)
    ascent.l1(y, center=0.5).sum().backward()
    assert y.grad.tolist() == [[[[-1.0, 1.0]]]]


def test_l2_and_tv_match_hand_values():
    x = torch.tensor([[[[1.0, 2.0], [4.0, 8.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    assert ascent.l2(x).tolist() == [85.0, 0.0]  # 1 + 4 + 16 + 64
    # rows |4-1| + |8-2| = 9, columns |2-1| + |8-4| = 5
    assert ascent.tv(x).tolist() == [14.0, 0.0]
    two_channels = torch.cat([x[:1], 2 * x[:1]], dim=1)
    assert ascent.tv(two_channels).tolist() == [42.0]
    assert ascent.l2(x, center=1.0).tolist() == [0 + 1 + 9 + 49, 4.0]


# --------------------------------------------------------------------------- transforms


def test_jitter_is_symmetric_and_bounded():
    jitter = ascent.Jitter(frac=0.25)
    assert jitter.max_shift(16, 16) == (4, 4)
    assert ascent.Jitter(frac=0.05).max_shift(8, 12) == (1, 1)  # at least one pixel on tiny images
    shifts = jitter.draw_batch(fresh_gens(range(3000)), 16, 16).float()
    assert shifts.abs().max() == 4
    assert (shifts == 4).any() and (shifts == -4).any()
    assert shifts.mean(0).abs().max() < 0.2  # std of U{-4..4} is 2.6; standard error 0.05
    counts = torch.stack([(shifts == s).sum(0) for s in range(-4, 5)]).float()
    assert (counts - counts.flip(0)).abs().max() < 0.25 * counts.mean()  # P(s) ~ P(-s)


def test_jitter_moves_each_sample_by_its_own_shift():
    batch, size = 6, 16
    x = torch.zeros(batch, 2, size, size)
    x[:, :, 8, 8] = 1.0
    jitter = ascent.Jitter(frac=0.25)
    shifts = jitter.draw_batch(fresh_gens(range(batch)), size, size)
    out = jitter(x, fresh_gens(range(batch)))
    for b in range(batch):
        hot = (out[b, 1] == 1).nonzero().tolist()
        assert hot == [[8 + int(shifts[b, 0]), 8 + int(shifts[b, 1])]]
    assert len({tuple(s.tolist()) for s in shifts}) > 1  # per sample, not one shift for all
    assert torch.equal(out, jitter(x, fresh_gens(range(batch))))  # reproducible from the seed
    assert torch.equal(out[3:4], jitter(x[3:4], fresh_gens([3])))  # independent of the batch


@pytest.mark.parametrize("transform", [ascent.random_scale(0.8, 1.2), ascent.random_rotate(20.0)])
def test_scale_and_rotation_are_per_sample_and_seeded(transform):
    image = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    x = image.expand(4, -1, -1, -1).contiguous()
    out = transform(x, fresh_gens(range(4)))
    assert out.shape == x.shape
    assert not torch.allclose(out[0], out[1])
    assert torch.equal(out, transform(x, fresh_gens(range(4))))
    assert torch.allclose(out[2:3], transform(x[2:3], fresh_gens([2])))


def test_identity_affine_keeps_the_image():
    x = torch.rand(2, 1, 9, 13, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(ascent.RandomAffine()(x, fresh_gens([0, 1])), x, atol=1e-5)


# --------------------------------------------------------------------------- layers and hooks


def test_hooks_are_removed_after_an_exception(tiny_cnn):
    model = tiny_cnn(size=16, classes=5)
    with pytest.raises(RuntimeError, match="boom"):
        with ascent.capture(model, ["conv1", "relu2", "logits"]) as acts:
            acts.run(torch.rand(1, 1, 16, 16))
            assert set(acts) == {"conv1", "relu2", "logits"}
            raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in model.modules())


def test_forward_stops_at_the_deepest_needed_layer(tiny_cnn):
    class Boom(nn.Module):
        def forward(self, x):
            raise AssertionError("a layer after the needed ones ran")

    model = tiny_cnn(size=16, classes=5)
    model.fc1 = Boom()
    with ascent.capture(model, ["conv2", "relu1"]) as acts:
        acts.run(torch.rand(2, 1, 16, 16))
        assert acts["conv2"].shape == (2, 8, 8, 8) and acts["relu1"].shape == (2, 4, 16, 16)
        with pytest.raises(AssertionError, match="needed ones"):
            acts.run(torch.rand(2, 1, 16, 16), stop_early=False)
    assert all(not m._forward_hooks for m in model.modules())


def test_unknown_layer_names_the_layer_and_suggests_close_ones(tiny_cnn):
    model = tiny_cnn(size=16, classes=5)
    with pytest.raises(ascent.LayerNotFoundError, match="'conv3'.*did you mean.*'conv1'"):
        ascent.get_layer(model, "conv3")
    with pytest.raises(ascent.LayerNotFoundError, match="fc_rleu1.*fc_relu1"):
        with ascent.capture(model, ["conv1", "fc_rleu1"]):
            pass
    assert all(not m._forward_hooks for m in model.modules())
    nested = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    assert isinstance(ascent.get_layer(nested, "0.1"), nn.ReLU)


# --------------------------------------------------------------------------- objectives


def test_objectives_compute_hand_values_and_compose():
    a = torch.arange(24, dtype=torch.float32).view(2, 3, 2, 2)
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 3.0, 3.0]])
    acts = {"conv": a, "out": logits}
    assert ascent.channel("conv", 1)(acts).tolist() == [4 + 5 + 6 + 7, 16 + 17 + 18 + 19]
    assert ascent.channel("conv", 1, reduce="mean")(acts).tolist() == [5.5, 17.5]
    assert ascent.channels("conv", [2, 0])(acts).tolist() == [8 + 9 + 10 + 11, 12 + 13 + 14 + 15]
    assert ascent.class_logit("out", 2)(acts).tolist() == [2.0, 3.0]
    assert ascent.neuron("conv", 0, 1, 0)(acts).tolist() == [2.0, 14.0]
    assert torch.allclose(ascent.class_probability("out", 1)(acts).exp().log(), torch.tensor([0.2447, 1 / 3]),
                          atol=1e-4)
    assert torch.allclose(ascent.class_log_softmax("out", 0)(acts)[1], torch.tensor(-1.0986), atol=1e-4)
    energy = ascent.layer_energy("out", reduce="sum")(acts)
    assert energy.tolist() == [5.0, 27.0]
    combined = ascent.channel("conv", 1) - 0.5 * ascent.class_logit("out", 2) + 1
    assert combined.layers == {"conv", "out"}
    assert combined(acts).tolist() == [22 - 1 + 1, 70 - 1.5 + 1]
    mean = sum([ascent.channel("conv", 0), ascent.channel("conv", 1)]) / 2
    assert mean(acts).tolist() == [(6 + 22) / 2, (54 + 70) / 2]
    with pytest.raises(IndexError, match="out of range"):
        ascent.channel("conv", 3)(acts)
    with pytest.raises(ValueError, match="per-sample"):
        ascent.channels("conv", [0, 1, 2])(acts)


def test_per_sample_fuses_families_and_matches_each_objective():
    a = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    acts = {"conv": a, "out": logits}
    objs = [ascent.channel("conv", 2), ascent.class_log_softmax("out", 4), ascent.channel("conv", 0),
            ascent.layer_energy("conv")]
    fused = ascent.per_sample(objs)
    expected = [obj({k: v[b : b + 1] for k, v in acts.items()})[0] for b, obj in enumerate(objs)]
    assert torch.allclose(fused(acts), torch.stack(expected))
    fused(acts).sum().backward()  # gradients flow through the grouped evaluation
    assert a.grad[0, 2].abs().sum() > 0 and a.grad[0, 0].abs().sum() == 0
    same_family = ascent.per_sample([ascent.channel("conv", k) for k in (1, 2, 0, 1)])
    assert torch.equal(same_family(acts), ascent.channels("conv", [1, 2, 0, 1])(acts))


# --------------------------------------------------------------------------- parameterizations


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 16), (3, 32, 32)])
def test_fft_image_range_and_exact_encoding(shape):
    param = ascent.fft_image(shape)([0, 1], seed=0)
    images = param()
    assert images.shape == (2, *shape)
    assert images.min() > 0 and images.max() < 1
    assert (images - 0.5).abs().max() < 0.1  # starts near grey
    target = 0.1 + 0.8 * torch.rand(2, *shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ascent.fft_image(images=target)([0, 1], seed=0)(), target, atol=1e-4)


def test_pixel_image_starts_from_photos_or_seeded_noise():
    photos = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    param = ascent.pixel_image(images=photos)([2, 0], seed=0)
    assert torch.equal(param(), photos[[2, 0]])
    noise = ascent.pixel_image((1, 8, 8))
    assert torch.equal(noise([5, 6], seed=1)()[1], noise([6], seed=1)()[0])
    assert not torch.equal(noise([5], seed=1)(), noise([5], seed=2)())


def test_blur_smooths_both_parameterizations():
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5)).clamp(0.05, 0.95)
    for param in (ascent.PixelImage(image), ascent.FFTImage.encode(image)):
        before = ascent.tv(param()).detach()
        param.blur_(1.0)
        after = param()
        assert (ascent.tv(after) < 0.6 * before).all()
        assert after.min() >= 0 and after.max() <= 1


# --------------------------------------------------------------------------- the loop


def test_activation_maximization_increases_the_objective_and_stays_valid(tiny_cnn):
    model = tiny_cnn(size=16, classes=5)
    objs = ascent.channels("conv2", [0, 3, 5])
    result = ascent.ascend(model, objs, ascent.pixel_image((1, 16, 16)), steps=15, lr=0.1, indices=[0, 1, 2],
                           progress=False)
    assert (result.objective > result.initial_objective + 1).all()
    assert result.images.shape == (3, 1, 16, 16) and result.images.device.type == "cpu"
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert result.images.min() == 0 or result.images.max() == 1  # the projection was active
    assert result.history["objective"].shape == (15, 3)


def test_the_model_is_frozen_and_restored(tiny_cnn):
    model = tiny_cnn(size=16, classes=5)
    model.train()
    model.fc1.weight.requires_grad_(False)
    before = [p.detach().clone() for p in model.parameters()]
    ascent.ascend(model, ascent.class_logit("logits", 1), ascent.pixel_image((1, 16, 16)), steps=3, progress=True)
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == [p is not model.fc1.weight for p in model.parameters()]
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def run_mixed(model, objs, indices, **kwargs):
    return ascent.ascend(
        model,
        objs,
        ascent.pixel_image((1, 16, 16)),
        steps=8,
        lr=0.05,
        transforms=ascent.standard_transforms(0.1),
        regularizers={"tv": 0.01, "l1": 0.001},
        blur_every=3,
        seed=7,
        indices=indices,
        progress=False,
        **kwargs,
    )


@pytest.mark.parametrize("optimizer", ["adam", "normalized"])
def test_a_batch_equals_its_samples_run_one_at_a_time(tiny_cnn, optimizer):
    model = tiny_cnn(size=16, classes=5)
    objs = [ascent.channel("conv2", 1), ascent.channel("conv2", 6), ascent.class_logit("logits", 3),
            ascent.channel("conv2", 1)]
    batched = run_mixed(model, objs, range(4), optimizer=optimizer)
    for b, obj in enumerate(objs):
        alone = run_mixed(model, [obj], [b], optimizer=optimizer)
        assert torch.allclose(alone.images[0], batched.images[b], atol=1e-5)
        assert torch.allclose(alone.objective[0], batched.objective[b], rtol=1e-4, atol=1e-4)
    # samples 0 and 3 share an objective but not their noise and transforms
    assert not torch.allclose(batched.images[0], batched.images[3])


def test_chunk_size_does_not_change_results(tiny_cnn):
    model = tiny_cnn(size=16, classes=5)
    objs = [ascent.channel("conv2", k) for k in range(7)]
    kwargs = dict(steps=6, transforms=(ascent.Jitter(0.1), ascent.random_rotate(10)), seed=3, progress=False)
    spec = ascent.fft_image((1, 16, 16))
    whole = ascent.render_batched(model, objs, spec, **kwargs)
    assert whole.indices == list(range(7))
    for chunked in (
        ascent.render_batched(model, objs, spec, max_batch=3, **kwargs),
        ascent.render_batched(model, objs, spec, max_batch=1, **kwargs),
        ascent.render_batched(model, objs, spec, memory_mb=0.1, **kwargs),
    ):
        assert chunked.indices == list(range(7))
        assert torch.allclose(chunked.images, whole.images, atol=1e-5)
        assert chunked.history["objective"].shape == (6, 7)
    assert 1 <= ascent.estimate_max_batch(model, ["conv2"], spec, memory_mb=0.1) < 7


def test_same_seed_gives_bit_identical_images(tiny_cnn):
    model = tiny_cnn(channels=3, size=12, classes=5)
    kwargs = dict(steps=5, transforms=ascent.standard_transforms(), regularizers=[(0.01, ascent.tv)], progress=False)
    first = ascent.ascend(model, ascent.channels("conv1", [0, 2]), ascent.fft_image((3, 12, 12)), seed=11, **kwargs)
    again = ascent.ascend(model, ascent.channels("conv1", [0, 2]), ascent.fft_image((3, 12, 12)), seed=11, **kwargs)
    other = ascent.ascend(model, ascent.channels("conv1", [0, 2]), ascent.fft_image((3, 12, 12)), seed=12, **kwargs)
    assert torch.equal(first.images, again.images)
    assert torch.equal(first.history["objective"], again.history["objective"])
    assert not torch.equal(first.images, other.images)


@pytest.mark.parametrize("channels", [1, 3])
def test_fft_parameterization_increases_the_objective(tiny_cnn, channels):
    model = tiny_cnn(channels=channels, size=12, classes=5)
    result = ascent.ascend(
        model, ascent.channels("conv2", [0, 1]), ascent.fft_image((channels, 12, 12)), steps=10, indices=[0, 1],
        progress=False,
    )
    assert (result.objective > result.initial_objective).all()


@pytest.mark.parametrize("optimizer", ["normalized", "lbfgs"])
def test_normalized_and_lbfgs_optimizers_increase_the_objective(tiny_cnn, optimizer):
    model = tiny_cnn(size=16, classes=5)
    objective = ascent.class_log_softmax("logits", 2)
    result = ascent.ascend(
        model, objective, ascent.pixel_image((1, 16, 16), mapping="sigmoid"), steps=12, optimizer=optimizer,
        progress=False,
    )
    assert (result.objective > result.initial_objective).all()
    assert len(result.history["objective"]) == 12  # L-BFGS: steps count function evaluations


def test_lbfgs_counts_evaluations_across_blur_rounds(tiny_cnn):
    model = tiny_cnn(size=16, classes=5)
    calls = []
    model.conv1.register_forward_hook(lambda *args: calls.append(1))
    ascent.ascend(
        model,
        ascent.channel("conv2", 0),
        ascent.pixel_image((1, 16, 16)),
        steps=7,
        optimizer="lbfgs",
        lr=0.1,
        blur_every=3,
        progress=False,
    )
    assert len(calls) == 7 + 2  # steps evaluations, plus the initial and final objective


def test_works_on_timm_and_torchvision_models_by_layer_name():
    timm = pytest.importorskip("timm")
    torchvision = pytest.importorskip("torchvision")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        effnet = timm.create_model("efficientnet_lite0", pretrained=False)
        googlenet = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    # timm zero-initialises each block's last BatchNorm scale, so a fresh network outputs zeros.
    for module in effnet.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
    for model, layer in ((effnet, "blocks.2.0"), (googlenet, "inception3a.branch1.conv")):
        result = ascent.ascend(
            model,
            ascent.channels(layer, [0, 5]),
            ascent.fft_image((3, 64, 64)),
            steps=4,
            progress=False,
        )
        assert result.images.shape == (2, 3, 64, 64)
        assert (result.objective > result.initial_objective).all()
    with pytest.raises(ascent.LayerNotFoundError, match="blocks.2.0"):
        ascent.get_layer(effnet, "blocks.2.O")


def test_class_log_odds_is_the_log_odds_of_the_softmax_probability():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    acts = {"logits": logits}
    p = torch.softmax(logits.double(), dim=1)
    expected = torch.log(p / (1 - p))
    assert ascent.class_log_odds("logits", 1).fn(acts).double() == pytest.approx(expected[:, 1].tolist(), abs=1e-5)
    per_sample = ascent.class_log_odds("logits", [0, 2]).fn(acts).double()
    assert per_sample.tolist() == pytest.approx([expected[0, 0].item(), expected[1, 2].item()], abs=1e-5)
    # Far past where 1 - p rounds to 0 in float32, it still rises with the logit.
    big = torch.tensor([[40.0, 0.0, 0.0], [50.0, 0.0, 0.0]])
    values = ascent.class_log_odds("logits", 0).fn({"logits": big})
    assert torch.isfinite(values).all() and values[1] - values[0] == pytest.approx(10.0, abs=1e-4)
