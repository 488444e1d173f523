"""The phase-only parameterization (fixed natural-image spectrum) and transformed copies per step."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnpipe import ascent


def spectrum_of(image: torch.Tensor) -> torch.Tensor:
    return torch.fft.rfft2(image, norm="ortho").abs()


# --------------------------------------------------------------------------- phase image


def test_one_frequency_gives_the_cosine_by_hand():
    # 4 x 4, one channel, magnitude 2 at (ky, kx) = (0, 1): with its implicit conjugate at kx = -1
    # and norm "ortho" (1/sqrt(16)), x[h, w] = 2 * 2 / 4 * cos(2 pi w / 4 + phase).
    magnitude = torch.zeros(1, 4, 3)
    magnitude[0, 0, 1] = 2.0
    phase = torch.zeros(2, 1, 4, 3)
    phase[1, 0, 0, 1] = math.pi / 2
    param = ascent.PhaseImage(phase, magnitude, (4, 4), decorrelate=False)
    x = param.linear().detach()
    assert torch.allclose(x[0, 0], torch.tensor([1.0, 0.0, -1.0, 0.0]).expand(4, 4), atol=1e-6)
    assert torch.allclose(x[1, 0], torch.tensor([0.0, -1.0, 0.0, 1.0]).expand(4, 4), atol=1e-6)


def test_frequency_zero_keeps_its_sign_whatever_the_phase():
    # The mean (and the Nyquist bins) are real: the phase there is held at 0, so a magnitude of 4
    # at frequency 0 of a 4 x 4 image is the constant 4 / sqrt(16) = 1, for any phase parameter.
    magnitude = torch.zeros(1, 4, 3)
    magnitude[0, 0, 0] = 4.0
    phase = torch.full((1, 1, 4, 3), 1.3)
    x = ascent.PhaseImage(phase, magnitude, (4, 4), decorrelate=False).linear().detach()
    assert torch.allclose(x, torch.ones(1, 1, 4, 4), atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 16, 16), (3, 9, 7), (1, 8, 8), (1, 6, 10)])
def test_the_fixed_magnitude_is_kept_exactly_for_any_phase(shape):
    param = ascent.phase_image(shape)([0, 1, 2], seed=0)
    with torch.no_grad():
        param.phase.mul_(7.3).add_(0.4)  # arbitrary phases, also outside [-pi, pi]
    assert torch.allclose(spectrum_of(param.linear()), param.magnitude.expand(3, -1, -1, -1), atol=1e-5)
    image = param()
    assert image.shape == (3, *shape) and 0 < image.min() and image.max() < 1


def test_natural_spectrum_is_the_photos_and_has_no_mean():
    spectrum = ascent.natural_spectrum(32, 24)
    assert spectrum.shape == (3, 32, 13)
    assert (spectrum[:, 0, 0] == 0).all() and (spectrum >= 0).all()
    # a real image's spectrum: column kx = 0 is symmetric in ky
    assert torch.allclose(spectrum[:, 1:, 0], spectrum[:, 1:, 0].flip(1), atol=1e-5)
    # photos: most energy at low frequencies
    assert spectrum[:, :4, :4].sum() > spectrum[:, 12:20, 8:].sum()
    assert ascent.natural_spectrum(8, 8, channels=1).shape == (1, 8, 5)


def test_only_the_phase_is_trained_and_its_gradient_flows():
    param = ascent.phase_image((3, 12, 12))([0, 1], seed=0)
    assert [name for name, _ in param.named_parameters()] == ["phase"]
    weights = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    (param() * weights).sum().backward()
    grad = param.phase.grad
    assert torch.isfinite(grad).all() and (grad.abs() > 0).float().mean() > 0.5
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() > 0


def test_phase_start_is_seeded_per_sample():
    spec = ascent.phase_image((3, 10, 10))
    first = spec([0, 1], seed=3).phase
    assert torch.equal(first, spec([0, 1], seed=3).phase)
    assert torch.equal(first[1], spec([1], seed=3).phase[0])  # independent of the batch
    assert not torch.equal(first, spec([0, 1], seed=4).phase)
    assert not torch.equal(first[0], first[1])
    assert first.abs().max() <= math.pi


def test_phase_image_rejects_what_it_cannot_do():
    with pytest.raises(ValueError, match="magnitude has shape"):
        ascent.phase_image((3, 8, 8), magnitude=torch.ones(3, 8, 8))
    with pytest.raises(ValueError, match="blur"):
        ascent.phase_image((1, 8, 8))([0], seed=0).blur_(1.0)


def test_phase_only_ascent_raises_the_objective(tiny_cnn):
    model = tiny_cnn(fit_steps=15)
    result = ascent.ascend(model, ascent.class_log_odds("logits", 1), ascent.phase_image((1, 8, 8)), steps=30,
                           lr=0.1, transforms=(ascent.Jitter(0.1),), progress=False)
    assert result.objective[0] > result.initial_objective[0] + 0.5


# --------------------------------------------------------------------------- transformed copies


class Recorder(nn.Module):
    """Identity through a 1x1 convolution named ``body``; keeps every input it sees."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.body.weight)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.body(x)


def test_copies_are_transformed_separately_and_their_scores_averaged():
    model, batch, copies, seed = Recorder(), 2, 3, 5
    jitter = ascent.Jitter(0.25, padding="wrap")
    start = ascent.pixel_image((1, 8, 8))(range(batch), seed)().detach()
    result = ascent.ascend(model, ascent.neuron("body", 0, 2, 3), ascent.pixel_image((1, 8, 8)), steps=1,
                           indices=range(batch), transforms=(jitter,), copies=copies, seed=seed, progress=False)
    # initial score, one step, final score: the step sees copies * batch images, copy k of sample b at k * batch + b
    assert [tuple(x.shape) for x in model.seen] == [(2, 1, 8, 8), (6, 1, 8, 8), (2, 1, 8, 8)]
    step = model.seen[1]
    for b in range(batch):
        gen = ascent.sample_generator(seed, b, stream=1)
        shifts = [jitter.draw(gen, 8, 8) for _ in range(copies)]  # the sample's own generator, in turn
        assert len({tuple(s.tolist()) for s in shifts}) > 1
        for k, shift in enumerate(shifts):
            assert torch.equal(step[k * batch + b], jitter.apply(start[b : b + 1], shift[None])[0])
        # the score is the mean of the copies' pixel (2, 3)
        assert result.history["objective"][0, b] == pytest.approx(float(step[b::batch, 0, 2, 3].mean()), abs=1e-6)
    assert result.history["objective"].shape == (1, batch)


def test_copies_keep_samples_independent_of_the_batch(tiny_cnn):
    model = tiny_cnn(channels=3, size=12, classes=5)
    kwargs = dict(steps=4, transforms=ascent.standard_transforms(), copies=3, seed=2, progress=False)
    spec = ascent.phase_image((3, 12, 12))
    batched = ascent.ascend(model, ascent.channels("conv2", [0, 1, 2]), spec, **kwargs)
    alone = ascent.ascend(model, ascent.channel("conv2", 1), spec, indices=[1], **kwargs)
    assert torch.allclose(alone.images[0], batched.images[1], atol=1e-5)
    with pytest.raises(ValueError, match="copies"):
        ascent.ascend(model, ascent.channel("conv2", 1), spec, steps=1, copies=0, progress=False)


def test_a_standardized_fft_image_keeps_unit_contrast_whatever_its_spectrums_scale():
    spec = ascent.fft_image((3, 32, 32), decay_power=1.5, standardize=1.0)
    param = spec([0, 1], seed=0)
    with torch.no_grad():
        image = param()
        param.spectrum.mul_(50.0)  # an unstandardized image would clip almost everywhere
        scaled = param()
    assert torch.allclose(image, scaled, atol=1e-5)
    assert float(image.min()) > 0.02 and float(image.max()) < 0.98
    # Unit std before the colour matrix: the luminance channel's values spread, not clip.
    assert 0.05 < float(image.std()) < 0.3
    plain = ascent.fft_image((3, 32, 32), decay_power=1.5, sd=0.5)([0], seed=0)
    with torch.no_grad():
        plain.spectrum.mul_(50.0)
        clipped = plain()
    assert float(((clipped < 0.02) | (clipped > 0.98)).float().mean()) > 0.5
    assert not torch.equal(image[0], image[1])  # seeded per sample
    with pytest.raises(ValueError, match="standardized"):
        ascent.fft_image(images=torch.rand(1, 3, 8, 8), standardize=1.0)
    with pytest.raises(ValueError, match="std > 0"):
        ascent.fft_image((3, 8, 8), standardize=True)
    more = ascent.fft_image((3, 32, 32), decay_power=1.5, standardize=2.0)([0, 1], seed=0)
    with torch.no_grad():
        assert float(more().std()) > 1.5 * float(image.std())  # a larger std: more contrast
