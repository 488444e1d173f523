"""The deterministic GPU paths: the random affine transform as matrix products, and adaptive
average pooling as matrix products (VGG's classifier). Each must equal the PyTorch op it
replaces; the CUDA tests at the end run where a GPU is (benchmarks/gpu.sh runs them)."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from cnnpipe import ascent
from cnnpipe.ascent import transforms
from cnnpipe.networks.build import load_backbone
from cnnpipe.networks.pooling import MatmulAdaptiveAvgPool2d

# cuBLAS is reproducible only with a fixed workspace, read when a process first uses it
# (cnnpipe.runtime.device.seed_everything sets the same default for the pipeline's jobs).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

PADDINGS = ("reflection", "border", "zeros")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def gens(n: int, offset: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


def both(scale, degrees, padding, x, seed_offset=0):
    """(grid_sample, matmul) results of one transform on ``x`` with the same per-sample draws."""
    params = ascent.RandomAffine(scale, degrees, padding).draw_batch(gens(len(x), seed_offset), *x.shape[-2:])
    return tuple(ascent.RandomAffine(scale, degrees, padding, method=method).apply(x, params)
                 for method in ("grid_sample", "matmul"))


# --------------------------------------------------------------------------- RandomAffine


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("shape", [(8, 8), (12, 17), (21, 10)])
@pytest.mark.parametrize("scale, degrees", [((0.5, 2.0), 0.0), ((1.0, 1.0), 30.0), ((0.9, 1.1), 10.0),
                                            ((0.3, 3.0), 180.0)])
def test_matmul_resampling_equals_grid_sample(padding, shape, scale, degrees):
    # Random (not smooth) images: the two compute the same bilinear sum, so they agree to
    # rounding everywhere, padding and far-out coordinates (zoom 0.3: several periods) included.
    x = torch.rand(5, 3, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reference, matmul = both(scale, degrees, padding, x)
    assert (reference - matmul).abs().max() < 1e-12
    reference, matmul = both(scale, degrees, padding, x.float())
    assert (reference - matmul).abs().max() < 1e-5  # float32 coordinates: ~1e-6 px apart


def test_identity_is_exact_and_quarter_turns_move_whole_pixels():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    identity = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    for degrees in (0.0, 5.0):  # the separable (zoom only) and the general path
        assert torch.equal(ascent.RandomAffine(degrees=degrees, method="matmul").apply(x, identity), x)
    # +90 degrees: output (r, c) reads input (c, W-1-r), as torch.rot90 does; cos(90 deg) is
    # not exactly 0 in float, so the taps' weights are 1 and ~1e-8, not 1 and 0.
    quarter = torch.tensor([[1.0, 90.0], [1.0, -90.0]])
    out = ascent.RandomAffine(degrees=90.0, method="matmul").apply(x, quarter)
    assert torch.allclose(out[0], torch.rot90(x[0], 1, dims=(1, 2)), atol=1e-6)
    assert torch.allclose(out[1], torch.rot90(x[1], -1, dims=(1, 2)), atol=1e-6)


def test_matmul_resampling_on_smooth_images_matches_within_a_tolerance():
    # The brief's check, kept as users meet it: a smooth image, float32, the classes stage's sizes.
    yy, xx = torch.meshgrid(torch.linspace(0, 3, 28), torch.linspace(0, 2, 28), indexing="ij")
    x = torch.stack([torch.sin(yy + xx), torch.cos(2 * yy), torch.sin(xx * yy)])[None].repeat(4, 1, 1, 1)
    reference, matmul = both((0.9, 1.1), 15.0, "reflection", x)
    assert torch.allclose(reference, matmul, atol=1e-5)


def test_chunks_give_the_same_image_and_gradient(monkeypatch):
    x = torch.rand(3, 2, 20, 15, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    transform = ascent.RandomAffine((0.8, 1.2), 30.0, method="matmul")
    params = transform.draw_batch(gens(3), 20, 15)

    def run():
        image = x.clone().requires_grad_(True)
        out = transform.apply(image, params)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        return out.detach(), image.grad

    whole = run()
    monkeypatch.setattr(transforms, "_CHUNK_FLOATS", 3 * 15 * (2 * 20 + 20 + 15) * 3)  # three rows a chunk
    chunked = run()
    assert torch.allclose(whole[0], chunked[0], atol=1e-13) and torch.allclose(whole[1], chunked[1], atol=1e-13)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("degrees", [0.0, 25.0])
def test_matmul_resampling_gradcheck(padding, degrees):
    transform = ascent.RandomAffine((0.7, 1.3), degrees, padding, method="matmul")
    params = transform.draw_batch(gens(2, 5), 5, 6)
    x = torch.rand(2, 2, 5, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda image: transform.apply(image, params), (x,))


@pytest.mark.parametrize("method", ["matmul", "auto"])
def test_same_input_twice_gives_bitwise_the_same_gradient_on_cpu(method):
    transform = ascent.RandomAffine((0.9, 1.1), 10.0, method=method)
    x = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(6))
    weights = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(7))

    def gradient():
        image = x.clone().requires_grad_(True)
        (transform(image, gens(4)) * weights).sum().backward()
        return image.grad

    first, second = gradient(), gradient()
    assert first.abs().sum() > 0 and torch.equal(first, second)


def test_auto_keeps_grid_sample_on_the_cpu_and_each_sample_its_own_draws():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    params = ascent.RandomAffine((0.9, 1.1), 20.0).draw_batch(gens(4), 16, 16)
    auto = ascent.RandomAffine((0.9, 1.1), 20.0).apply(x, params)
    assert torch.equal(auto, ascent.RandomAffine((0.9, 1.1), 20.0, method="grid_sample").apply(x, params))
    matmul = ascent.RandomAffine((0.9, 1.1), 20.0, method="matmul")
    assert torch.allclose(matmul(x, gens(4))[2:3], matmul(x[2:3], gens(1, 2)), atol=1e-6)


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="method must be one of .*'cuda_magic'"):
        ascent.RandomAffine(method="cuda_magic")


# --------------------------------------------------------------------------- adaptive pooling


@pytest.mark.parametrize("size", range(1, 10))
def test_matmul_pooling_equals_adaptive_avg_pool(size):
    x = torch.randn(2, 5, size, size + 2, generator=torch.Generator().manual_seed(size))
    for output in (7, (7, 3), (size, None)):
        expected = nn.AdaptiveAvgPool2d(output)(x)
        got = MatmulAdaptiveAvgPool2d(output)(x)
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-6, rtol=1e-6)


def test_pooling_to_its_own_size_is_exact():
    x = torch.randn(2, 8, 7, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(MatmulAdaptiveAvgPool2d(7)(x), x)  # VGG at 224 px: unchanged bits


@pytest.mark.parametrize("arch, pool", [("vgg19", "avgpool"), ("alexnet", "avgpool")])
def test_torchvision_backbones_pool_by_matmul_with_unchanged_logits(arch, pool):
    # The bare architecture (no ImageNet weights offline): random weights, seeded.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = load_backbone(arch, pretrained=False)
    assert isinstance(net.get_submodule(pool), MatmulAdaptiveAvgPool2d)
    reference = copy.deepcopy(net)  # the same weights with torch's own pooling put back
    setattr(reference, pool, nn.AdaptiveAvgPool2d(net.get_submodule(pool).output_size))
    # 128 px: a 4x4 map pooled to 7x7, the nondeterministic case (224 px: see the test above)
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = reference(x), net(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_global_pooling_is_left_alone():
    net = load_backbone("resnet18", pretrained=False)
    assert type(net.avgpool) is nn.AdaptiveAvgPool2d


# --------------------------------------------------------------------------- on a GPU


def _gradient_bits(fn, x):
    image = x.clone().requires_grad_(True)
    fn(image).square().sum().backward()
    return image.grad


@needs_cuda
def test_cuda_transforms_and_pooling_give_bitwise_the_same_gradients_every_time():
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)  # an op without a deterministic kernel now fails
    try:
        x = torch.rand(10, 3, 128, 128, generator=torch.Generator().manual_seed(0)).cuda()
        affine = ascent.RandomAffine((0.9, 1.1), 10.0)
        steps = {
            "affine": lambda image: affine(image, gens(10)),
            "jitter": lambda image: ascent.Jitter(0.1)(image, gens(10)),
            "pool": MatmulAdaptiveAvgPool2d(7),
        }
        for name, fn in steps.items():
            inputs = x[:, :, :4, :4] if name == "pool" else x
            first = _gradient_bits(fn, inputs)
            assert all(torch.equal(first, _gradient_bits(fn, inputs)) for _ in range(5)), name
        reference = ascent.RandomAffine((0.9, 1.1), 10.0, method="grid_sample")
        params = affine.draw_batch(gens(10), 128, 128).cuda()
        assert torch.allclose(affine.apply(x, params), reference.apply(x.cpu(), params.cpu()).cuda(), atol=1e-5)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
