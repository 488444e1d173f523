"""The one engine behind every picture: gradient ascent on the input of a frozen network.

Every visualization solves ``x* = argmax_x objective(model(x)) - penalty(x)``; they differ
only in the objective, where x starts (noise or a photo) and how x is parameterized and
regularized. The parts, one submodule each:

* ``hooks`` - find layers by name and capture their outputs, stopping the forward pass early;
* ``objectives`` - scores per sample to maximize, composable and fusable across a batch;
* ``param`` - how x is parameterized (pixels, decorrelated Fourier coefficients, or the phase
  alone under a fixed natural-image spectrum), seeded per sample;
* ``transforms`` - random jitter, zoom, rotation, crops of a larger canvas and noise applied
  before the model each step;
* ``regularizers`` - penalties on x (L1, L2, total variation);
* ``render`` - the loop (``ascend``: Adam, DeepDream's normalized step or L-BFGS) and
  ``render_batched``, which runs many objectives in chunks with chunk-independent results.

Everything public is re-exported here: ``from cnnpipe import ascent as A; A.ascend(...)``.
"""

from cnnpipe.ascent.hooks import (
    Activations,
    LayerNotFoundError,
    capture,
    frozen,
    get_layer,
    layer_names,
)
from cnnpipe.ascent.objectives import (
    Objective,
    channel,
    channels,
    class_log_odds,
    class_log_softmax,
    class_logit,
    class_probability,
    layer_energy,
    neuron,
    per_sample,
)
from cnnpipe.ascent.param import (
    FFTImage,
    FFTSpec,
    ImageParam,
    PhaseImage,
    PhaseSpec,
    PixelImage,
    PixelSpec,
    fft_image,
    gaussian_blur,
    natural_spectrum,
    phase_image,
    pixel_image,
    sample_generator,
)
from cnnpipe.ascent.regularizers import l1, l2, tv
from cnnpipe.ascent.render import (
    LBFGS_HISTORY,
    AscentResult,
    ascend,
    estimate_max_batch,
    render_batched,
)
from cnnpipe.ascent.transforms import (
    Jitter,
    Noise,
    RandomAffine,
    RandomCrops,
    Transform,
    random_rotate,
    random_scale,
    standard_transforms,
)

__all__ = [
    "LayerNotFoundError",
    "layer_names",
    "get_layer",
    "Activations",
    "capture",
    "frozen",
    "Objective",
    "channel",
    "channels",
    "neuron",
    "class_logit",
    "class_log_odds",
    "class_log_softmax",
    "class_probability",
    "layer_energy",
    "per_sample",
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
    "sample_generator",
    "Transform",
    "Jitter",
    "RandomAffine",
    "RandomCrops",
    "Noise",
    "random_scale",
    "random_rotate",
    "standard_transforms",
    "l1",
    "l2",
    "tv",
    "gaussian_blur",
    "AscentResult",
    "ascend",
    "LBFGS_HISTORY",
    "estimate_max_batch",
    "render_batched",
]
