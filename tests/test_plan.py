"""The parse-time module: light to import, and consistent with what it stands in for."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnpipe import backbones, plan
from cnnpipe.backbone_names import BACKBONES, DOWNLOADABLE

ROOT = Path(__file__).resolve().parents[1]
MODEL = {"conv_channels": [4, 8], "hidden": [16]}


def test_importing_plan_does_not_import_torch():
    code = "import sys, cnnpipe.plan, cnnpipe.runlock; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_checking_no_named_layers_does_not_import_torch():
    code = ("import sys, cnnpipe.plan as p; p.check_layer_names('dream.layers', 'vgg19', [], None); "
            "p.filter_layers({'backbone': 'trained', 'layers': []}, {'conv_channels': [4]}); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_weight_files_match_torchvision_urls(tmp_path):
    for name in DOWNLOADABLE:
        assert plan.weights_file(name, tmp_path) == backbones.weights_path(name, tmp_path)


def test_the_schema_offers_only_backbones_the_package_knows_and_each_of_them_somewhere():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    offered = {section: spec["properties"]["backbone"]["enum"]
               for section, spec in schema["properties"].items() if "backbone" in spec.get("properties", {})}
    assert {"filters", "classes", "fooling", "dream", "style"} <= set(offered)
    assert all(set(names) <= set(BACKBONES) for names in offered.values()), offered
    assert set().union(*offered.values()) == set(BACKBONES)


def test_an_unknown_backbone_is_refused_naming_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"filters\.backbone: 'resnet' is not one of \['trained', 'efficientnet"):
        plan.filter_layers({"backbone": "resnet", "layers": ["conv1"]}, MODEL)


def test_trained_layer_names_are_checked_naming_the_key_and_the_closest_names():
    plan.check_layer_names("dream.layers", "trained", ["conv2", "relu1", "fc1"], MODEL)
    with pytest.raises(ValueError, match=r"^style\.style_layers: layer 'conv3' not found in LectureCNN; "
                                         r"did you mean .*'conv1'"):
        plan.check_layer_names("style.style_layers", "trained", ["conv1", "conv3"], MODEL)


def test_with_an_input_shape_a_layer_must_give_a_feature_map():
    plan.check_layer_names("filters.layers", "trained", ["conv1", "relu2"], MODEL, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"^filters\.layers: layer 'fc1' of backbone 'trained' gives an output of "
                                         r"shape \(1, 16\), not a feature map \[B, C, H, W\]"):
        plan.check_layer_names("filters.layers", "trained", ["conv1", "fc1"], MODEL, input_shape=(1, 8, 8))


def test_imagenet_layer_names_are_checked_on_the_meta_device():
    plan.check_layer_names("style.content_layers", "vgg19", ["conv4_2", "features.2"])
    with pytest.raises(ValueError, match=r"^dream\.layers: layer 'conv4_5' is not in backbone 'vgg19'; "
                                         r"close matches: \[.*'conv4_4'"):
        plan.check_layer_names("dream.layers", "vgg19", ["conv4_5"])


def test_input_sizes_are_checked_against_the_network_only_where_they_could_fail():
    plan.check_input_size("classes.image_size", "vgg19", 32)  # the smallest that runs
    with pytest.raises(ValueError, match=r"fooling.image_size: 31 px .* 'vgg19'.* at least 32 px"):
        plan.check_input_size("fooling.image_size", "vgg19", 31)
    # Style transfer reads VGG19 only up to conv5_1, which runs at 16 px.
    plan.check_input_size("style.image_size", "vgg19", 16, [])
    code = ("import sys, cnnpipe.plan as p; p.check_input_size('classes.image_size', 'vgg19', 128); "
            "p.check_input_size('classes.image_size', 'trained', 16); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
