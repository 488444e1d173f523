"""The independent ImageNet judges: offline, right about the bundled photos, never the generator;
a list of them checked entry by entry, each one's verdicts and their mean; the pooled embedding
and content retention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnpipe.io.images import pil_to_tensor
from cnnpipe.io.photos import sample_photo
from cnnpipe.judges.imagenet import ImageNetJudge, target_ranks
from cnnpipe.judges.specs import check_judge, check_judges, judges_config
from cnnpipe.judges.style_verdict import content_retention, retention
from cnnpipe.judges.verdicts import count_text, judge_counts, judge_verdicts
from cnnpipe.networks.build import imagenet_class_names


@pytest.fixture(scope="module")
def judge():
    return ImageNetJudge("efficientnet_lite1")


def test_the_default_judge_loads_offline_and_knows_the_bundled_photos(judge):
    from cnnpipe.io.images import pil_to_tensor

    assert judge.kind == "efficientnet_lite1" and judge.size == 240
    names = imagenet_class_names()
    # whole photos at their own sizes: the judge resizes them to 240 px itself
    proba = np.concatenate([judge.predict_proba(pil_to_tensor(sample_photo(name))[None])
                            for name in ("chelsea", "coffee")])
    assert proba.shape == (2, 1000) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    top = proba.argmax(axis=1)
    assert 281 <= top[0] <= 285, names[top[0]]  # a cat
    assert top[1] == 967, names[top[1]]  # espresso
    gray = judge.predict_proba(torch.full((1, 1, 64, 64), 0.5))
    assert gray.shape == (1, 1000)


def test_target_ranks_count_the_classes_ranked_above_the_target():
    proba = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    assert target_ranks(proba, [1, 1]).tolist() == [0, 2]
    assert target_ranks(proba, [2, 0]).tolist() == [1, 0]


def test_the_judge_must_be_another_imagenet_network(tmp_path):
    assert check_judge("classes", "efficientnet_lite1", "efficientnet_lite0").arch == "efficientnet_lite1"
    assert check_judge("classes", "efficientnet_lite1", "trained") is None  # the pixel classifier judges
    assert check_judge("fooling", None, "efficientnet_lite0") is None
    with pytest.raises(ValueError, match=r"^classes\.judge: 'efficientnet_lite1' is the network the images are "
                                         r"optimized on \(classes\.backbone\).*e\.g\. efficientnet_lite0"):
        check_judge("classes", "efficientnet_lite1", "efficientnet_lite1")
    weights = tmp_path / "five.pt"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match=r"^fooling\.judge: 'resnet18 \(weights .*five\.pt\)' does not predict "
                                         r"ImageNet's 1000 classes"):
        check_judge("fooling", {"arch": "resnet18", "weights": str(weights), "num_classes": 5}, "vgg19")
    with pytest.raises(ValueError, match=r"^fooling\.judge: 'resnt18' is not a known network"):
        check_judge("fooling", "resnt18", "vgg19")


def test_a_judge_list_is_checked_entry_by_entry(tmp_path):
    """``judge`` takes one spec (a list of one) or a non-empty list of distinct specs; an error
    names the entry at fault."""
    one = check_judges("classes", "efficientnet_lite1", "efficientnet_lite0")
    assert [spec.arch for spec in one] == ["efficientnet_lite1"]
    assert check_judges("classes", ["efficientnet_lite1"], "efficientnet_lite0") == one
    two = check_judges("style", ["efficientnet_lite1", "resnet18"], "efficientnet_lite0")
    assert [spec.arch for spec in two] == ["efficientnet_lite1", "resnet18"]
    assert check_judges("fooling", None, "efficientnet_lite0") == []
    assert check_judges("classes", ["efficientnet_lite1", "resnet18"], "trained") == []  # the pixel classifier
    # a rule's params: one judge as the plain spec, so `judge: x` and `judge: [x]` rerun nothing
    assert judges_config(one) == "efficientnet_lite1" and judges_config([]) is None
    assert judges_config(two) == ["efficientnet_lite1", "resnet18"]
    with pytest.raises(ValueError, match=r"^classes\.judge\[1\]: 'efficientnet_lite0' is the network the images "
                                         r"are optimized on \(classes\.backbone\)"):
        check_judges("classes", ["efficientnet_lite1", "efficientnet_lite0"], "efficientnet_lite0")
    with pytest.raises(ValueError, match=r"^fooling\.judge\[2\]: 'resnet18' is listed already as "
                                         r"fooling\.judge\[0\]"):
        check_judges("fooling", ["resnet18", "efficientnet_lite1", {"arch": "resnet18"}], "efficientnet_lite0")
    with pytest.raises(ValueError, match=r"^style\.judge\[1\]: 'resnt18' is not a known network"):
        check_judges("style", ["efficientnet_lite1", "resnt18"], "efficientnet_lite0")
    weights = tmp_path / "five.pt"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match=r"^classes\.judge\[0\]: 'resnet18 \(weights .*five\.pt\)' does not "
                                         r"predict ImageNet's 1000 classes"):
        check_judges("classes", [{"arch": "resnet18", "weights": str(weights), "num_classes": 5}], "vgg19")
    with pytest.raises(ValueError, match=r"^style\.judge: an empty list"):
        check_judges("style", [], "efficientnet_lite0")
    with pytest.raises(ValueError, match=r"^style\.judge\[0\]: null inside a list"):
        check_judges("style", [None], "efficientnet_lite0")


@pytest.fixture(scope="module")
def lite0():
    return ImageNetJudge("efficientnet_lite0")


def test_the_embedding_is_what_the_classifier_reads(judge, lite0):
    """``embed`` against the networks' own pooled features, computed without hooks: timm's
    ``forward_head(pre_logits=True)`` for EfficientNet-Lite, ResNet's layers run by hand; the
    last linear layer maps the embedding to the logits."""
    import torch.nn.functional as F

    from cnnpipe.networks.build import load_backbone

    images = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    for lite in (lite0, judge):
        batch = F.interpolate(images, size=(lite.size, lite.size), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
        with torch.no_grad():
            direct = lite.model.forward_head(lite.model.forward_features(lite.model.normalize(batch)), pre_logits=True)
            logits = lite.model(batch)
        embedded = lite.embed(images)
        assert embedded.shape == (2, 1280) and torch.allclose(embedded, direct, atol=1e-5)
        assert torch.allclose(lite.model.classifier(embedded), logits, atol=1e-4)
    torch.manual_seed(0)
    resnet = ImageNetJudge("resnet18", model=load_backbone("resnet18", pretrained=False))
    batch = F.interpolate(images, size=(224, 224), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    with torch.no_grad():
        x = resnet.model.normalize(batch)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"):
            x = getattr(resnet.model, name)(x)
    embedded = resnet.embed(images)
    assert embedded.shape == (2, 512) and torch.allclose(embedded, x.flatten(1), atol=1e-5)
    # no hook is left behind
    assert not any(module._forward_pre_hooks for module in resnet.model.modules())


def test_verdicts_and_counts_of_two_judges(judge, lite0):
    """Lite0 and Lite1 judge the same images: one row per image and judge, each judge's counts
    from its own probabilities, and their mean."""
    photos = torch.stack([pil_to_tensor(sample_photo(name).resize((64, 48))) for name in ("chelsea", "coffee")])
    targets = [282, 967]  # tiger cat, espresso
    names = imagenet_class_names()
    verdicts = judge_verdicts([lite0, judge], photos, targets, names)
    assert verdicts["judge"].tolist() == ["efficientnet_lite0"] * 2 + ["efficientnet_lite1"] * 2
    assert verdicts["image"].tolist() == [0, 1, 0, 1]
    for one, rows in zip((lite0, judge), (verdicts.iloc[:2], verdicts.iloc[2:])):
        proba = one.predict_proba(photos)
        assert rows["probability"].to_numpy() == pytest.approx(proba[[0, 1], targets], abs=1e-6)
        assert rows["rank"].tolist() == target_ranks(proba, targets).tolist()
        assert rows["prediction"].tolist() == [names[i] for i in proba.argmax(axis=1)]
        assert rows["top5"].tolist() == (target_ranks(proba, targets) < 5).tolist()
    counts = judge_counts(verdicts)
    assert list(counts["judges"]) == ["efficientnet_lite0", "efficientnet_lite1"]
    for name, numbers in counts["judges"].items():
        mine = verdicts[verdicts["judge"] == name]
        assert numbers["top1"] == int((mine["rank"] == 0).sum()) and numbers["top5"] == int((mine["rank"] < 5).sum())
    assert counts["mean"]["top5"] == pytest.approx(np.mean([n["top5"] for n in counts["judges"].values()]))
    assert counts["mean"]["top1"] == pytest.approx(np.mean([n["top1"] for n in counts["judges"].values()]))
    assert counts["judges"]["efficientnet_lite1"]["top5"] == 2  # both photos' classes are in Lite1's top 5
    assert "mean " in count_text(counts, 2) and count_text(counts, 2).startswith("efficientnet_lite0 ")


def test_content_retention_is_one_at_the_photo_and_zero_at_the_style(judge):
    """The rescaled cosine of the judges' embeddings against a direct computation, and its two
    anchors; a blend takes the weighted mean of the style images' cosines; a style image that
    points where the photo does leaves it undefined."""
    photo = pil_to_tensor(sample_photo("chelsea").resize((60, 40)))
    styles = [pil_to_tensor(sample_photo(name).resize((48, 48))) for name in ("ihc", "hubble_deep_field")]
    assert content_retention(judge, photo, styles[0], photo) == pytest.approx(1.0, abs=1e-6)
    assert content_retention(judge, photo, styles[0], styles[0]) == pytest.approx(0.0, abs=1e-6)
    result = (0.5 * photo + 0.5 * torch.nn.functional.interpolate(styles[0][None], size=(40, 60))[0]).clamp(0, 1)
    import torch.nn.functional as F

    def embedding(image):  # hook-free: timm's pooled features
        batch = F.interpolate(image[None], size=(judge.size, judge.size), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
        with torch.no_grad():
            return judge.model.forward_head(judge.model.forward_features(judge.model.normalize(batch)),
                                            pre_logits=True)[0].double()

    e_photo, e_result, e_ihc, e_hubble = (embedding(image) for image in (photo, result, *styles))
    cos = torch.nn.functional.cosine_similarity
    c_result, c_ihc, c_hubble = (float(cos(e, e_photo, dim=0)) for e in (e_result, e_ihc, e_hubble))
    assert content_retention(judge, photo, styles[0], result) == pytest.approx((c_result - c_ihc) / (1 - c_ihc),
                                                                                abs=1e-4)
    blended = 0.25 * c_ihc + 0.75 * c_hubble
    assert content_retention(judge, photo, styles, result, [1, 3]) == pytest.approx(
        (c_result - blended) / (1 - blended), abs=1e-4)
    assert 0 < content_retention(judge, photo, styles[0], result) < 1
    assert np.isnan(retention(0.9, 1.0)) and retention(0.5, 0.0) == 0.5 and retention(-0.5, 0.5) == -2.0
