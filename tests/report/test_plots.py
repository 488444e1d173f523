"""Shared figure helpers: panel counts, labels, scales, determinism of the saved bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from cnnpipe.io.files import save_figure
from cnnpipe.report import plots


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def _metrics(with_seconds: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame({
        "epoch": [1, 2, 3],
        "train_loss": [1.5, 0.7, 0.4],
        "train_accuracy": [0.55, 0.8, 0.9],
        "test_loss": [1.1, 0.6, 0.5],
        "test_accuracy": [0.6, 0.82, 0.875],
        "lr": [0.01, 0.005, 0.001],
    })
    if with_seconds:
        frame["seconds"] = [2.0, 2.0, 2.5]
    return frame


@pytest.mark.parametrize("n", [1, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_image_grid_one_panel_per_image(n, channels):
    images = torch.rand(n, channels, 8, 8, generator=torch.Generator().manual_seed(n))
    labels = [f"filter {i}" for i in range(n)]
    sublabels = [f"{i}: 99.9%" for i in range(n)]
    fig = plots.image_grid(images, labels=labels, sublabels=sublabels, title="some filters")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.images) == n
    assert _texts(ax) == [s for pair in zip(labels, sublabels) for s in pair]
    assert [t.get_text() for t in fig.texts] == ["some filters"]
    for image in ax.images:
        assert image.get_interpolation() == "nearest"
        if channels == 1:
            assert (image.norm.vmin, image.norm.vmax) == (0.0, 1.0)
        else:
            assert image.get_array().shape == (8, 8, 3)


def test_image_grid_clips_and_shares_one_scale():
    images = np.stack([np.full((1, 4, 4), -2.0), np.full((1, 4, 4), 0.5), np.full((1, 4, 4), 7.0)])
    fig = plots.image_grid(images, colorbar="pixel value")
    ax, bar = fig.axes
    values = [float(np.asarray(im.get_array()).mean()) for im in ax.images]
    assert values == [0.0, 0.5, 1.0]
    assert len({id(im.norm) for im in ax.images}) == 1
    assert bar.get_ylabel() == "pixel value"


def test_image_grid_rgb_maps_the_scale_to_unit_range():
    images = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    fig = plots.image_grid(images, vmin=-1.0, vmax=1.0, colorbar=True)
    (ax,) = fig.axes  # no colourbar for RGB panels
    np.testing.assert_allclose(ax.images[0].get_array()[0, 0], [0.0, 0.5, 1.0])


def test_image_grid_layout_for_many_images():
    assert [plots.default_ncols(n) for n in (1, 5, 8, 10, 16, 32, 64, 512)] == [1, 5, 8, 5, 4, 8, 8, 32]
    fig = plots.image_grid(torch.zeros(512, 1, 28, 28), labels=[str(i) for i in range(512)])
    assert len(fig.axes[0].images) == 512
    width, height = fig.get_size_inches()
    assert width < 20 and height < 20
    assert min(t.get_fontsize() for t in fig.axes[0].texts) >= 4
    fig = plots.image_grid(torch.zeros(6, 1, 8, 8), ncols=2)
    assert fig.get_size_inches()[1] > fig.get_size_inches()[0]  # 3 rows of 2


def test_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        plots.image_grid(torch.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match="3 labels for 2 images"):
        plots.image_grid(torch.zeros(2, 1, 8, 8), labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="no images"):
        plots.image_grid(torch.zeros(0, 1, 8, 8))


@pytest.mark.parametrize("with_seconds", [True, False])
def test_learning_curve(with_seconds):
    fig = plots.learning_curve(_metrics(with_seconds))
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_title() == "Loss (cross-entropy)" and acc_ax.get_title() == "Accuracy"
    assert loss_ax.get_xlabel() == acc_ax.get_xlabel() == "epoch"
    assert acc_ax.get_ylabel() == "accuracy (%)"
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == ["train", "test"]
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), [60.0, 82.0, 87.5])
    title = fig.get_suptitle()
    assert "87.5%" in title and "3 epochs" in title
    assert ("6 s" in title) == with_seconds


def test_learning_curve_needs_its_columns():
    with pytest.raises(ValueError, match="test_accuracy"):
        plots.learning_curve(_metrics().drop(columns=["test_accuracy"]))


def test_confusion_matrix_figure():
    matrix = np.array([[8, 2, 0], [1, 4, 0], [0, 0, 0]])
    fig = plots.confusion_matrix_figure(matrix, ["cat", "dog", "bird"])
    ax, bar = fig.axes
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert "accuracy 80.0% (12/15)" in ax.get_title()
    assert _texts(ax) == ["8", "2", "0", "1", "4", "0", "0", "0", "0"]
    shares = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shares, [[0.8, 0.2, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 0.0]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "bird"]
    with pytest.raises(ValueError):
        plots.confusion_matrix_figure(matrix, ["cat", "dog"])


@pytest.mark.parametrize("make", [
    lambda: plots.image_grid(torch.linspace(0, 1, 4 * 3 * 8 * 8).view(4, 3, 8, 8), labels=list("abcd"), title="t"),
    lambda: plots.image_grid(torch.linspace(0, 1, 64).view(1, 1, 8, 8), colorbar="v"),
    lambda: plots.learning_curve(_metrics()),
    lambda: plots.confusion_matrix_figure(np.eye(10, dtype=int) * 5 + 1, list(range(10))),
])
def test_figures_save_to_identical_bytes(tmp_path, make):
    save_figure(make(), tmp_path / "a.png")
    fig = make()
    save_figure(fig, tmp_path / "b.png")
    save_figure(fig, tmp_path / "c.png")
    first = (tmp_path / "a.png").read_bytes()
    assert first.startswith(b"\x89PNG")
    assert first == (tmp_path / "b.png").read_bytes() == (tmp_path / "c.png").read_bytes()
