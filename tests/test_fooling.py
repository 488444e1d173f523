"""Fooling images: PNG round trip, CPPNs by hand, mutation invariants, both searches; the rule
end to end."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cnnpipe import cppn
from cnnpipe import fooling as F
from cnnpipe.formatting import format_percent_down
from cnnpipe.independent import fit_pixel_classifier
from cnnpipe.models import LectureCNN

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / ".test" / "config.yaml"


def tiny_cnn(classes: int = 3, size: int = 8, seed: int = 0, steps: int = 15) -> LectureCNN:
    """A tiny CNN trained for a moment on 3 synthetic classes (bright left half, right half,
    top half), so that every class can be reached with high confidence."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LectureCNN(1, classes, size, conv_channels=(4, 8), hidden=(16,))
    images = torch.zeros(classes, 1, size, size)
    images[0, ..., : size // 2] = images[1, ..., size // 2 :] = images[2, ..., : size // 2, :] = 1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        x = (images.repeat(8, 1, 1, 1) + 0.2 * torch.randn(8 * classes, 1, size, size, generator=gen)).clamp(0, 1)
        loss = torch.nn.functional.cross_entropy(model(x), torch.arange(classes).repeat(8))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


# --------------------------------------------------------------------------- PNG, coordinates, units


def test_png_roundtrip_keeps_8_bit_values_and_quantize_matches_it():
    x = torch.rand(3, 1, 5, 4, generator=torch.Generator().manual_seed(0))
    loaded = F.png_roundtrip(x)
    assert torch.equal(loaded, F.quantize(x))
    assert torch.equal(F.png_roundtrip(loaded), loaded)
    assert torch.equal(F.quantize(torch.tensor([0.0, 0.5, 1.2, -0.1])), torch.tensor([0.0, 128.0, 255.0, 0.0]) / 255)
    rgb = torch.rand(1, 3, 2, 2)
    assert F.png_roundtrip(rgb).shape == (1, 3, 2, 2)
    with pytest.raises(ValueError, match="png_roundtrip"):
        F.png_roundtrip(torch.rand(1, 2, 2, 2))


def test_coordinates_by_hand():
    c = cppn.coordinates(3, 3)
    assert c.shape == (4, 9)
    x, y, d, bias = c.reshape(4, 3, 3)
    assert x[0].tolist() == [-1.0, 0.0, 1.0] and y[:, 0].tolist() == [-1.0, 0.0, 1.0]
    assert d[1, 1] == 0.0 and d[0, 0] == pytest.approx(1.0) and d[0, 1] == pytest.approx(1 / math.sqrt(2))
    assert (bias == 1).all()


def test_units_by_hand():
    z = np.array([[0.0, 1.0, 10.0]] * 4)
    out = cppn._activate(z, np.array([0, 1, 2, 3]))
    assert out[0] == pytest.approx([0.0, math.sin(1.0), math.sin(10.0)])
    assert out[1] == pytest.approx([0.5, 1 / (1 + math.exp(-1)), 1 / (1 + math.exp(-10))])
    assert out[2] == pytest.approx([1.0, math.exp(-0.5), math.exp(-50)])
    assert out[3] == pytest.approx([0.0, 1.0, cppn.LINEAR_LIMIT])


def test_a_hand_built_cppn_renders_what_it_should():
    # No hidden nodes; the output reads x with weight 2: pixel = sigmoid(2x), constant in y.
    g = cppn.random_cppn(np.random.default_rng(0), 2, hidden=3, channels=1, initial_nodes=0)
    g.weights[:] = 0.0
    g.weights[0, 3, 0] = 2.0  # genome 0: output row 3 <- source 0 (x)
    images = cppn.render_cppn(g, 4, 5)
    xs = np.linspace(-1, 1, 5)
    assert images.shape == (2, 1, 4, 5)
    assert images[0, 0] == pytest.approx(np.tile(1 / (1 + np.exp(-2 * xs)), (4, 1)))
    assert images[1] == pytest.approx(0.5)  # all weights zero: grey
    # One Gaussian node on d (weight 1) feeding the output with weight 1: sigmoid(exp(-d^2/2)).
    g.weights[:] = 0.0
    g.active[1, 0], g.units[1, 0] = True, 2
    g.enabled[1, 0, 2] = g.enabled[1, 3, 4] = True
    g.weights[1, 0, 2] = g.weights[1, 3, 4] = 1.0
    d = cppn.coordinates(4, 5)[2].reshape(4, 5)
    assert cppn.render_cppn(g, 4, 5)[1, 0] == pytest.approx(1 / (1 + np.exp(-np.exp(-0.5 * d**2))))


def test_allowed_connections_form_a_feed_forward_graph():
    mask = cppn.allowed_connections(hidden=3, channels=2)
    assert mask.shape == (5, 7)
    assert mask[0].tolist() == [True] * 4 + [False] * 3  # node 0 reads inputs only
    assert mask[2].tolist() == [True] * 6 + [False]  # node 2 reads inputs, nodes 0 and 1
    assert mask[3:].all()  # outputs read everything


def test_mutation_keeps_genomes_valid_and_is_seeded():
    rng = np.random.default_rng(1)
    parents = cppn.random_cppn(rng, 50, hidden=5, channels=1)
    children = cppn.mutate(parents, np.random.default_rng(7), add_node=0.5, add_connection=0.5,
                           remove_connection=0.5, change_unit=0.5)
    allowed = cppn.allowed_connections(5, 1)[None]
    live = children.live_sources()[:, None, :]
    assert not (children.enabled & ~allowed).any()
    assert (children.weights[~children.enabled] == 0).all()
    assert np.abs(children.weights).max() <= cppn.WEIGHT_LIMIT
    assert (children.nodes() >= parents.nodes()).all() and (children.nodes() > parents.nodes()).any()
    assert (children.enabled & live)[:, 5:].any(axis=2).all()  # every output keeps an input
    assert (np.abs(children.weights - parents.weights).reshape(50, -1).max(axis=1) > 0).all()
    assert ((children.units != parents.units) & parents.active).any()
    again = cppn.mutate(parents, np.random.default_rng(7), add_node=0.5, add_connection=0.5,
                        remove_connection=0.5, change_unit=0.5)
    assert np.array_equal(again.weights, children.weights) and np.array_equal(again.units, children.units)
    images = cppn.render_cppn(children, 6, 6)
    assert images.shape == (50, 1, 6, 6) and np.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 1


# --------------------------------------------------------------------------- the searches


def test_gradient_fooling_reaches_the_target_after_png():
    model = tiny_cnn()
    result = F.gradient_fooling(model, (1, 8, 8), target=0.9, steps=200, lr=0.05, seed=0, show_progress=False)
    assert result.images.shape == (3, 1, 8, 8)
    assert result.reached.all(), result.confidence_after_png
    assert (result.confidence_after_png >= 0.9).all()
    assert torch.equal(result.loaded, F.quantize(result.images))
    assert all(0 < n <= 200 and n % 5 == 0 for n in result.iterations)
    again = F.gradient_fooling(model, (1, 8, 8), target=0.9, steps=200, lr=0.05, seed=0, show_progress=False)
    assert torch.equal(again.images, result.images)


def test_gradient_fooling_spends_the_budget_when_the_target_is_out_of_reach():
    result = F.gradient_fooling(tiny_cnn(), (1, 8, 8), target=1 - 1e-9, steps=7, check_every=5, lr=1e-4,
                                seed=0, show_progress=False)
    assert result.iterations == [7, 7, 7] and not result.reached.any()


def test_evolution_improves_and_is_seeded():
    model = tiny_cnn()
    start = F.evolve_fooling(model, (1, 8, 8), target=0.99, generations=0, offspring=6, hidden=4,
                             seed=0, show_progress=False)
    evolved = F.evolve_fooling(model, (1, 8, 8), target=0.99, generations=15, offspring=6, hidden=4,
                               seed=0, show_progress=False)
    # Elites only get better, and fitness is measured on 8-bit images, so after PNG too.
    assert (evolved.confidence_after_png >= start.confidence_after_png - 1e-6).all()
    assert evolved.confidence_after_png.sum() > start.confidence_after_png.sum()
    assert evolved.images.shape == (3, 1, 8, 8) and torch.equal(evolved.loaded, F.quantize(evolved.images))
    again = F.evolve_fooling(model, (1, 8, 8), target=0.99, generations=15, offspring=6, hidden=4,
                             seed=0, show_progress=False)
    assert torch.equal(again.images, evolved.images) and again.iterations == evolved.iterations


def test_table_and_figure():
    model = tiny_cnn()
    result = F.evolve_fooling(model, (1, 8, 8), generations=2, offspring=3, hidden=3, show_progress=False)
    rng = np.random.default_rng(0)
    clf = fit_pixel_classifier(rng.random((30, 1, 8, 8)), np.arange(30) % 3, "knn")
    names = ["cat", "dog", "eel"]
    table = F.fooling_table(result, names, clf)
    assert list(table.columns[:4]) == ["class", "confidence", "confidence_after_png", "independent_prediction"]
    assert table["class"].tolist() == names and set(table["independent_prediction"]) <= set(names)
    assert (table["reached_target"] == (table["confidence_after_png"] >= 0.99)).all()
    fig = F.fooling_figure(result, table, "knn")
    assert len(fig.axes) == 1
    assert "knn pixel classifier" in " ".join(" ".join(t.get_text().split()) for t in fig.texts)
    assert [format_percent_down(p) for p in (0.99996, 0.999471, 0.99896, 0.5, 0.99)] == [
        "99.996%", "99.94%", "99.8%", "50.0%", "99.0%"]
    assert format_percent_down(1.0) == format_percent_down(0.9999995) == "\u2265 99.9999%"


def test_a_subset_of_classes_keeps_image_and_class_apart():
    model = tiny_cnn()
    targets = [2, 0]
    for result in (
        F.gradient_fooling(model, (1, 8, 8), target=0.9, steps=20, targets=targets, seed=0, show_progress=False),
        F.evolve_fooling(model, (1, 8, 8), generations=3, offspring=4, hidden=3, targets=targets, seed=0,
                         show_progress=False),
    ):
        assert result.targets == targets and result.images.shape == (2, 1, 8, 8)
        probs = F.class_probabilities(model, result.loaded)
        assert torch.allclose(result.confidence_after_png, probs[[0, 1], targets])
        table = F.fooling_table(result, ["cat", "dog", "eel"], None)
        assert table["class"].tolist() == ["eel", "cat"] and table["class_index"].tolist() == targets
        assert table["independent_prediction"].isna().all()  # no judge: empty, never made up
        fig = F.fooling_figure(result, table, None)
        assert "pixel" not in " ".join(t.get_text() for t in fig.texts)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="method"):
        F.run_fooling("genetic", {}, seed=0, device_name="cpu", csv_path="x", png_path="y")
    with pytest.raises(ValueError, match="target"):
        F.gradient_fooling(tiny_cnn(), (1, 8, 8), target=1.5)
    with pytest.raises(ValueError, match="offspring"):
        F.evolve_fooling(tiny_cnn(), (1, 8, 8), offspring=0)


# --------------------------------------------------------------------------- the rule


def test_imagenet_backbone_fools_named_imagenet_classes(tmp_path):
    """EfficientNet-Lite0 (its real weights ship in a package) on two ImageNet classes at 64 px:
    the CSV names the classes, has no pixel-classifier verdict, and the gradient images gain."""
    cfg = {**yaml.safe_load((ROOT / "config.yaml").read_text())["fooling"], "backbone": "efficientnet_lite0",
           "imagenet_classes": [1, 130], "image_size": 64, "gradient_steps": 20, "generations": 1, "offspring": 2,
           "cppn_nodes": 3}
    tables = {}
    for method in F.METHODS:
        tables[method] = F.run_fooling(method, cfg, seed=0, device_name="cpu", csv_path=tmp_path / f"{method}.csv",
                                       png_path=tmp_path / f"{method}.png")
        table = pd.read_csv(tmp_path / f"{method}.csv")
        assert table["class"].tolist() == ["goldfish", "flamingo"] and table["class_index"].tolist() == [1, 130]
        assert table["independent_prediction"].isna().all()
    # Twenty Adam steps on log p(class) take a noise image 100 times above chance (1/1000).
    assert (tables["gradient"]["confidence_after_png"] > 0.1).all()
    with pytest.raises(ValueError, match=r"fooling.imagenet_classes: need distinct class indices in 0..999"):
        F.run_fooling("gradient", {**cfg, "imagenet_classes": [1, 1000]}, seed=0, device_name="cpu",
                      csv_path=tmp_path / "x.csv", png_path=tmp_path / "x.png")
    assert not (tmp_path / "x.csv").exists()


OUTPUTS = [f"results/fooling/{m}.{ext}" for m in F.METHODS for ext in ("csv", "png")]


@pytest.mark.e2e
def test_rule_end_to_end_and_byte_identical_rerun(tmp_path, tiny_config):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
               str(tmp_path), "--configfile", str(TINY), "--cores", "2", *OUTPUTS]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for method in F.METHODS:
        table = pd.read_csv(tmp_path / f"results/fooling/{method}.csv", dtype={"class": str})
        assert list(table.columns[:4]) == ["class", "confidence", "confidence_after_png", "independent_prediction"]
        assert table["class"].tolist() == [str(i) for i in range(10)]
        assert table["confidence_after_png"].between(0, 1).all()
        assert (tmp_path / f"results/fooling/{method}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "fooling" in (tmp_path / f"results/logs/fooling_{method}.log").read_text()
    # The rule's function again (one thread, as the rule runs it): the same bytes.
    for method in F.METHODS:
        again = tmp_path / "again"
        F.run_fooling(method, tiny_config["fooling"], seed=tiny_config["seed"], device_name="cpu",
                      csv_path=again / f"{method}.csv", png_path=again / f"{method}.png",
                      model_path=tmp_path / "results/train/model.pt", data_path=tmp_path / "results/data/dataset.pt")
        for ext in ("csv", "png"):
            produced = (tmp_path / f"results/fooling/{method}.{ext}").read_bytes()
            assert (again / f"{method}.{ext}").read_bytes() == produced, (method, ext)
