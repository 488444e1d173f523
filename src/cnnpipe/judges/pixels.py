"""An independent judge for generated images: a pixel classifier of another model family.

The CNN's own verdict on an image made by ascending the CNN says little (it was optimized to
agree). So the class and fooling stages also ask a scikit-learn model fitted on raw pixels of
the same training set: logistic regression or 5-nearest-neighbours. Its verdict is a number,
not proof of "looks like a digit": gradient images often transfer to pixel classifiers
(adversarial directions are shared), so :meth:`PixelClassifier.mean_image_correlation` adds a
plainer measure, the Pearson correlation of an image with its class's mean training image."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

KINDS = ("logistic", "knn")
# Fitting on more images than this gains little and costs minutes on MNIST-sized sets.
DEFAULT_MAX_SAMPLES = 10_000


def _pixels(images, what: str = "images") -> np.ndarray:
    """[N, C, H, W] uint8 (0..255) or float in [0, 1] -> float64 [N, C*H*W] in [0, 1]."""
    if torch.is_tensor(images):
        images = images.detach().cpu()
        array = images.numpy() if images.dtype != torch.bfloat16 else images.float().numpy()
    else:
        array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"{what} must be [N, C, H, W], got shape {list(array.shape)}")
    if array.dtype == np.uint8:
        return array.reshape(len(array), -1).astype(np.float64) / 255.0
    array = array.astype(np.float64).reshape(len(array), -1)
    if array.size and (np.nanmin(array) < -1e-6 or np.nanmax(array) > 1 + 1e-6):
        raise ValueError(f"{what} must hold pixels in [0, 1], found {np.nanmin(array):.3g}..{np.nanmax(array):.3g}")
    return np.nan_to_num(array)


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r; a constant row correlates 0 with anything."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / norm
    return np.where(norm > 0, r, 0.0)


@dataclass
class PixelClassifier:
    """A fitted pixel classifier plus the per-class mean training images."""

    kind: str
    estimator: object
    image_shape: tuple[int, int, int]
    class_means: np.ndarray  # [K, C*H*W] in [0, 1]

    def _check(self, images) -> np.ndarray:
        x = _pixels(images)
        if x.shape[1] != int(np.prod(self.image_shape)):
            shape = list(np.shape(images))[1:]
            raise ValueError(f"images of shape {shape} for a pixel classifier fitted on {list(self.image_shape)}")
        return x

    def predict_proba(self, images) -> np.ndarray:
        """Class probabilities [N, K] for images in [0, 1] (k-NN: neighbour shares)."""
        x = self._check(images)
        with threadpool_limits(1):
            proba = self.estimator.predict_proba(x)
        # The estimator only knows the classes it saw; give every class a column.
        full = np.zeros((len(x), len(self.class_means)))
        full[:, self.estimator.classes_] = proba
        return full

    def predict(self, images) -> np.ndarray:
        """Predicted class index [N] (ties go to the lower index)."""
        return self.predict_proba(images).argmax(axis=1)

    def mean_image_correlation(self, images, labels: Sequence[int]) -> np.ndarray:
        """Pearson r between each image and the mean training image of its label [N]."""
        x = self._check(images)
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(x),):
            raise ValueError(f"{len(labels)} labels for {len(x)} images")
        return _correlation(x, self.class_means[labels])

    def accuracy(self, images, labels) -> float:
        """Share of ``images`` whose predicted class equals ``labels``."""
        labels = np.asarray(labels)
        return float((self.predict(images) == labels).mean()) if len(labels) else float("nan")


def fit_pixel_classifier(
    images,
    labels,
    kind: str = "logistic",
    *,
    num_classes: int | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    seed: int = 0,
) -> PixelClassifier:
    """Fit a ``kind`` ("logistic" or "knn") classifier on flattened pixels of ``images``.

    ``images``: [N, C, H, W], uint8 or floats in [0, 1]. At most ``max_samples`` images are
    used, a seeded random subset. One BLAS thread: on shared cores it is several times faster
    than two, and results do not depend on the thread count.
    """
    if kind not in KINDS:
        raise ValueError(f"independent classifier must be one of {list(KINDS)}, got {kind!r}")
    x = _pixels(images, "training images")
    y = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels, dtype=np.int64)
    if y.shape != (len(x),):
        raise ValueError(f"{len(y)} labels for {len(x)} training images")
    if len(np.unique(y)) < 2:
        raise ValueError("the independent classifier needs training images of at least 2 classes")
    num_classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if len(x) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), size=max_samples, replace=False))
        x, y = x[keep], y[keep]
    means = np.zeros((num_classes, x.shape[1]))
    for c in range(num_classes):
        if (y == c).any():
            means[c] = x[y == c].mean(axis=0)
    if kind == "logistic":
        estimator = LogisticRegression(C=1.0, max_iter=1000)
    else:
        estimator = KNeighborsClassifier(n_neighbors=min(5, len(x)), algorithm="brute")
    with threadpool_limits(1), warnings.catch_warnings():
        # A not fully converged fit still classifies fine; it is not worth a warning per job.
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(x, y)
    shape = tuple(int(s) for s in np.shape(images)[1:])
    return PixelClassifier(kind, estimator, shape, means)


def fit_on_prepared(data: dict, kind: str = "logistic", *, num_classes: int | None = None, seed: int = 0) -> PixelClassifier:
    """Fit on the training split of a prepared dataset (``cnnpipe.data.prepare.load_prepared``)."""
    return fit_pixel_classifier(data["train_images"], data["train_labels"], kind, num_classes=num_classes, seed=seed)
