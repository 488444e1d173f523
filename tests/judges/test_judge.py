"""The independent ImageNet judge: offline, right about the bundled photos, never the generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnpipe.io.photos import sample_photo
from cnnpipe.judges.imagenet import ImageNetJudge, target_ranks
from cnnpipe.judges.specs import check_judge
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
