"""The parse-time module: light to import, and consistent with what it stands in for."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cnnpipe.workflow import checks, probes

ROOT = Path(__file__).resolve().parents[2]
MODEL = {"conv_channels": [4, 8], "hidden": [16]}


def test_importing_plan_does_not_import_torch():
    code = "import sys, cnnpipe.workflow.checks, cnnpipe.workflow.runlock; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_checking_no_named_layers_does_not_import_torch():
    code = ("import sys, cnnpipe.workflow.probes as p; p.check_layer_names('dream.layers', 'vgg19', [], None); "
            "import cnnpipe.workflow.checks as c; c.filter_layers({'backbone': 'trained', 'layers': []}, {'conv_channels': [4]}); "
            "p.layer_units('atlas.layers', 'trained', ['conv1', 'fc1'], {'conv_channels': [4], 'hidden': [8]}); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_every_stage_takes_the_one_backbone_spec_of_the_schema():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    stages = {section for section, spec in schema["properties"].items()
              if spec.get("properties", {}).get("backbone") == {"$ref": "#/$defs/backbone"}}
    assert stages == {"filters", "atlas", "classes", "fooling", "dream", "style"}
    assert schema["properties"]["first_layer_filters"]["properties"]["backbones"]["items"] == {
        "$ref": "#/$defs/backbone"}


def test_an_unknown_backbone_is_refused_naming_the_key_and_the_closest_names():
    with pytest.raises(ValueError, match=r"filters\.backbone: 'resnet5' is not a known network; did you mean "
                                         r"'resnet50'"):
        checks.filter_layers({"backbone": "resnet5", "layers": ["conv1"]}, MODEL)


def test_trained_layer_names_are_checked_naming_the_key_and_the_closest_names():
    probes.check_layer_names("dream.layers", "trained", ["conv2", "relu1", "fc1"], MODEL)
    with pytest.raises(ValueError, match=r"^style\.style_layers: layer 'conv3' not found in LectureCNN; "
                                         r"did you mean .*'conv1'"):
        probes.check_layer_names("style.style_layers", "trained", ["conv1", "conv3"], MODEL)


def test_with_an_input_shape_a_layer_must_give_a_feature_map_or_for_filters_units():
    probes.check_layer_names("filters.layers", "trained", ["conv1", "relu2"], MODEL, input_shape=(1, 8, 8))
    probes.check_layer_names("filters.layers", "trained", ["fc1"], MODEL, input_shape=(1, 8, 8), units_allowed=True)
    with pytest.raises(ValueError, match=r"^dream\.layers: layer 'fc1' of backbone 'trained' gives an output of "
                                         r"shape \(1, 16\), not a feature map \[B, C, H, W\] \(this stage needs a "
                                         r"layer with a spatial output\)"):
        probes.check_layer_names("dream.layers", "trained", ["conv1", "fc1"], MODEL, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"^style\.style_layers: layer 'logits' of backbone 'resnet18' gives an "
                                         r"output of shape \(1, 1000\)"):
        probes.check_layer_names("style.style_layers", "resnet18", ["layer2", "logits"], input_shape=(3, 64, 64))
    # a content layer may be the logits (the workflow allows units there), and it is sized like the rest
    probes.check_layer_names("style.content_layers", "resnet18", ["layer2", "logits"], input_shape=(3, 64, 64),
                           units_allowed=True)
    probes.check_input_size("style.image_size", "resnet18", 32, ["layer2", "logits"])


def test_imagenet_layer_names_are_checked_on_the_meta_device():
    probes.check_layer_names("style.content_layers", "vgg19", ["conv4_2", "features.2"])
    with pytest.raises(ValueError, match=r"^dream\.layers: layer 'conv4_5' is not in backbone 'vgg19'; "
                                         r"close matches: \[.*'conv4_4'"):
        probes.check_layer_names("dream.layers", "vgg19", ["conv4_5"])


def test_input_sizes_are_checked_against_the_network_only_where_they_could_fail():
    probes.check_input_size("classes.image_size", "vgg19", 32)  # the smallest that runs
    with pytest.raises(ValueError, match=r"fooling.image_size: 31 px .* 'vgg19'.* at least 32 px"):
        probes.check_input_size("fooling.image_size", "vgg19", 31)
    # Style transfer reads VGG19 only up to conv5_1, which runs at 16 px.
    probes.check_input_size("style.image_size", "vgg19", 16, [])
    # A ViT takes its native size only.
    with pytest.raises(ValueError, match=r"classes.image_size: backbone 'vit_b_32' takes 224 px images only .*, not 128 px"):
        probes.check_input_size("classes.image_size", "vit_b_32", 128)
    probes.check_input_size("classes.image_size", "vit_b_32", 224)
    code = ("import sys, cnnpipe.workflow.probes as p; p.check_input_size('classes.image_size', 'efficientnet_lite1', 12); "
            "p.check_input_size('classes.image_size', 'trained', 16); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1"])
def test_the_bundled_networks_run_at_every_size_so_their_check_is_skipped(name):
    """Why check_input_size skips EfficientNet-Lite: it runs, whole, at every side 1 to 64 px
    (and larger sizes only grow its maps)."""
    import torch

    from cnnpipe.networks.build import load_backbone

    with torch.device("meta"):
        model = load_backbone(name, pretrained=False)
    for side in range(1, 65):
        assert model(torch.zeros(1, 3, side, side, device="meta")).shape == (1, 1000), side


def test_local_gpus_are_counted_without_torch(tmp_path):
    from cnnpipe.workflow.resources import local_gpu_count

    driver = tmp_path / "gpus"
    assert local_gpu_count({}, driver) == 0  # no NVIDIA driver
    driver.mkdir()
    for bus in ("0000:01:00.0", "0000:02:00.0"):
        (driver / bus).mkdir()
    assert local_gpu_count({}, driver) == 2
    # What the job may use, where set (SLURM sets it to the GPUs it allocated).
    assert local_gpu_count({"CUDA_VISIBLE_DEVICES": "1"}, driver) == 1
    assert local_gpu_count({"CUDA_VISIBLE_DEVICES": ""}, driver) == 0
    assert local_gpu_count({"CUDA_VISIBLE_DEVICES": "-1"}, driver) == 0
    assert local_gpu_count({"CUDA_VISIBLE_DEVICES": "GPU-5f1c,GPU-77aa"}, tmp_path / "none") == 2


def test_gpu_resource_per_job():
    from cnnpipe.workflow.resources import gpus_per_job

    assert gpus_per_job("cpu", local=True, local_gpus=4) == 0
    assert gpus_per_job("cuda", local=True, local_gpus=0) == 1
    assert gpus_per_job("mps", local=True, local_gpus=0) == 1
    # auto: locally where there is a GPU; on a cluster always (its nodes are not this host)
    assert gpus_per_job("auto", local=True, local_gpus=0) == 0
    assert gpus_per_job("auto", local=True, local_gpus=1) == 1
    assert gpus_per_job("auto", local=False, local_gpus=0) == 1


def test_the_workflow_parses_without_importing_torch():
    """Every cnnpipe module the Snakefile and its rules import is torch-free: each dry run, and
    each SLURM job (which parses the workflow again), would otherwise pay torch's import."""
    import re

    sources = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    modules = sorted({m for path in sources for m in re.findall(r"^\s*from (cnnpipe[\w.]*) import", path.read_text(),
                                                              re.MULTILINE)})
    assert "cnnpipe.workflow.checks" in modules and "cnnpipe.workflow.chunks" in modules
    code = f"import sys; import {', '.join(modules)}; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"{modules}: {done.stderr}"


def test_the_digits_class_sizes_are_scikit_learns():
    from sklearn.datasets import load_digits

    assert list(checks.DIGITS_CLASS_COUNTS) == np.bincount(load_digits().target).tolist()


@pytest.mark.parametrize("counts", [(178, 182, 177, 183, 181, 182, 181, 179, 174, 180), (2, 2), (3, 7, 2), (5, 1), (40, 41, 39)])
def test_the_split_rule_refuses_exactly_what_scikit_learn_cannot_split(counts):
    """The parse-time rule and the job's train_test_split agree on every fraction tried."""
    from sklearn.model_selection import train_test_split

    labels = np.repeat(np.arange(len(counts)), counts)
    fractions = sorted({*np.linspace(0.001, 0.999, 41).round(4), 0.005, 0.0051, 0.994, 0.995, 0.5})
    for fraction in fractions:
        try:
            train_test_split(np.arange(len(labels)), test_size=fraction, random_state=0, stratify=labels)
            splits = True
        except ValueError:
            splits = False
        assert (checks.split_problem(counts, fraction) is None) == splits, (counts, fraction)


def save_gray_checkpoint(path: Path) -> Path:
    """Another run's checkpoint of a one-channel lecture CNN (12 px, conv1, conv2, fc1)."""
    import torch

    from cnnpipe.networks import checkpoint as ckpt
    from cnnpipe.networks.lecture_cnn import build_model

    manifest = {"image_shape": [1, 12, 12], "classes": ["a", "b"], "normalization": {"mean": [0.5], "std": [0.2]}}
    model_cfg = {"conv_channels": [4, 8], "kernel_size": 3, "hidden": [16], "dropout": 0.0, "batch_norm": False}
    state = {"format": ckpt.FORMAT, "model_state": build_model(model_cfg, manifest).state_dict(),
             "model_config": model_cfg, "classes": manifest["classes"], "image_shape": manifest["image_shape"],
             "normalization": manifest["normalization"], "epoch": 1, "optimizer_state": {}, "scheduler_state": {},
             "rng_state": {}, "metrics": [], "fingerprint": "test"}
    torch.manual_seed(0)
    return ckpt.save_checkpoint(path, state)


def test_filter_layers_of_another_runs_gray_checkpoint_are_probed_at_its_own_shape(tmp_path):
    """A checkpoint takes its own channels and size (the filters job draws it so), not 3 x
    filters.image_size: the lecture CNN has one channel (issue 26, item 3)."""
    spec = {"checkpoint": str(save_gray_checkpoint(tmp_path / "other" / "model.pt"))}
    settings = {"backbone": spec, "layers": ["conv1", "conv2", "fc1"], "image_size": 128}
    assert checks.filter_layers(settings, MODEL) == ["conv1", "conv2", "fc1"]
    with pytest.raises(ValueError, match=r"^filters\.layers: layer 'conv3' not found"):
        checks.filter_layers({**settings, "layers": ["conv3"]}, MODEL)


def test_two_first_layer_networks_with_one_file_name_are_refused_naming_both(tmp_path, monkeypatch):
    """A spec's slug names its figure: two different specs with one slug wrote one file, the
    second silently replacing the first (issue 26, item 5)."""
    monkeypatch.chdir(tmp_path)
    for name in ("a/resnet18.pt", "b/resnet18.pt", "x/y.pt", "x-y.pt"):
        Path(name).parent.mkdir(exist_ok=True)
        Path(name).write_bytes(b"weights")
    key, pattern = "first_layer_filters.backbones", "results/lecture/first_layer_filters/{}.png"
    same_file = [{"arch": "resnet18", "weights": "a/resnet18.pt"},
                 {"arch": "resnet18", "weights": "b/resnet18.pt", "num_classes": 5}]
    with pytest.raises(ValueError, match=r"^first_layer_filters\.backbones\[1\] and first_layer_filters\.backbones"
                                         r"\[2\]: .*a/resnet18\.pt.*b/resnet18\.pt.* both .*"
                                         r"results/lecture/first_layer_filters/resnet18-resnet18\.png"):
        checks.backbones_by_slug(["trained", same_file[0], same_file[1]], key, pattern)
    with pytest.raises(ValueError, match=r"backbones\[0\] and .*backbones\[1\]: .*checkpoint-x-y\.png"):
        checks.backbones_by_slug([{"checkpoint": "x/y.pt"}, {"checkpoint": "x-y.pt"}], key, pattern)
    # the same network listed twice is drawn once
    specs = checks.backbones_by_slug(["trained", "alexnet", "trained", same_file[0]], key, pattern)
    assert list(specs) == ["trained", "alexnet", "resnet18-resnet18"]
    assert specs["alexnet"] == (1, checks.parse_backbone("alexnet"))
