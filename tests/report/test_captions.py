"""The report's key numbers, formatted from the files each stage writes."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from pipeline import ROOT, render_caption

from cnnpipe.report import captions


def test_training_numbers_come_from_eval_json_and_metrics(tmp_path):
    (tmp_path / "eval.json").write_text(json.dumps({
        "dataset": "digits", "epochs": 3, "parameters": 105866, "test_accuracy": 0.98611,
        "test_loss": 0.0459, "train_accuracy": 0.9993, "classes": list("0123456789")}))
    pd.DataFrame({"epoch": [1, 2, 3], "test_accuracy": [0.5, 0.99, 0.98611]}).to_csv(tmp_path / "m.csv", index=False)
    lines = captions.training_key_numbers(tmp_path / "eval.json", tmp_path / "m.csv")
    assert lines[0].startswith("Test accuracy **98.6%** (test loss 0.0459) on digits after 3 epochs")
    assert "99.0% at epoch 2" in lines[1] and "105,866 trainable parameters" in lines[2]


def test_class_numbers_in_lecture_order_with_and_without_a_judge(tmp_path):
    judged = {"plain": 1, "l1": 2, "regularized": 3}
    variants = {name: {"classes": 10, "cnn_correct": 10, "probability_min": 0.99, "independent_correct": n,
                       "mean_image_correlation_mean": n / 10} for name, n in judged.items()}
    reference = {"independent_classifier": "knn", "independent_test_accuracy": 0.95,
                 "test_images_mean_image_correlation_median": 0.9}
    # Keys sorted as write_json sorts them; the caption keeps the lecture's order.
    (tmp_path / "a.json").write_text(json.dumps({"reference": reference, "variants": variants}, sort_keys=True))
    lines = captions.classes_key_numbers(tmp_path / "a.json")
    assert [line.split(":")[0] for line in lines[:3]] == ["plain", "L1", "regularized"]
    assert "the pixel classifier for **2 of 10**" in lines[1] and "knn pixel classifier's accuracy 95.0%" in lines[4]
    assert lines[3] == ("Mean r grows from the plain (0.10) to the regularized images (0.30); the best variant's "
                        "mean r is below the median r of real test images (0.90).")
    # The trend is stated as the numbers go, not as the lecture hopes.
    flipped = {name: {**n, "mean_image_correlation_mean": 1 - n["mean_image_correlation_mean"]}
               for name, n in variants.items()}
    (tmp_path / "f.json").write_text(json.dumps({"reference": reference, "variants": flipped}))
    assert "Mean r does not grow from the plain (0.90) to the regularized images (0.70); the best variant's " \
           "mean r is at or above" in captions.classes_key_numbers(tmp_path / "f.json")[3]
    bare = {name: {k: v for k, v in n.items() if k in ("classes", "cnn_correct", "probability_min")}
            for name, n in variants.items()}
    (tmp_path / "b.json").write_text(json.dumps({"reference": None, "variants": bare}))
    lines = captions.classes_key_numbers(tmp_path / "b.json")
    assert "pixel classifier" not in " ".join(lines[:3]) and "training set is not here" in lines[-1]


def test_class_and_fooling_numbers_of_several_judges(tmp_path):
    """Each judge's top-1 and top-5 counts and their mean; one judge keeps its former line."""
    each = {"efficientnet_lite1": {"top1": 8, "top5": 9, "probability_mean": 0.5},
            "resnet50": {"top1": 5, "top5": 8, "probability_mean": 0.3}}
    variants = {"regularized": {"classes": 10, "cnn_correct": 10, "probability_min": 0.9, "independent_correct": 8,
                                "independent_top5": 9, "judges": each, "judges_mean": {"top1": 6.5, "top5": 8.5}}}
    (tmp_path / "c.json").write_text(json.dumps({"reference": None, "variants": variants, "judge": "efficientnet_lite1",
                                                 "judges": list(each)}))
    lines = captions.classes_key_numbers(tmp_path / "c.json")
    assert ("the independent judges put it first for **6.5 of 10** and in their top 5 for **8.5 of 10** on average "
            "(top-1 and top-5 counts: efficientnet\\_lite1 8 and 9; resnet50 5 and 8)") in lines[0]
    assert lines[-1].startswith("The judges are efficientnet\\_lite1, resnet50, each trained separately")
    one = {"regularized": {**variants["regularized"], "judges": {"efficientnet_lite1": each["efficientnet_lite1"]},
                           "judges_mean": {"top1": 8, "top5": 9}}}
    (tmp_path / "o.json").write_text(json.dumps({"reference": None, "variants": one, "judge": "efficientnet_lite1",
                                                 "judges": ["efficientnet_lite1"]}))
    lines = captions.classes_key_numbers(tmp_path / "o.json")
    assert "the independent judge puts it first for **8 of 10** and in its top 5 for **9 of 10**" in lines[0]
    assert lines[-1].startswith("The judge is efficientnet\\_lite1, trained separately")
    table = pd.DataFrame({"class": ["goldfish", "flamingo"], "confidence_after_png": [0.999, 0.999],
                          "reached_target": [True, True], "iterations": [5, 6],
                          "independent_prediction": ["goldfish", "lion"], "independent_rank": [0, 7]})
    table.to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame({"class": ["goldfish", "flamingo"] * 2, "judge": ["efficientnet_lite1"] * 2 + ["resnet50"] * 2,
                  "rank": [0, 7, 3, 0], "top1": [True, False, False, True], "top5": [True, False, True, True]}).to_csv(
        tmp_path / "v.csv", index=False)
    lines = captions.fooling_key_numbers(tmp_path / "t.csv", "gradient", 0.99, judge="efficientnet_lite1",
                                         judges_csv=tmp_path / "v.csv")
    assert lines[-1] == ("All 2 judges, each trained separately (top-1 and top-5 counts of 2): efficientnet\\_lite1 "
                         "1 and 1; resnet50 1 and 2; mean **1** top-1 and **1.5** top-5.")


def test_fooling_numbers_round_down_and_count_the_judge(tmp_path):
    table = pd.DataFrame({"class": ["0", "1"], "confidence_after_png": [0.99995, 0.9989],
                          "reached_target": [True, False], "iterations": [35, 500],
                          "independent_prediction": ["0", "7"]})
    table.to_csv(tmp_path / "g.csv", index=False)
    lines = captions.fooling_key_numbers(tmp_path / "g.csv", "gradient", 0.999)
    assert lines[0] == ("**1 of 2** classes at a confidence >= 99.90% after saving as PNG; the lowest is "
                        "99.890%.")
    assert lines[1] == "The last class to reach it needed 35 steps."
    assert lines[2] == "The pixel classifier names the target class for 1 of 2 images."
    table.assign(independent_prediction=None, confidence_after_png=1.0).to_csv(tmp_path / "n.csv", index=False)
    lines = captions.fooling_key_numbers(tmp_path / "n.csv", "evolution", 0.99)
    assert len(lines) == 2 and lines[0].endswith("the lowest is >= 99.9999%.")


def test_dream_and_style_numbers(tmp_path):
    pd.DataFrame({"name": ["cat"], "layers": ["blocks.3"], "energy_before": [88.31], "energy_after": [194.3],
                  "energy_ratio": [2.2], "octaves": [4], "dream_width": [451], "dream_height": [300]}).to_csv(
        tmp_path / "d.csv", index=False)
    assert captions.dream_key_numbers(tmp_path / "d.csv") == [
        "cat: energy (mean a^2 per layer, summed) at blocks\\.3 **88.3 -> 194** (x2.20), 4 octaves at 451x300 px."]
    pd.DataFrame({"content": ["cat"], "style": ["ihc"], "backbone": ["vgg19"], "optimizer": ["lbfgs"],
                  "evaluations": [300], "content_loss_initial": [0.0], "content_loss_final": [0.5],
                  "style_loss_initial": [0.56], "style_loss_final": [0.0566], "total_loss_initial": [11.29],
                  "total_loss_final": [1.88], "content_layers": ["conv4_2"],
                  "style_layers": ["conv1_1 conv2_1"]}).to_csv(tmp_path / "s.csv", index=False)
    lines = captions.style_key_numbers(tmp_path / "s.csv")
    assert ("300 lbfgs evaluations on vgg19; content layer(s) conv4\\_2, style layers conv1\\_1 conv2\\_1"
            in lines[0])
    assert lines[1] == "style loss **0.56 -> 0.0566**, content loss 0 -> 0.5, total 11.3 -> **1.88**."
    judged = {"judge": "efficientnet_lite1", "style_distance": 0.302, "content_kept": False,
              "content_class": "bobsled", "content_probability": 0.18, "content_rank": 26, "result_class": "dumbbell"}
    pd.read_csv(tmp_path / "s.csv").assign(**judged).to_csv(tmp_path / "j.csv", index=False)
    lines = captions.style_key_numbers(tmp_path / "j.csv")
    assert "style distance **0.30**" in lines[2] and "content kept: **no**" in lines[2]
    # content retention, the headline where the table has it; a table written before it goes without
    assert "retention" not in lines[2]
    pd.read_csv(tmp_path / "j.csv").assign(content_retention=0.613).to_csv(tmp_path / "r.csv", index=False)
    assert ("The judge, efficientnet\\_lite1, trained separately and never optimized against: content retention "
            "**0.61** (the cosine of its pooled embeddings") in captions.style_key_numbers(tmp_path / "r.csv")[2]
    assert "its top-1 for the photo, bobsled at 18%, is not in its top 5 for the result (rank 27)" in lines[2]
    # a table written before the probability and rank columns still gets its caption
    pd.read_csv(tmp_path / "j.csv").drop(columns=["content_probability", "content_rank"]).to_csv(
        tmp_path / "old.csv", index=False)
    assert "its top-1 for the photo, bobsled, is not in its top 5 for the result;" in captions.style_key_numbers(
        tmp_path / "old.csv")[2]


def test_an_empty_caption_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match="no key numbers"):
        captions.write_caption(tmp_path / "x.rst", [])
    assert not (tmp_path / "x.rst").exists()
    captions.write_caption(tmp_path / "y.rst", ["a", "b"])
    assert (tmp_path / "y.rst").read_text() == "* a\n* b\n"


OWN = {"arch": "resnet18", "weights": "mine.pt", "num_classes": 5}


@pytest.mark.parametrize("template", ["classes", "fooling"])
@pytest.mark.parametrize("backbone", ["trained", "efficientnet_lite0", "own", "checkpoint"])
def test_class_stage_captions_render_for_every_kind_of_network(tmp_path, monkeypatch, template, backbone):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config[template]["backbone"] = {"own": OWN, "checkpoint": {"checkpoint": "run2/model.pt"}}.get(backbone, backbone)
    if backbone == "own":
        config[template].update(imagenet_classes=None, image_size=None)
    monkeypatch.chdir(tmp_path)  # Snakemake renders from the working directory
    captions.write_caption("numbers.rst", ["**3 of 10** classes"])
    html = render_caption(template, config, caption="numbers.rst", params={template: config[template]},
                          method="gradient")
    assert "system-message" not in html and "<strong>3 of 10</strong> classes" in html
    if backbone == "trained":
        assert "raw pixels" in html and "Network:" not in html
        return
    assert "raw pixels" not in html
    if backbone == "efficientnet_lite0":
        assert "Network:\n<strong>efficientnet_lite0</strong>,\nfor the ImageNet classes\n1, 130, 207" in html
        assert "at\n128 px" in html
    elif backbone == "own":
        assert "Network:\n<strong>resnet18</strong>,\nevery class at\nits native size" in html
    else:
        assert "Network:\n<strong>the checkpoint run2/model.pt</strong>,\nevery class, at its own image size" in html


@pytest.mark.parametrize("template", ["filters", "dream", "style"])
def test_captions_name_no_layer_of_a_backbone_other_than_the_configured_one(tmp_path, monkeypatch, template):
    """With vgg19 and its default layers, no EfficientNet layer name (blocks.N, stem) or name of
    another network appears: the layers used come from the run's CSV, not from the template."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config[template]["backbone"] = "vgg19"
    if template != "filters":
        config[template].update({key: [] for key in ("layers", "content_layers", "style_layers") if key in config[template]})
    monkeypatch.chdir(tmp_path)
    captions.write_caption("numbers.rst", ["the run's numbers"])
    html = render_caption(template, config, caption="numbers.rst", params={template: config[template]},
                          layer="conv3_1")
    assert "system-message" not in html and "the run's numbers" in html
    for foreign in ("blocks.", "stem", "efficientnet", "Lite0", "inception"):
        assert foreign not in html, foreign


HOSTILE = [
    "`click <javascript:alert(1)>`_",
    "click_",
    ":raw-html:`<script>alert(1)</script>`",
    "<b>bold</b> *em* **strong** |sub| [1]_",
    "back\\slash",
    "new\nline",
    "café",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_shows_as_its_characters_and_nothing_else(name):
    from docutils.core import publish_parts

    html = publish_parts(f"* {captions.rst_text(name)}: x\n", writer="html",
                         settings_overrides={"report_level": 1, "halt_level": 5})["body"]
    assert "system-message" not in html and "<a " not in html and "<script" not in html and "<b>" not in html
    assert "<em>" not in html and "<strong>" not in html
    shown = name.replace("\n", "\\n").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert f"<li>{shown}: x</li>" in html.replace('"', "&quot;").replace("&quot;", '"')
