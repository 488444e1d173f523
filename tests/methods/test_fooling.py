"""Fooling images: PNG round trip, CPPNs by hand, mutation invariants, both searches; the rule
end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from probes import visible_files

from cnnpipe.judges.pixels import fit_pixel_classifier
from cnnpipe.methods import cppn, fooling
from cnnpipe.report.formatting import format_percent_down
from cnnpipe.stages import fooling as fooling_stage

ROOT = Path(__file__).resolve().parents[2]
# The tiny CNN fitted a moment on 3 synthetic classes (bright left, right, top half), so that
# every class can be reached with high confidence.
FITTED = {"classes": 3, "fit_steps": 15}


# --------------------------------------------------------------------------- PNG, coordinates, units


def test_png_roundtrip_keeps_8_bit_values_and_quantize_matches_it():
    x = torch.rand(3, 1, 5, 4, generator=torch.Generator().manual_seed(0))
    loaded = fooling.png_roundtrip(x)
    assert torch.equal(loaded, fooling.quantize(x))
    assert torch.equal(fooling.png_roundtrip(loaded), loaded)
    assert torch.equal(fooling.quantize(torch.tensor([0.0, 0.5, 1.2, -0.1])),
                       torch.tensor([0.0, 128.0, 255.0, 0.0]) / 255)
    rgb = torch.rand(1, 3, 2, 2)
    assert fooling.png_roundtrip(rgb).shape == (1, 3, 2, 2)
    with pytest.raises(ValueError, match="png_roundtrip"):
        fooling.png_roundtrip(torch.rand(1, 2, 2, 2))


def test_coordinates_by_hand():
    c = cppn.coordinates(3, 3)
    assert c.shape == (4, 9)
    x, y, d, bias = c.reshape(4, 3, 3)
    assert x[0].tolist() == [-1.0, 0.0, 1.0] and y[:, 0].tolist() == [-1.0, 0.0, 1.0]
    assert d[1, 1] == 0.0 and d[0, 0] == pytest.approx(1.0) and d[0, 1] == pytest.approx(1 / math.sqrt(2))
    assert (bias == 1).all()


def test_span_widens_the_coordinate_plane():
    x, y, d, bias = cppn.coordinates(3, 3, span=2.0).reshape(4, 3, 3)
    assert x[0].tolist() == [-2.0, 0.0, 2.0] and y[:, 2].tolist() == [-2.0, 0.0, 2.0]
    assert d[0, 0] == pytest.approx(2.0) and d[1, 1] == 0.0 and (bias == 1).all()
    # Output <- x with weight 1 on a plane twice as wide: pixel = sigmoid(2x) on [-1, 1].
    g = cppn.random_cppn(np.random.default_rng(0), 1, hidden=2, channels=1, initial_nodes=0)
    g.weights[:] = 0.0
    g.weights[0, 2, 0] = 1.0
    wide = cppn.render_cppn(g, 2, 5, span=2.0)
    assert wide[0, 0, 0] == pytest.approx(1 / (1 + np.exp(-2 * np.linspace(-1, 1, 5))), abs=1e-6)


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


NO_STRUCTURE = dict.fromkeys(cppn.STRUCTURE_RATES, 0.0)


def test_each_genome_mutates_with_its_own_step_size_within_the_limits():
    parents = cppn.random_cppn(np.random.default_rng(1), 3, hidden=4, channels=3, initial_nodes=4)
    sigma = np.array([1e-3, 0.3, 50.0])
    children = cppn.mutate(parents, np.random.default_rng(2), weight_rate=1.0, weight_sigma=sigma, **NO_STRUCTURE)
    change = np.abs(children.weights - parents.weights)
    assert 0 < change[0].max() < 0.01  # tiny steps for genome 0 ...
    assert 0.01 < change[1].max() < 2.0  # ... moderate for genome 1 ...
    assert np.abs(children.weights).max() <= cppn.WEIGHT_LIMIT  # ... and genome 2's huge ones clipped
    assert (np.abs(children.weights[2][parents.enabled[2]]) == cppn.WEIGHT_LIMIT).mean() > 0.8
    assert np.array_equal(children.enabled, parents.enabled) and np.array_equal(children.units, parents.units)
    # One step size for all, given as a number or per genome, draws the same children.
    same = [cppn.mutate(parents, np.random.default_rng(2), weight_sigma=s, **NO_STRUCTURE) for s in (0.5, [0.5] * 3)]
    assert np.array_equal(same[0].weights, same[1].weights)


def test_crossover_takes_every_row_whole_from_one_parent():
    rng = np.random.default_rng(3)
    a = cppn.random_cppn(rng, 40, hidden=3, channels=3, initial_nodes=3)
    b = cppn.random_cppn(rng, 40, hidden=3, channels=3, initial_nodes=3)
    child = cppn.crossover(a, b, np.random.default_rng(4))
    from_a = (child.weights == a.weights).all(axis=2)  # [P, R]: row equal to parent a's
    from_b = (child.weights == b.weights).all(axis=2)
    assert (from_a ^ from_b).all()  # parents' rows differ, so exactly one matches
    assert 0.3 < from_a.mean() < 0.7
    assert np.array_equal(child.units, np.where(from_a[:, :3], a.units, b.units))
    # Parents of different sizes: a slot the child leaves empty feeds nothing.
    small = cppn.random_cppn(rng, 40, hidden=3, channels=3, initial_nodes=0)
    child = cppn.crossover(a, small, np.random.default_rng(5))
    dead = ~child.live_sources()[:, None, :].repeat(6, axis=1)
    assert not child.enabled[dead].any() and (child.weights[~child.enabled] == 0).all()
    assert (child.nodes() < 3).any() and (child.nodes() > 0).any()
    with pytest.raises(ValueError, match="crossover"):
        cppn.crossover(a, cppn.random_cppn(rng, 40, hidden=2, channels=3), rng)


def test_step_sizes_follow_the_one_fifth_success_rule():
    sigma = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 1.99, 0.021])
    better = np.array([0, 1, 1, 4, 3, 5, 0])
    worse = np.array([8, 4, 1, 0, 12, 0, 9])  # rates 0, 1/5, 1/2, 1, 1/5 (ties left out), 1, 0
    after = fooling.adapt_sigma(sigma, better, worse)
    assert after[0] < 0.5 and after[1] == pytest.approx(0.5) and 0.5 < after[2] < after[3]
    assert after[4] == pytest.approx(0.5)
    assert after[3] == pytest.approx(0.5 * math.exp(0.25))  # at most exp(1/4) per generation
    assert after[5] == fooling.SIGMA_RANGE[1] and after[6] == fooling.SIGMA_RANGE[0]  # kept within range
    # Only ties (the same 8-bit image): no evidence, the step stays.
    assert fooling.adapt_sigma(np.array([0.3]), np.array([0]), np.array([0]))[0] == pytest.approx(0.3)


def test_classes_at_the_target_pass_on_most_of_their_children():
    assert fooling.allocate_offspring([True, False, False], 8).tolist() == [2, 11, 11]
    assert fooling.allocate_offspring([False, True, False, False], 5).tolist() == [7, 1, 6, 6]  # 19 = 7 + 6 + 6
    assert fooling.allocate_offspring([True, True], 5).tolist() == [5, 5]
    assert fooling.allocate_offspring([False, False], 5).tolist() == [5, 5]


# --------------------------------------------------------------------------- the searches


def test_gradient_fooling_reaches_the_target_after_png(tiny_cnn, tmp_path, read_back_png):
    model = tiny_cnn(**FITTED)
    result = fooling.gradient_fooling(model, (1, 8, 8), target=0.9, steps=200, lr=0.05, seed=0, show_progress=False)
    assert result.images.shape == (3, 1, 8, 8)
    assert result.reached.all(), result.confidence_after_png
    # Written to PNG files and read back by Pillow, the images still convince the network.
    loaded = read_back_png(result.images, tmp_path)
    with torch.no_grad():
        confidence = torch.softmax(model(loaded), dim=1).diagonal()
    assert (confidence >= 0.9).all(), confidence
    assert torch.equal(result.loaded, loaded)
    assert torch.allclose(result.confidence_after_png, confidence, atol=1e-6)
    assert all(0 < n <= 200 and n % 5 == 0 for n in result.iterations)
    again = fooling.gradient_fooling(model, (1, 8, 8), target=0.9, steps=200, lr=0.05, seed=0, show_progress=False)
    assert torch.equal(again.images, result.images)


def test_gradient_fooling_spends_the_budget_when_the_target_is_out_of_reach(tiny_cnn):
    result = fooling.gradient_fooling(tiny_cnn(**FITTED), (1, 8, 8), target=1 - 1e-9, steps=7, check_every=5, lr=1e-4,
                                      seed=0, show_progress=False)
    assert result.iterations == [7, 7, 7] and not result.reached.any()


def test_evolution_improves_and_is_seeded(tiny_cnn):
    model = tiny_cnn(**FITTED)
    start = fooling.evolve_fooling(model, (1, 8, 8), target=0.99, generations=0, offspring=6, hidden=4,
                                   seed=0, show_progress=False)
    evolved = fooling.evolve_fooling(model, (1, 8, 8), target=0.99, generations=15, offspring=6, hidden=4,
                                     seed=0, show_progress=False)
    # Elites only get better, and fitness is measured on 8-bit images, so after PNG too.
    assert (evolved.confidence_after_png >= start.confidence_after_png - 1e-6).all()
    assert evolved.confidence_after_png.sum() > start.confidence_after_png.sum()
    assert evolved.images.shape == (3, 1, 8, 8) and torch.equal(evolved.loaded, fooling.quantize(evolved.images))
    again = fooling.evolve_fooling(model, (1, 8, 8), target=0.99, generations=15, offspring=6, hidden=4,
                                   seed=0, show_progress=False)
    assert torch.equal(again.images, evolved.images) and again.iterations == evolved.iterations


def test_evolution_options_stay_seeded_and_stop_when_asked(tiny_cnn):
    model = tiny_cnn(**FITTED)
    kwargs = dict(target=0.99, generations=12, offspring=5, hidden=4, span=2.0, crossover=0.5, structure=0.0,
                  adapt=True, seed=1, show_progress=False)
    seen = []
    result = fooling.evolve_fooling(model, (1, 8, 8), **kwargs, on_generation=lambda g, f: seen.append(g) or g == 4)
    assert seen == [1, 2, 3, 4] and result.extra["budget"] == 4 and max(result.iterations) <= 4
    assert result.extra["nodes"] == [2, 2, 2]  # structure 0: weights only, no node is ever added
    assert all(fooling.SIGMA_RANGE[0] <= s <= fooling.SIGMA_RANGE[1] for s in result.extra["sigma"])
    assert result.extra["sigma"] != [0.5] * 3  # adapted from the start value
    again = fooling.evolve_fooling(model, (1, 8, 8), **kwargs, on_generation=lambda g, f: g == 4)
    assert torch.equal(again.images, result.images)
    with pytest.raises(ValueError, match="crossover"):
        fooling.evolve_fooling(model, (1, 8, 8), crossover=1.5)


def test_table_and_figure(tiny_cnn):
    model = tiny_cnn(**FITTED)
    result = fooling.evolve_fooling(model, (1, 8, 8), generations=2, offspring=3, hidden=3, show_progress=False)
    rng = np.random.default_rng(0)
    clf = fit_pixel_classifier(rng.random((30, 1, 8, 8)), np.arange(30) % 3, "knn")
    names = ["cat", "dog", "eel"]
    table = fooling_stage.fooling_table(result, names, clf)
    assert list(table.columns[:4]) == ["class", "confidence", "confidence_after_png", "independent_prediction"]
    assert table["class"].tolist() == names and set(table["independent_prediction"]) <= set(names)
    # Reached means a confidence of at least the target on the image read back from PNG.
    by_hand = fooling.FoolingResult(
        method="gradient", images=torch.zeros(3, 1, 2, 2), loaded=torch.zeros(3, 1, 2, 2),
        confidence=torch.tensor([0.995, 0.5, 0.991]), confidence_after_png=torch.tensor([0.99, 0.5, 0.9899]),
        predicted_after_png=torch.tensor([0, 2, 2]), iterations=[5, 10, 10], target=0.99, targets=[0, 1, 2])
    rows = fooling_stage.fooling_table(by_hand, names, None)
    assert rows["reached_target"].tolist() == [True, False, False]
    assert rows["predicted_after_png"].tolist() == ["cat", "eel", "eel"]
    assert rows["confidence"].tolist() == [0.995, 0.5, 0.991] and rows["iterations"].tolist() == [5, 10, 10]
    # Several ImageNet judges: each one's top-5 count and their mean in the title.
    class Judge:  # a judge's interface: predict_proba and a name
        def __init__(self, name, proba):
            self.name, self.kind, self.proba = name, name, np.asarray(proba, dtype=float)

        def predict_proba(self, images):
            return self.proba

    judges = [Judge("a", [[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]),
              Judge("b", [[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.8, 0.1, 0.1]])]
    verdicts = fooling_stage.fooling_verdicts(by_hand, names, judges)
    assert verdicts["judge"].tolist() == ["a"] * 3 + ["b"] * 3 and verdicts["class"].tolist() == names * 2
    assert verdicts["rank"].tolist() == [1, 0, 0, 0, 1, 1]
    rows = fooling_stage.fooling_table(by_hand, names, judges)
    assert rows["independent_prediction"].tolist() == ["dog", "dog", "eel"]  # the first judge's
    fig = fooling_stage.fooling_figure(by_hand, rows, "a", True, verdicts)
    title = " ".join(" ".join(t.get_text().split()) for t in fig.texts)
    assert "for a 3/3 top-5; b 3/3 top-5; mean 3/3 top-5" in title
    fig = fooling_stage.fooling_figure(result, table, "knn")
    assert len(fig.axes) == 1
    assert "knn pixel classifier" in " ".join(" ".join(t.get_text().split()) for t in fig.texts)
    assert [format_percent_down(p) for p in (0.99996, 0.999471, 0.99896, 0.5, 0.99)] == [
        "99.996%", "99.94%", "99.8%", "50.0%", "99.0%"]
    assert format_percent_down(1.0) == format_percent_down(0.9999995) == "\u2265 99.9999%"


def test_a_subset_of_classes_keeps_image_and_class_apart(tiny_cnn):
    model = tiny_cnn(**FITTED)
    targets = [2, 0]
    for result in (
        fooling.gradient_fooling(model, (1, 8, 8), target=0.9, steps=20, targets=targets, seed=0, show_progress=False),
        fooling.evolve_fooling(model, (1, 8, 8), generations=3, offspring=4, hidden=3, targets=targets, seed=0,
                               show_progress=False),
    ):
        assert result.targets == targets and result.images.shape == (2, 1, 8, 8)
        with torch.no_grad():
            probs = torch.softmax(model(result.loaded), dim=1)
        assert torch.allclose(result.confidence_after_png, probs[[0, 1], targets])
        table = fooling_stage.fooling_table(result, ["cat", "dog", "eel"], None)
        assert table["class"].tolist() == ["eel", "cat"] and table["class_index"].tolist() == targets
        assert table["independent_prediction"].isna().all()  # no judge: empty, never made up
        fig = fooling_stage.fooling_figure(result, table, None)
        assert "pixel" not in " ".join(t.get_text() for t in fig.texts)


def test_bad_arguments_are_named(tiny_cnn):
    with pytest.raises(ValueError, match="method"):
        fooling_stage.run_fooling("genetic", {}, seed=0, device_name="cpu", csv_path="x", png_path="y", image_dir="z")
    with pytest.raises(ValueError, match="target"):
        fooling.gradient_fooling(tiny_cnn(**FITTED), (1, 8, 8), target=1.5)
    with pytest.raises(ValueError, match="offspring"):
        fooling.evolve_fooling(tiny_cnn(**FITTED), (1, 8, 8), offspring=0)


# --------------------------------------------------------------------------- the rule


def test_imagenet_backbone_fools_named_imagenet_classes(tmp_path):
    """EfficientNet-Lite0 (its real weights ship in a package) on two ImageNet classes at 64 px:
    the CSV names the classes, has the judge's (Lite1's) verdict, and the gradient images gain."""
    cfg = {**yaml.safe_load((ROOT / "config.yaml").read_text())["fooling"], "backbone": "efficientnet_lite0",
           "imagenet_classes": [1, 130], "image_size": 64, "gradient_steps": 20, "generations": 1, "offspring": 2,
           "cppn_nodes": 3}
    tables = {}
    for method in fooling_stage.METHODS:
        tables[method] = fooling_stage.run_fooling(method, cfg, seed=0, device_name="cpu",
                                             csv_path=tmp_path / f"{method}.csv",
                                             png_path=tmp_path / f"{method}.png", image_dir=tmp_path / method,
                                             judges_csv=tmp_path / f"{method}_judges.csv")
        files = visible_files(tmp_path / method)
        assert files == ["flamingo.png", "goldfish.png"]
        table = pd.read_csv(tmp_path / f"{method}.csv")
        assert table["class"].tolist() == ["goldfish", "flamingo"] and table["class_index"].tolist() == [1, 130]
        assert table["independent_prediction"].notna().all() and table["independent_rank"].between(0, 999).all()
        # every judge's verdicts (here Lite1 alone): the table's judge columns, row by row
        verdicts = pd.read_csv(tmp_path / f"{method}_judges.csv")
        assert verdicts["judge"].tolist() == ["efficientnet_lite1"] * 2 and verdicts["class_index"].tolist() == [1, 130]
        assert verdicts["rank"].tolist() == table["independent_rank"].tolist()
        assert verdicts["prediction"].tolist() == table["independent_prediction"].tolist()
    # Twenty Adam steps on log p(class) take a noise image 100 times above chance (1/1000).
    assert (tables["gradient"]["confidence_after_png"] > 0.1).all()
    with pytest.raises(ValueError, match=r"fooling.imagenet_classes: need distinct ImageNet class indices in 0..999"):
        fooling_stage.run_fooling("gradient", {**cfg, "imagenet_classes": [1, 1000]}, seed=0, device_name="cpu",
                            csv_path=tmp_path / "x.csv", png_path=tmp_path / "x.png", image_dir=tmp_path / "x")
    assert not (tmp_path / "x.csv").exists()


OUTPUTS = [f"results/fooling/{m}.{ext}" for m in fooling_stage.METHODS for ext in ("csv", "png")]


@pytest.mark.e2e
def test_rule_on_the_tiny_config(tiny_run, tiny_config, tmp_path):
    """What the stage is for, checked without the stage's own measuring code: every class's
    image file (results/fooling/<method>/<class>.png), read back, is given its class with the
    target confidence, and the CSV holds exactly the confidences measured here on those files.
    Reached on the tiny run: gradient, all ten at 0.999; evolution, all ten at 0.9."""
    from cnnpipe.io.images import read_images
    from cnnpipe.networks.checkpoint import load_model

    results = tiny_run / "results"
    model = load_model(results / "train" / "model.pt").eval()
    cfg, seed = tiny_config["fooling"], tiny_config["seed"]
    targets = {"gradient": (cfg["target_confidence"], cfg["gradient_steps"]),
               "evolution": (cfg["evolution_target"], cfg["generations"])}
    names = [str(i) for i in range(10)]
    for method, (target, budget) in targets.items():
        table = pd.read_csv(results / f"fooling/{method}.csv", dtype={"class": str, "predicted_after_png": str})
        assert table["class"].tolist() == names
        assert visible_files(results / "fooling" / method) == [f"{n}.png" for n in names]
        files = [results / "fooling" / method / f"{n}.png" for n in names]
        images = read_images(files, "L")
        assert images.shape[1:] == model.image_shape
        with torch.no_grad():
            probabilities = torch.softmax(model(images), dim=1)
        confidence = probabilities.diagonal()
        assert table["confidence_after_png"].to_numpy() == pytest.approx(confidence.numpy(), abs=1e-6)
        assert (confidence >= target).all(), (method, confidence.tolist())
        assert probabilities.argmax(dim=1).tolist() == list(range(10))
        assert table["reached_target"].all() and table["predicted_after_png"].tolist() == names
        assert table["iterations"].max() < budget, method  # reached before the budget ran out

    # The rule's function again (one thread, as the rule runs it): the same bytes.
    for method in fooling_stage.METHODS:
        fooling_stage.run_fooling(method, cfg, seed=seed, device_name="cpu", csv_path=tmp_path / f"{method}.csv",
                            png_path=tmp_path / f"{method}.png", image_dir=tmp_path / method,
                            model_path=results / "train/model.pt", data_path=results / "data/dataset.pt")
        for ext in ("csv", "png"):
            produced = (results / f"fooling/{method}.{ext}").read_bytes()
            assert (tmp_path / f"{method}.{ext}").read_bytes() == produced, (method, ext)
        for file in (results / "fooling" / method).glob("*.png"):
            assert (tmp_path / method / file.name).read_bytes() == file.read_bytes(), (method, file.name)


def test_evolution_runs_with_a_single_cppn_node(tiny_cnn):
    """fooling.cppn_nodes: 1 passes the schema; genomes then start with the one node they may have
    (they started with two and failed inside the job, issue 26)."""
    result = fooling.evolve_fooling(tiny_cnn(**FITTED), (1, 8, 8), generations=2, offspring=3, hidden=1,
                                    show_progress=False)
    assert result.extra["nodes"] == [1, 1, 1]
