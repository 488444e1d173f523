"""Image parameterizations: the trainable tensors behind the images an ascent optimizes.

An ``ImageParam`` holds trainable tensors (batch first) and produces images [B, C, H, W] in
[0, 1]: ``PixelImage`` (clamped or sigmoid pixels) and ``FFTImage`` (1/f-scaled Fourier
coefficients, decorrelated colour, sigmoid) and ``PhaseImage`` (a fixed natural-image Fourier
magnitude, only the phase trainable: MACO, Fel et al. 2023). ``pixel_image(...)``/``fft_image(...)``/
``phase_image(...)`` return *specs*, callables ``spec(indices, seed, device) -> ImageParam`` that start from seeded noise
or given photos, so a chunk of samples can be built with their global indices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "STREAM_INIT",
    "STREAM_TRANSFORMS",
    "STREAM_SCORE",
    "sample_generator",
    "gaussian_blur",
    "ImageParam",
    "PixelImage",
    "FFTImage",
    "PhaseImage",
    "PixelSpec",
    "FFTSpec",
    "PhaseSpec",
    "pixel_image",
    "fft_image",
    "phase_image",
    "natural_spectrum",
]

# Separate streams per sample, so changing the start image does not change the transforms.
STREAM_INIT = 0
STREAM_TRANSFORMS = 1
# The fixed views that score an image the transforms resize (a canvas seen through crops).
STREAM_SCORE = 2


def sample_generator(seed: int, index: int, stream: int = STREAM_INIT) -> torch.Generator:
    """A CPU generator for sample ``index`` of a run seeded with ``seed`` (``stream`` 0: start
    image, 1: transforms). Independent of which other samples share the batch."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and sample index must be >= 0 (got {seed}, {index})")
    state = np.random.SeedSequence([seed, index, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of [B, C, H, W] with std ``sigma`` pixels, edges replicated."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


class ImageParam(nn.Module):
    """Trainable tensors, each with the batch as first dim, giving images [B, C, H, W] in [0, 1]."""

    def forward(self) -> Tensor:
        raise NotImplementedError

    @property
    def batch(self) -> int:
        return next(self.parameters()).shape[0]

    @torch.no_grad()
    def project_(self) -> None:
        """Bring the parameters back into the valid set after an optimizer step."""

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        """Blur the images by ``sigma`` pixels in place."""
        raise NotImplementedError


_EPS = 1e-4


def _logit(x: Tensor) -> Tensor:
    x = x.clamp(_EPS, 1 - _EPS)
    return torch.log(x) - torch.log1p(-x)


class PixelImage(ImageParam):
    """One trainable value per pixel.

    ``mapping="clamp"``: the parameter is the image itself, projected to [0, 1] after each step
    (the forward clamps with a straight-through gradient, so pixels at 0 or 1 can move back).
    ``mapping="sigmoid"``: image = sigmoid(parameter).
    """

    def __init__(self, images: Tensor, mapping: str = "clamp"):
        super().__init__()
        if mapping not in ("clamp", "sigmoid"):
            raise ValueError(f"mapping must be 'clamp' or 'sigmoid', got {mapping!r}")
        self.mapping = mapping
        self.pixels = nn.Parameter(self._encode(images.detach().float()).clone())

    def _encode(self, images: Tensor) -> Tensor:
        return images.clamp(0, 1) if self.mapping == "clamp" else _logit(images)

    def forward(self) -> Tensor:
        if self.mapping == "sigmoid":
            return torch.sigmoid(self.pixels)
        return self.pixels + (self.pixels.clamp(0, 1) - self.pixels).detach()

    @torch.no_grad()
    def project_(self) -> None:
        if self.mapping == "clamp":
            self.pixels.clamp_(0, 1)

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        self.pixels.copy_(self._encode(gaussian_blur(self(), sigma)))


# ImageNet colour correlation, square root (Lucid's published numbers); columns scaled so the
# largest has unit norm.
_COLOR_CORRELATION_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
# Keeps the start image near grey and steps comparable to pixel steps.
_FFT_SHRINK = 4.0


def _color_matrix(channels: int, decorrelate: bool) -> Tensor:
    if channels == 3 and decorrelate:
        matrix = torch.tensor(_COLOR_CORRELATION_SQRT, dtype=torch.float32)
        return matrix / matrix.norm(dim=0).max()
    return torch.eye(channels)


def _rfft_freqs(height: int, width: int) -> Tensor:
    """|f| in cycles per pixel for each coefficient of ``rfft2`` of an H x W image."""
    fy = torch.fft.fftfreq(height).view(-1, 1)
    fx = torch.fft.rfftfreq(width).view(1, -1)
    return torch.sqrt(fy**2 + fx**2)


class FFTImage(ImageParam):
    """Fourier coefficients scaled by 1/|f|^decay_power, inverse FFT, colour mixing, sigmoid.

    The 1/f scaling gives low frequencies larger effective steps (natural-image statistics);
    the colour matrix (3 channels: ImageNet colour correlation; 1 channel: identity) lets each
    parameter channel move a decorrelated colour direction. Range: sigmoid -> (0, 1).
    ``standardize`` (a std, or None): each image's pre-colour values are set to mean 0 and
    that std (Horama's Fourier method uses 1), so only their pattern is optimized, not their
    amplitude: the colours stay off the sigmoid's flat ends instead of clipping to black,
    white and primaries; a larger std gives more contrast and saturation.
    """

    def __init__(self, spectrum: Tensor, size: tuple[int, int], decay_power: float = 1.0, decorrelate: bool = True,
                 standardize: float | None = None):
        super().__init__()
        height, width = size
        self.standardize = standardize
        channels = spectrum.shape[1]
        self.size = (height, width)
        freqs = _rfft_freqs(height, width)
        self.register_buffer("freqs", freqs)
        self.register_buffer("scale", 1.0 / freqs.clamp_min(1.0 / max(height, width)) ** decay_power)
        self.register_buffer("color", _color_matrix(channels, decorrelate))
        self.spectrum = nn.Parameter(spectrum.detach().float().clone())

    @classmethod
    def encode(cls, images: Tensor, decay_power: float = 1.0, decorrelate: bool = True) -> FFTImage:
        """The parameterization whose forward returns ``images`` (values clamped to (0, 1))."""
        height, width = images.shape[-2:]
        param = cls(
            torch.zeros(images.shape[0], images.shape[1], height, width // 2 + 1, 2),
            (height, width),
            decay_power,
            decorrelate,
        )
        linear = torch.einsum("cd,bdhw->bchw", torch.linalg.inv(param.color), _logit(images.float()))
        coefficients = torch.fft.rfft2(linear * _FFT_SHRINK, norm="ortho") / param.scale
        with torch.no_grad():
            param.spectrum.copy_(torch.view_as_real(coefficients))
        return param

    def forward(self) -> Tensor:
        coefficients = torch.view_as_complex(self.spectrum) * self.scale
        linear = torch.fft.irfft2(coefficients, s=self.size, norm="ortho") / _FFT_SHRINK
        if self.standardize:  # each image's values at mean 0 and a fixed std: shaped, never saturated
            dims = tuple(range(1, linear.dim()))
            linear = self.standardize * (linear - linear.mean(dims, keepdim=True)) / (linear.std(dims, keepdim=True)
                                                                                       + 1e-4)
        return torch.sigmoid(torch.einsum("cd,bdhw->bchw", self.color, linear))

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        """Gaussian blur of the pre-sigmoid image, done exactly in Fourier space (circular)."""
        response = torch.exp(-2 * math.pi**2 * sigma**2 * self.freqs**2)
        self.spectrum.mul_(response[..., None])


# Photos bundled with scikit-image whose mean Fourier magnitude a PhaseImage keeps.
NATURAL_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# image = sigmoid(gain * colour-mixed linear image): slope 1 at grey, so a linear image with the
# photos' spectrum (of their pixels minus the mean) has about their contrast.
_PHASE_GAIN = 4.0


def _photo_crops(photo, height: int, width: int):
    """Crops of ``photo`` at the aspect H:W, shrunk to H x W (antialiased): the whole scene and
    3 x 3 crops at half its side, each also mirrored. Many views make the mean spectrum smooth."""
    side = min(photo.width / width, photo.height / height)  # the largest crop at this aspect, in units
    for fraction, grid in ((1.0, 1), (0.5, 3)):
        crop_w, crop_h = side * fraction * width, side * fraction * height
        for i in range(grid):
            for j in range(grid):
                left = (photo.width - crop_w) * (j / (grid - 1) if grid > 1 else 0.5)
                top = (photo.height - crop_h) * (i / (grid - 1) if grid > 1 else 0.5)
                view = photo.resize((width, height), 3, box=(left, top, left + crop_w, top + crop_h))  # 3: bicubic
                yield view
                yield view.transpose(0)  # 0: mirror left-right


@lru_cache(maxsize=8)
def _natural_spectrum(height: int, width: int, channels: int, decorrelate: bool) -> Tensor:
    from cnnpipe.io.photos import sample_photo

    inverse = torch.linalg.inv(_color_matrix(channels, decorrelate))
    # A photo is not periodic: its edges would add a cross of energy on the frequency axes (stripes
    # in every image). A Hann window removes the edges; scaled to keep the energy.
    window = torch.outer(torch.hann_window(height, periodic=False), torch.hann_window(width, periodic=False))
    window = window / window.pow(2).mean().sqrt()
    views = []
    for name in NATURAL_PHOTOS:
        photo = sample_photo(name).convert("RGB" if channels == 3 else "L")
        views += [np.asarray(view, dtype=np.float32).reshape(height, width, -1) / 255
                  for view in _photo_crops(photo, height, width)]
    x = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2)
    x = (x - x.mean(dim=(2, 3), keepdim=True)).expand(-1, channels, -1, -1) * window
    spectrum = torch.fft.rfft2(torch.einsum("cd,ndhw->nchw", inverse, x), norm="ortho").abs().mean(0)
    spectrum[:, 0, 0] = 0.0  # no mean: the image's mean colour is the sigmoid's midpoint, grey
    return spectrum


def natural_spectrum(height: int, width: int, channels: int = 3, decorrelate: bool = True) -> Tensor:
    """Mean Fourier magnitude [C, H, W // 2 + 1] (``rfft2``, norm "ortho") of views of
    ``NATURAL_PHOTOS`` shrunk to H x W, minus their mean, Hann-windowed, per decorrelated
    colour channel (1 channel: grey); zero at frequency 0."""
    return _natural_spectrum(int(height), int(width), int(channels), bool(decorrelate)).clone()


class PhaseImage(ImageParam):
    """A fixed Fourier magnitude per decorrelated channel, a trainable phase, colour mixing, sigmoid.

    Only where the frequencies sit is optimized, never how much energy each has (MACO, Fel et
    al. 2023): the image keeps the magnitude spectrum of photos and cannot pile energy into the
    high frequencies that adversarial patterns need. ``linear()`` is the image before the output
    mapping; its ``rfft2`` magnitude (norm "ortho") is ``magnitude`` whatever the phase.
    """

    def __init__(self, phase: Tensor, magnitude: Tensor, size: tuple[int, int], decorrelate: bool = True):
        super().__init__()
        height, width = size
        if tuple(magnitude.shape) != (phase.shape[1], height, width // 2 + 1) or phase.dim() != 4:
            raise ValueError(f"phase {tuple(phase.shape)} and magnitude {tuple(magnitude.shape)} do not fit "
                             f"[B, C, {height}, {width // 2 + 1}] and [C, {height}, {width // 2 + 1}]")
        self.size = (height, width)
        self.register_buffer("magnitude", magnitude.detach().float().clone())
        self.register_buffer("color", _color_matrix(phase.shape[1], decorrelate))
        # Columns kx = 0 and W/2 are spectra of real 1-D signals: irfft2 keeps only their Hermitian
        # part, so their phase must be odd in ky (phi(-ky) = -phi(ky)) or magnitude would be lost.
        self.register_buffer("edge_cols", torch.tensor([0] + ([width // 2] if width % 2 == 0 else [])))
        self.register_buffer("flip", (-torch.arange(height)) % height)
        self.phase = nn.Parameter(phase.detach().float().clone())

    def effective_phase(self) -> Tensor:
        """The phase with its kx = 0 and W/2 columns made odd in ky."""
        edge = self.phase.index_select(-1, self.edge_cols)
        return self.phase.index_copy(-1, self.edge_cols, (edge - edge[..., self.flip, :]) / 2)

    def linear(self) -> Tensor:
        """The decorrelated image [B, C, H, W] before colour mixing and the sigmoid."""
        phase = self.effective_phase()
        coefficients = torch.complex(self.magnitude * torch.cos(phase), self.magnitude * torch.sin(phase))
        return torch.fft.irfft2(coefficients, s=self.size, norm="ortho")

    def forward(self) -> Tensor:
        return torch.sigmoid(_PHASE_GAIN * torch.einsum("cd,bdhw->bchw", self.color, self.linear()))

    def blur_(self, sigma: float) -> None:
        raise ValueError("a phase image keeps its Fourier magnitude fixed, so it cannot be blurred (blur_every: 0)")


def _shape_of(shape, images) -> tuple[int, int, int]:
    if shape is None:
        if images is None:
            raise ValueError("give the image shape (C, H, W) or start images")
        return tuple(int(s) for s in images.shape[-3:])
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"image shape must be (C, H, W), got {shape}")
    if images is not None and tuple(images.shape[-3:]) != shape:
        raise ValueError(f"start images have shape {tuple(images.shape[-3:])}, expected {shape}")
    return shape


def _check_images(images) -> Tensor | None:
    if images is None:
        return None
    images = torch.as_tensor(images).detach().float().cpu()
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4:
        raise ValueError(f"start images must be [N, C, H, W], got {tuple(images.shape)}")
    return images


def _pick_images(images: Tensor, indices: Sequence[int]) -> Tensor:
    """Image ``indices[b]`` for sample b; a single image serves every sample."""
    if len(images) == 1:
        return images.expand(len(indices), -1, -1, -1).clone()
    bad = [i for i in indices if i >= len(images)]
    if bad:
        raise IndexError(f"sample indices {bad[:5]} but only {len(images)} start images")
    return images[torch.as_tensor(list(indices), dtype=torch.long)]


@dataclass(eq=False)
class PixelSpec:
    """Recipe for a ``PixelImage``: call with (indices, seed, device)."""

    shape: tuple[int, int, int]
    images: Tensor | None = None
    noise_std: float | None = None
    mapping: str = "clamp"

    @property
    def natural_batch(self) -> int | None:
        return len(self.images) if self.images is not None and len(self.images) > 1 else None

    def __call__(self, indices: Sequence[int], seed: int, device=None) -> PixelImage:
        std = self.noise_std if self.noise_std is not None else (0.0 if self.images is not None else 0.1)
        if self.images is None:
            base = torch.full((len(indices), *self.shape), 0.5)
        else:
            base = _pick_images(self.images, indices)
        if std > 0:
            noise = torch.stack([torch.randn(self.shape, generator=sample_generator(seed, i)) for i in indices])
            base = base + std * noise
        return PixelImage(base.clamp(0, 1), self.mapping).to(device)


@dataclass(eq=False)
class FFTSpec:
    """Recipe for an ``FFTImage``: call with (indices, seed, device)."""

    shape: tuple[int, int, int]
    images: Tensor | None = None
    sd: float = 0.01
    decay_power: float = 1.0
    decorrelate: bool = True
    standardize: float | None = None

    @property
    def natural_batch(self) -> int | None:
        return len(self.images) if self.images is not None and len(self.images) > 1 else None

    def __call__(self, indices: Sequence[int], seed: int, device=None) -> FFTImage:
        channels, height, width = self.shape
        if self.images is not None:
            return FFTImage.encode(_pick_images(self.images, indices), self.decay_power, self.decorrelate).to(device)
        size = (channels, height, width // 2 + 1, 2)
        spectrum = torch.stack([torch.randn(size, generator=sample_generator(seed, i)) for i in indices])
        return FFTImage(self.sd * spectrum, (height, width), self.decay_power, self.decorrelate,
                        self.standardize).to(device)


def pixel_image(shape=None, *, images=None, noise_std: float | None = None, mapping: str = "clamp") -> PixelSpec:
    """Pixels started from grey + seeded Gaussian noise (std 0.1), or from ``images``
    ([N, C, H, W] in [0, 1]; sample index i starts from image i, or all from a single one;
    no noise unless ``noise_std`` is given). ``mapping``: ``"clamp"`` or ``"sigmoid"``."""
    if mapping not in ("clamp", "sigmoid"):
        raise ValueError(f"mapping must be 'clamp' or 'sigmoid', got {mapping!r}")
    images = _check_images(images)
    return PixelSpec(_shape_of(shape, images), images, noise_std, mapping)


def fft_image(
    shape=None, *, images=None, sd: float | None = None, decay_power: float = 1.0, decorrelate: bool = True,
    standardize: float | None = None,
) -> FFTSpec:
    """Decorrelated Fourier parameterization, started from seeded noise of std ``sd`` in
    coefficient space (default 0.01: a near-grey image) or encoded exactly from ``images``.
    With ``standardize`` (a std: see ``FFTImage``) the start is a noise texture of that contrast
    whatever ``sd`` is, and ``sd`` (default 1, as Horama) only sets what an optimizer's step
    means: Adam moves each coefficient by about its learning rate, so relative to a unit
    spectrum."""
    images = _check_images(images)
    if standardize is not None and (isinstance(standardize, bool) or not standardize > 0):
        raise ValueError(f"fft_image: standardize must be a std > 0 or None, got {standardize!r}")
    if standardize and images is not None:
        raise ValueError("fft_image: a standardized image cannot start from given images (their contrast would change)")
    sd = (1.0 if standardize else 0.01) if sd is None else sd
    return FFTSpec(_shape_of(shape, images), images, sd, decay_power, decorrelate, standardize)


@dataclass(eq=False)
class PhaseSpec:
    """Recipe for a ``PhaseImage``: call with (indices, seed, device)."""

    shape: tuple[int, int, int]
    magnitude: Tensor | None = None
    decorrelate: bool = True
    natural_batch = None

    def __call__(self, indices: Sequence[int], seed: int, device=None) -> PhaseImage:
        channels, height, width = self.shape
        magnitude = self.magnitude
        if magnitude is None:
            magnitude = natural_spectrum(height, width, channels, self.decorrelate)
        size = (channels, height, width // 2 + 1)
        phase = torch.stack([torch.rand(size, generator=sample_generator(seed, i)) for i in indices])
        return PhaseImage((2 * phase - 1) * math.pi, magnitude, (height, width), self.decorrelate).to(device)


def phase_image(shape, *, magnitude: Tensor | None = None, decorrelate: bool = True) -> PhaseSpec:
    """Phase-only parameterization of images of ``shape`` (C, H, W), started from seeded uniform
    random phase; ``magnitude`` [C, H, W // 2 + 1] defaults to ``natural_spectrum``."""
    shape = _shape_of(shape, None)
    if magnitude is not None:
        magnitude = torch.as_tensor(magnitude).detach().float().cpu()
        expected = (shape[0], shape[1], shape[2] // 2 + 1)
        if tuple(magnitude.shape) != expected:
            raise ValueError(f"magnitude has shape {tuple(magnitude.shape)}, expected {expected}")
    return PhaseSpec(shape, magnitude, decorrelate)
