"""Per-class activation maximization and the independent pixel classifier; the rule end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from pipeline import snakemake
from probes import visible_files

from cnnpipe import ascent
from cnnpipe.io.images import read_images
from cnnpipe.judges.pixels import fit_pixel_classifier
from cnnpipe.methods import class_search
from cnnpipe.networks.checkpoint import load_model
from cnnpipe.stages import classes

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / ".test" / "config.yaml"


def log_odds(logits: torch.Tensor) -> torch.Tensor:
    """log(p_i / (1 - p_i)) of every class, in float64, as y_i minus the log-sum-exp of the
    other classes' logits (written out class by class)."""
    logits = logits.double()
    columns = [logits[:, i] - torch.logsumexp(torch.cat([logits[:, :i], logits[:, i + 1:]], dim=1), dim=1)
               for i in range(logits.shape[1])]
    return torch.stack(columns, dim=1)


def config(**overrides) -> dict:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())["classes"]
    cfg.update(overrides)
    return cfg


def halves(n: int = 20, size: int = 4, seed: int = 0):
    """Class 0: bright left half, class 1: bright right half, plus a little noise."""
    rng = np.random.default_rng(seed)
    images = np.zeros((2 * n, 1, size, size))
    images[:n, :, :, : size // 2] = 1.0
    images[n:, :, :, size // 2 :] = 1.0
    images = np.clip(images + rng.normal(0, 0.05, images.shape), 0, 1)
    return images, np.repeat([0, 1], n)


# --------------------------------------------------------------------------- independent classifier


@pytest.mark.parametrize("kind", ["logistic", "knn"])
def test_pixel_classifier_learns_a_hand_made_task(kind):
    images, labels = halves()
    clf = fit_pixel_classifier(images, labels, kind)
    left = np.zeros((1, 1, 4, 4))
    left[..., :2] = 1.0
    right = 1.0 - left
    assert clf.predict(np.concatenate([left, right])).tolist() == [0, 1]
    proba = clf.predict_proba(torch.from_numpy(left).float())
    assert proba.shape == (1, 2) and proba[0, 0] > 0.5 and np.isclose(proba.sum(), 1.0)
    assert clf.accuracy(images, labels) == 1.0


def test_uint8_images_are_scaled_and_every_class_gets_a_column():
    images, labels = halves()
    clf = fit_pixel_classifier((images * 255).round().astype(np.uint8), labels, "knn", num_classes=3)
    assert clf.class_means.shape == (3, 16)
    assert clf.class_means[0, 0] == pytest.approx(images[:20, 0, 0, 0].mean(), abs=1e-2)
    assert clf.predict_proba(images[:1]).shape == (1, 3)


def test_mean_image_correlation_by_hand():
    images, labels = halves()
    clf = fit_pixel_classifier(images, labels, "knn")
    mean0 = clf.class_means[0].reshape(1, 1, 4, 4)
    flat = np.full((1, 1, 4, 4), 0.5)
    r = clf.mean_image_correlation(np.concatenate([mean0, 1 - mean0, flat]), [0, 0, 0])
    assert r == pytest.approx([1.0, -1.0, 0.0], abs=1e-9)


def test_pixel_classifier_rejects_bad_input():
    images, labels = halves()
    with pytest.raises(ValueError, match="logistic"):
        fit_pixel_classifier(images, labels, "svm")
    with pytest.raises(ValueError, match="labels"):
        fit_pixel_classifier(images, labels[:3], "knn")
    clf = fit_pixel_classifier(images, labels, "knn")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clf.predict(images * 3)
    with pytest.raises(ValueError, match="fitted on"):
        clf.predict(np.zeros((1, 1, 5, 5)))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        clf.predict(np.zeros((4, 4)))


# --------------------------------------------------------------------------- variants


def test_variants_follow_the_slides():
    settings = class_search.variant_settings(config(l1_weight=0.3, tv_weight=0.0, regularized_l1_weight=0.05), (1, 8, 8))
    assert list(settings) == ["plain", "l1"] + ["regularized"]
    assert set(settings["plain"]) == {"param"}  # no transforms, no penalty: the slide
    assert settings["l1"]["regularizers"] == {"l1": 0.3}
    assert settings["plain"]["param"] is settings["l1"]["param"]  # same start noise
    reg = settings["regularized"]
    assert reg["regularizers"] == {"l1": 0.05}  # a zero TV weight is left out
    assert isinstance(reg["param"], ascent.FFTSpec)
    assert [type(t).__name__ for t in reg["transforms"]] == ["Jitter", "RandomAffine", "Jitter"]
    none = class_search.regularized_transforms(config(jitter=0.0, scale=0.0, degrees=0))
    assert none == []


def test_an_imagenet_backbone_ascends_a_canvas_through_crops_and_the_digit_cnn_does_not():
    block = {"canvas": 64, "copies": 3, "crop_side": [0.4, 0.5], "noise": 0.02, "optimizer": "nadam", "lr": 0.3,
             "steps": 7, "decay_power": 1.5, "jitter": 0.0, "scale": 0.0, "degrees": 0}
    cfg = config(backbone="efficientnet_lite0", imagenet_regularized=block)
    settings = class_search.variant_settings(cfg, (3, 32, 32))
    reg = settings["regularized"]
    assert reg["param"].shape == (3, 64, 64) and reg["param"].decay_power == 1.5
    assert [type(t).__name__ for t in reg["transforms"]] == ["RandomCrops", "Noise"]
    crops, noise = reg["transforms"]
    assert (crops.size, crops.side, noise.std) == (32, (0.4, 0.5), 0.02)
    assert (reg["copies"], reg["steps"], reg["lr"], reg["optimizer"]) == (3, 7, 0.3, "nadam")
    assert set(settings["plain"]) == {"param"} and settings["plain"]["param"].shape == (3, 32, 32)
    assert "a 64 px canvas seen as 3 random crops of 0.4-0.5 of its side a step" in classes.regularization_words(cfg)
    # The digit CNN ignores the block: its regularized variant is the one it always had.
    trained = class_search.variant_settings(config(backbone="trained", imagenet_regularized=block), (1, 8, 8))
    reg = trained["regularized"]
    assert reg["param"].shape == (1, 8, 8) and reg["param"].decay_power == 1.0
    assert (reg["steps"], reg["lr"], reg["optimizer"]) == (config()["steps"], config()["lr"], "adam")
    assert [type(t).__name__ for t in reg["transforms"]] == ["Jitter", "RandomAffine", "Jitter"]


@pytest.mark.parametrize(("block", "words"), [
    ({"crop_side": [0.6, 0.5]}, ["crop_side", "low <= high"]),
    ({"crop_side": [0.5]}, ["crop_side"]),
    ({"canvas": 8}, ["canvas", ">= 16"]),
    ({"canvas": 100}, ["canvas", "at least the image size (128)"]),
    ({"noise": -0.1}, ["noise", ">= 0"]),
    ({"optimizer": "sgd"}, ["optimizer", "'nadam'"]),
    ({"lr": 0}, ["lr", "> 0"]),
    ({"steps": 2.5}, ["steps", "integer"]),
    ({"decay_power": 5}, ["decay_power"]),
    ({"standardize": 0}, ["standardize", "a number > 0"]),
    ({"standardize": True}, ["standardize", "a number > 0"]),
    ({"canvass": 256}, ["imagenet_regularized sets only", "canvass"]),
])
def test_bad_canvas_settings_name_the_key(block, words):
    cfg = config(backbone="efficientnet_lite0", imagenet_regularized={**config()["imagenet_regularized"], **block})
    with pytest.raises(ValueError) as error:
        class_search.variant_settings(cfg, (3, 128, 128))
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_config_errors_name_the_key():
    cfg = config()
    del cfg["l1_weight"]
    with pytest.raises(KeyError, match="l1_weight"):
        class_search.check_config(cfg)
    with pytest.raises(ValueError, match="parameterization"):
        class_search.check_config(config(parameterization="wavelet"))
    with pytest.raises(ValueError, match="classes.objective"):
        class_search.check_config(config(objective="margin"))


def test_l1_darkens_and_each_variant_raises_its_objective(tiny_cnn):
    model = tiny_cnn()
    cfg = config(steps=25, l1_weight=0.02, blur_every=0)
    images = class_search.visualize_classes(model, (1, 8, 8), cfg, seed=3, show_progress=False)
    assert list(images) == list(classes.VARIANTS)
    start = ascent.pixel_image((1, 8, 8))(range(4), 3)().detach()
    with torch.no_grad():
        before = log_odds(model(start)).diagonal()
        for batch in images.values():
            assert batch.shape == (4, 1, 8, 8) and 0 <= batch.min() and batch.max() <= 1
        assert (log_odds(model(images["plain"])).diagonal() > before).all()
        # The L1 variant maximizes (y^i as log-odds) - lambda * sum|x|: that, not y^i alone, rises.
        l1_objective = log_odds(model(images["l1"])).diagonal() - 0.02 * ascent.l1(images["l1"]).double()
        assert (l1_objective > before - 0.02 * ascent.l1(start).double()).all()
    # The L1 term pulls pixels in [0, 1] towards black.
    assert images["l1"].mean() < images["plain"].mean() - 0.05
    again = class_search.visualize_classes(model, (1, 8, 8), cfg, seed=3, show_progress=False)
    assert all(torch.equal(images[k], again[k]) for k in images)


def test_summary_numbers_come_from_the_network_and_the_judge(tiny_cnn):
    model = tiny_cnn()
    images = class_search.visualize_classes(model, (1, 8, 8), config(steps=5), seed=0, show_progress=False)
    rng = np.random.default_rng(0)
    train = rng.random((40, 1, 8, 8))
    clf = fit_pixel_classifier(train, np.arange(40) % 4, "knn")
    names = ["a", "b", "c", "d"]
    summary = classes.summarize(model, images, clf, names)
    assert summary["variant"].tolist() == [v for v in classes.VARIANTS for _ in names]
    assert summary["class"].tolist() == names * 3
    # Row j of each variant is image j: its logit and probability of class j by a plain forward.
    with torch.no_grad():
        logits = torch.cat([model(images[variant]) for variant in classes.VARIANTS])
    rows, wanted = torch.arange(12), torch.arange(12) % 4
    assert summary["logit"].to_numpy() == pytest.approx(logits[rows, wanted].numpy(), abs=1e-4)
    probability = torch.softmax(logits, dim=1)[rows, wanted]
    assert summary["probability"].to_numpy() == pytest.approx(probability.numpy(), abs=1e-6)
    assert summary["cnn_prediction"].tolist() == [names[i] for i in logits.argmax(dim=1)]
    judged = np.concatenate([clf.predict(images[variant]) for variant in classes.VARIANTS])
    assert summary["independent_prediction"].tolist() == [names[i] for i in judged]
    reference = {"independent_classifier": "knn", "test_images_mean_image_correlation_median": 0.5}
    fig = classes.classes_figure(images, summary, clf.class_means, names, config(steps=5), reference)
    assert len(fig.axes) == 1


def test_attainment_counts_by_hand():
    summary = pd.DataFrame({
        "class": ["a", "b", "a", "b"], "variant": ["plain", "plain", "l1", "l1"],
        "logit": [3.0, 1.0, 2.0, 2.0], "probability": [0.9, 0.2, 0.6, 0.7],
        "independent_prediction": ["a", "b", "b", "b"], "independent_probability": [0.5, 0.7, 0.0, 1.0],
        "independent_rank": [0, 0, 7, 0],
        "cnn_prediction": ["a", "a", "a", "b"], "mean_image_correlation": [0.1, 0.3, -0.2, 0.4],
        "class_index": [0, 1, 0, 1]})
    assert classes.attainment(summary, {"independent_classifier": "knn"}) == {
        "reference": {"independent_classifier": "knn"},
        "variants": {
            "plain": {"classes": 2, "cnn_correct": 1, "probability_min": 0.2, "independent_correct": 2,
                      "independent_top5": 2, "independent_probability_mean": 0.6, "mean_image_correlation_mean": 0.2,
                      "mean_image_correlation_min": 0.1},
            "l1": {"classes": 2, "cnn_correct": 2, "probability_min": 0.6, "independent_correct": 1,
                   "independent_top5": 1, "independent_probability_mean": 0.5, "mean_image_correlation_mean": 0.1,
                   "mean_image_correlation_min": -0.2},
        },
    }
    # An ImageNet judge: its verdicts, no correlation with class means.
    judged = summary.assign(mean_image_correlation=None)
    assert classes.attainment(judged, None)["variants"]["l1"] == {
        "classes": 2, "cnn_correct": 2, "probability_min": 0.6, "independent_correct": 1, "independent_top5": 1,
        "independent_probability_mean": 0.5}
    bare = summary.assign(independent_prediction=None, mean_image_correlation=None)
    assert classes.attainment(bare, None)["variants"]["l1"] == {"classes": 2, "cnn_correct": 2, "probability_min": 0.6}


def test_two_imagenet_judges_each_count_and_their_mean():
    """Lite0 and Lite1 judge the same images: judges.csv has one row per (variant, class,
    judge), summary.csv's judge columns are the first judge's, and attainment counts each
    judge and their mean; the figure names both."""
    from cnnpipe.judges.imagenet import ImageNetJudge, target_ranks
    from cnnpipe.networks.build import imagenet_class_names

    judges = [ImageNetJudge("efficientnet_lite0"), ImageNetJudge("efficientnet_lite1")]
    generator = torch.Generator().manual_seed(0)
    images = {variant: torch.rand(2, 3, 16, 16, generator=generator) for variant in ("plain", "regularized")}
    names, targets = imagenet_class_names(), [1, 130]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 1000)).eval()
    summary = classes.summarize(model, images, judges, names, targets)
    verdicts = classes.judges_table(images, judges, names, targets)
    assert list(verdicts.columns) == ["class", "class_index", "variant", "judge", "prediction",
                                      "prediction_probability", "probability", "rank", "top1", "top5"]
    assert len(verdicts) == 2 * 2 * 2 and verdicts["class"].tolist()[:4] == ["goldfish", "flamingo"] * 2
    for variant, batch in images.items():
        for judge in judges:
            rows = verdicts[(verdicts["variant"] == variant) & (verdicts["judge"] == judge.name)]
            proba = judge.predict_proba(batch)
            assert rows["rank"].tolist() == target_ranks(proba, targets).tolist()
            assert rows["probability"].to_numpy() == pytest.approx(proba[[0, 1], targets], abs=1e-6)
        first = verdicts[(verdicts["variant"] == variant) & (verdicts["judge"] == "efficientnet_lite0")]
        assert summary.loc[summary["variant"] == variant, "independent_rank"].tolist() == first["rank"].tolist()
    counts = classes.attainment(summary, None, verdicts)
    for variant, numbers in counts["variants"].items():
        assert list(numbers["judges"]) == ["efficientnet_lite0", "efficientnet_lite1"]
        for name, each in numbers["judges"].items():
            mine = verdicts[(verdicts["variant"] == variant) & (verdicts["judge"] == name)]
            assert each["top1"] == int((mine["rank"] == 0).sum()) and each["top5"] == int((mine["rank"] < 5).sum())
        assert numbers["judges_mean"]["top5"] == pytest.approx(np.mean([e["top5"] for e in numbers["judges"].values()]))
        assert numbers["independent_top5"] == numbers["judges"]["efficientnet_lite0"]["top5"]
    cfg = {**config(steps=5), "backbone": "efficientnet_lite0", "imagenet_regularized": None}
    fig = classes.classes_figure(images, summary, None, ["goldfish", "flamingo"], cfg, None, verdicts)
    text = " ".join(" ".join(t.get_text().split()) for t in fig.texts)
    assert "the judges, trained separately (efficientnet_lite0, efficientnet_lite1), name the class" in text
    assert "mean " in text


# --------------------------------------------------------------------------- the rule


OUTPUTS = ["results/classes/summary.csv", "results/classes/attainment.json", "results/classes/classes.png"]


def tiny_run_classes(tiny_run):
    """The tiny run's trained CNN, its prepared data, and its x* of every variant as the rule
    saved them (results/classes/images/<variant>/<class>.png), read back."""
    from cnnpipe.data.prepare import load_prepared
    from cnnpipe.networks.checkpoint import load_model

    results = tiny_run / "results"
    model = load_model(results / "train" / "model.pt").eval()
    data = load_prepared(results / "data" / "dataset.pt")
    folder = results / "classes" / "images"
    assert visible_files(folder) == sorted(classes.VARIANTS)
    images = {variant: read_images([folder / variant / f"{c}.png" for c in range(10)], "L")
              for variant in classes.VARIANTS}
    for variant in classes.VARIANTS:  # nothing but the ten classes' files
        assert visible_files(folder / variant) == sorted(f"{c}.png" for c in range(10))
    return model, data, images


def pixel_judge_accuracy(kind: str, data: dict) -> float:
    """The pixel classifier's test accuracy from scikit-learn directly: fitted here on the raw
    training pixels, scored on the test pixels (one BLAS thread: a fraction of a second)."""
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from threadpoolctl import threadpool_limits

    def pixels(images):
        return images.reshape(len(images), -1).double().numpy() / 255

    estimator = LogisticRegression(max_iter=1000) if kind == "logistic" else KNeighborsClassifier(5)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(pixels(data["train_images"]), data["train_labels"].numpy())
        return float(estimator.score(pixels(data["test_images"]), data["test_labels"].numpy()))


@pytest.mark.e2e
def test_rule_on_the_tiny_config(tiny_run, tiny_config, tmp_path):
    results = tiny_run / "results"
    summary = pd.read_csv(tiny_run / OUTPUTS[0], dtype={"class": str, "independent_prediction": str,
                                                        "cnn_prediction": str})
    counts = json.loads((tiny_run / OUTPUTS[1]).read_text())
    model, data, images = tiny_run_classes(tiny_run)
    names = [str(i) for i in range(10)]
    assert summary["variant"].tolist() == [v for v in classes.VARIANTS for _ in names]
    assert summary["class"].tolist() == names * 3

    train = data["train_images"].float() / 255
    weight = tiny_config["classes"]["l1_weight"]
    with torch.no_grad():
        # the L1 variant's objective, y^i as log-odds - lambda * sum|x|, of every training image
        train_l1 = log_odds(model(train)) - weight * ascent.l1(train).double()[:, None]
        logits = {variant: model(batch) for variant, batch in images.items()}
    best_real_l1 = torch.stack([train_l1[data["train_labels"] == c, c].max() for c in range(10)])
    for variant, batch in images.items():
        rows = summary[summary["variant"] == variant]
        own = logits[variant].diagonal()
        # The table's logit and verdict are those of a plain forward pass on x*.
        assert rows["logit"].to_numpy() == pytest.approx(own.numpy(), abs=1e-3)
        predicted = [names[i] for i in logits[variant].argmax(dim=1)]
        assert rows["cnn_prediction"].tolist() == predicted
        assert counts["variants"][variant]["cnn_correct"] == sum(p == n for p, n in zip(predicted, names))
        odds = log_odds(logits[variant]).diagonal()
        if variant == "plain":
            # The objective y^i itself (reached: 0.999 at the lowest).
            assert (torch.sigmoid(odds) > 0.99).all(), torch.sigmoid(odds).tolist()
        if variant == "l1":
            # Its objective above that of every training image of the class (the regularized
            # variant trades the objective for smoothness).
            own_l1 = odds - weight * ascent.l1(batch).double()
            assert (own_l1 > best_real_l1).all(), (own_l1 - best_real_l1).tolist()

    # The judge's test accuracy, from scikit-learn directly (reached: 0.964, logistic regression).
    reference = counts["reference"]
    kind = tiny_config["classes"]["independent_classifier"]
    assert reference["independent_classifier"] == kind
    assert reference["independent_test_accuracy"] == pytest.approx(pixel_judge_accuracy(kind, data), abs=0.005)
    assert reference["independent_test_accuracy"] >= 0.85

    # The rule's function again (one thread, as the rule runs it): the same bytes.
    classes.run_classes(
        tiny_config["classes"], seed=tiny_config["seed"], device_name="cpu", summary_csv=tmp_path / "summary.csv",
        attainment_json=tmp_path / "attainment.json", grid_png=tmp_path / "classes.png",
        image_dir=tmp_path / "images", model_path=results / "train" / "model.pt", data_path=results / "data" / "dataset.pt",
    )
    for name in OUTPUTS:
        assert (tmp_path / Path(name).name).read_bytes() == (tiny_run / name).read_bytes(), name
    for file in (results / "classes" / "images").rglob("*.png"):
        relative = file.relative_to(results / "classes" / "images")
        assert (tmp_path / "images" / relative).read_bytes() == file.read_bytes(), relative


@pytest.mark.e2e
@pytest.mark.parametrize("variant", ["plain", "l1", "regularized"])
def test_each_class_image_is_the_networks_top1_after_png(tiny_run, variant):
    """What the stage is for: x*_i, its 8-bit PNG file read back, is the network's class i."""
    model, _, images = tiny_run_classes(tiny_run)
    with torch.no_grad():
        top = model(images[variant]).argmax(dim=1)
    assert top.tolist() == list(range(10))


@pytest.mark.e2e
def test_the_logit_objective_can_miss_the_top_class_where_the_probability_does_not(tiny_run, tiny_config):
    """Why y^i is the softmax output: on the tiny CNN, maximizing the logit of class 1 raises
    every other logit too, and another class ends on top; maximizing log y^i does not."""
    model = load_model(tiny_run / "results" / "train" / "model.pt")
    shape = (1, tiny_config["dataset"]["image_size"], tiny_config["dataset"]["image_size"])
    top1 = {}
    for objective in ("logit", "probability"):
        cfg = {**tiny_config["classes"], "objective": objective}
        plain = class_search.visualize_classes(model, shape, cfg, show_progress=False)["plain"]
        with torch.no_grad():
            top1[objective] = int((model(plain).argmax(dim=1) == torch.arange(10)).sum())
    assert top1["probability"] == 10 and top1["logit"] < 10, top1


@pytest.mark.e2e
def test_rule_on_an_imagenet_backbone_needs_no_training(tmp_path):
    """With `backbone: efficientnet_lite0` the rule depends on no checkpoint or dataset, and
    visualizes the named ImageNet classes; ImageNet is not here, so no pixel classifier: the
    independent ImageNet judge (Lite1) gives its verdicts instead."""
    override = tmp_path / "backbone.yaml"
    override.write_text(yaml.safe_dump({"classes": {
        "backbone": "efficientnet_lite0", "imagenet_classes": [1, 130], "image_size": 32, "steps": 3,
        "imagenet_regularized": {"canvas": 48, "steps": 3}}}))
    snakemake(tmp_path, "--cores", "2", OUTPUTS[0], configfiles=(TINY, override))
    assert not (tmp_path / "results/train").exists() and not (tmp_path / "results/data").exists()
    summary = pd.read_csv(tmp_path / OUTPUTS[0])
    assert summary["class"].unique().tolist() == ["goldfish", "flamingo"]
    assert summary["independent_prediction"].notna().all() and summary["mean_image_correlation"].isna().all()
    counts = json.loads((tmp_path / OUTPUTS[1]).read_text())
    assert counts["reference"] is None and counts["judge"] == "efficientnet_lite1"
    for variant, numbers in counts["variants"].items():
        ranks = summary.loc[summary["variant"] == variant, "independent_rank"]
        assert numbers["independent_correct"] == int((ranks == 0).sum())
        assert numbers["independent_top5"] == int((ranks < 5).sum())
    assert "efficientnet_lite0, 2 classes on 3x32x32 images" in (tmp_path / "results/logs/classes.log").read_text()
    # every judge's verdicts (here one): the summary's judge columns, row by row
    verdicts = pd.read_csv(tmp_path / "results/classes/judges.csv")
    assert verdicts["judge"].unique().tolist() == ["efficientnet_lite1"] and len(verdicts) == len(summary)
    assert verdicts["rank"].tolist() == summary["independent_rank"].tolist()
    assert counts["judges"] == ["efficientnet_lite1"]
    # The judge's numbers are its verdicts on the saved files themselves.
    from cnnpipe.judges.imagenet import ImageNetJudge, target_ranks

    judge = ImageNetJudge("efficientnet_lite1")
    for variant in classes.VARIANTS:
        files = [tmp_path / f"results/classes/images/{variant}/{name}.png" for name in ("goldfish", "flamingo")]
        proba = judge.predict_proba(read_images(files, "RGB"))
        rows = summary[summary["variant"] == variant]
        assert rows["independent_probability"].to_numpy() == pytest.approx(proba[[0, 1], [1, 130]], abs=1e-6)
        assert rows["independent_rank"].tolist() == target_ranks(proba, [1, 130]).tolist()
