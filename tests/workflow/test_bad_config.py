"""A config that cannot work stops the workflow while it is parsed, before any job, with an
error that names the key at fault (and what would work)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pipeline import TINY, planned_jobs, snakemake


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"trian": {"epochs": 1}}, ["trian", "Additional properties"]),
        ({"train": {"epochs": "many"}}, ["epochs", "integer"]),
        ({"dataset": {"name": "imagenet"}}, ["name", "digits", "mnist", "cifar10", "imagefolder"]),
        ({"device": "tpu"}, ["device", "auto", "cuda"]),
        ({"model": {"kernel_size": 4}}, ["kernel_size"]),
        ({"dream": {"backbone": "resnet50", "layers": ["layer9"]}}, ["dream.layers", "'layer9'", "resnet50", "layer4"]),
        ({"dream": {"layers": ["blocks.99"]}}, ["dream.layers", "blocks.99", "blocks.6"]),
        ({"style": {"style_layers": ["conv1_1"]}}, ["style.style_layers", "conv1_1"]),
        ({"filters": {"layers": ["conv7"]}}, ["filters.layers", "conv7"]),
        ({"dream": {"folder": "/no/such/folder"}}, ["dream.folder", "/no/such/folder"]),
        ({"style": {"pairs": []}}, ["style.pairs", "no content/style pairs"]),
        ({"classes": {"backbone": "resnet5"}}, ["classes.backbone", "'resnet5' is not a known network", "resnet50"]),
        ({"dream": {"backbone": {"arch": "resnet18", "weights": "missing.pt"}}},
         ["dream.backbone.weights", "missing.pt", "does not exist"]),
        ({"fooling": {"backbone": {"checkpoint": "other/model.pt"}}}, ["fooling.backbone.checkpoint", "other/model.pt"]),
        ({"filters": {"backbone": "timm:resnet18", "layers": ["layer1"]}}, ["filters.backbone", "needs a weights file"]),
        ({"first_layer_filters": {"backbones": ["trained", "alexnt"]}},
         ["first_layer_filters.backbones[1]", "'alexnet'"]),
        ({"dream": {"backbone": "resnet18", "layers": ["layer2", "fc"]}},
         ["dream.layers", "'fc'", "spatial output"]),
        ({"style": {"style_layers": ["blocks.2", "logits"]}}, ["style.style_layers", "'logits'", "spatial output"]),
        ({"style": {"backbone": "trained"}}, ["style.backbone", "RGB network"]),
        ({"style": {"style_colors": "palette"}}, ["style_colors", "'palette' is not one of"]),
        ({"style": {"style_colors": "start", "preserve_color": True}},
         ["style.style_colors is 'start'", "style.preserve_color is true"]),
        ({"style": {"init": "noise"}}, ["style.style_colors is 'start'", "style.init is 'noise'"]),
        ({"classes": {"objective": "margin"}}, ["objective", "probability", "logit"]),
        ({"model": {"conv_channels": [4, 8, 8, 8, 8]}}, ["model.conv_channels", "12 px", "at most 3 blocks"]),
        ({"dream": {"tile": 1}}, ["dream.tile", "1 px", "at least 80 px"]),
        ({"classes": {"backbone": "vgg19", "image_size": 16}}, ["classes.image_size", "vgg19", "at least 32 px"]),
        ({"fooling": {"imagenet_classes": [1, 1000]}}, ["fooling", "imagenet_classes", "1000", "999"]),
        ({"fooling": {"imagenet_classes": []}}, ["fooling", "imagenet_classes"]),
        ({"classes": {"backbone": "efficientnet_lite0", "judge": ["efficientnet_lite1", "efficientnet_lite0"]}},
         ["classes.judge[1]", "'efficientnet_lite0' is the network the images are optimized on"]),
        ({"style": {"judge": ["efficientnet_lite1", "resnet18", "efficientnet_lite1"]}},
         ["style.judge[2]", "listed already as style.judge[0]"]),
        # Settings the schema takes that would only fail inside a job (issue 26, item 2).
        ({"dataset": {"test_fraction": 0.999}},
         ["dataset.test_fraction", "0.999", "1797 images in 10 classes", "1 train", "at most 0.994"]),
        ({"dataset": {"test_fraction": 0.001}}, ["dataset.test_fraction", "0.001", "2 test", "above 0.00501"]),
        ({"classes": {"parameterization": "phase"}}, ["classes.blur_every", "'phase'", "0"]),
        ({"classes": {"backbone": "vgg19", "imagenet_regularized": {"parameterization": "phase", "blur_every": 2}}},
         ["classes.imagenet_regularized.blur_every", "'phase'"]),
        ({"classes": {"backbone": "vgg19", "imagenet_regularized": {"crop_side": [0.6, 0.5]}}},
         ["classes.imagenet_regularized.crop_side", "[0.6, 0.5]", "low must not exceed high"]),
        ({"classes": {"backbone": "vgg19", "image_size": 128, "imagenet_regularized": {"canvas": 100}}},
         ["classes.imagenet_regularized.canvas", "100 px", "classes.image_size (128 px)"]),
        ({"classes": {"imagenet_regularized": {"optimizer": "sgd"}}}, ["optimizer", "nadam"]),
    ],
)
def test_bad_config_stops_before_any_job_with_the_key_named(tmp_path, override, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(override))
    result = snakemake(tmp_path, "--dry-run", configfiles=(TINY, config), check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    for word in expected:
        assert word in message, (word, message)
    assert not (tmp_path / "results").exists()


def test_another_runs_gray_checkpoint_is_a_filters_backbone(tiny_run, tmp_path):
    """The lecture CNN has one input channel: the parse-time layer probe takes the checkpoint's
    own shape, as the filters job does (issue 26, item 3: it crashed with 'Invalid channel
    dimensions')."""
    config = tmp_path / "other.yaml"
    config.write_text(yaml.safe_dump({"filters": {
        "backbone": {"checkpoint": str(tiny_run / "results" / "train" / "model.pt")}, "layers": ["conv1", "fc1"]}}))
    result = snakemake(tmp_path / "work", "--dry-run", "filters", configfiles=(TINY, config), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert planned_jobs(result) == {"filters_layer": 2, "filters": 1}


def test_two_first_layer_networks_whose_weights_share_a_name_stop_the_run(tmp_path):
    """{arch, weights: a/x.pt} and {arch, weights: b/x.pt} have one slug, so one figure: the run
    stops naming both list entries and the file (issue 26, item 5)."""
    import torch
    import torchvision

    work = tmp_path / "work"
    for folder, classes in (("a", 1000), ("b", 5)):
        (work / folder).mkdir(parents=True)
        torch.save(torchvision.models.squeezenet1_1(num_classes=classes).state_dict(), work / folder / "sq.pt")
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump({"first_layer_filters": {"backbones": [
        {"arch": "squeezenet1_1", "weights": "a/sq.pt"}, {"arch": "squeezenet1_1", "weights": "b/sq.pt",
                                                          "num_classes": 5}]}}))
    result = snakemake(work, "--dry-run", configfiles=(TINY, config), check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    for word in ("first_layer_filters.backbones[0] and first_layer_filters.backbones[1]", "a/sq.pt", "b/sq.pt",
                 "results/lecture/first_layer_filters/squeezenet1_1-sq.png"):
        assert word in message, (word, message)
    assert not (work / "results").exists()


def test_a_first_layer_network_with_an_empty_weights_file_is_named_by_its_index(tmp_path):
    """The message names the list entry and why the file cannot be read (issue 26, item 7: it
    said 'first_layer_filters.backbones.weights: ... cannot be read as PyTorch weights ()')."""
    (tmp_path / "empty.pt").write_bytes(b"")
    config = tmp_path / "empty.yaml"
    config.write_text(yaml.safe_dump({"first_layer_filters": {"backbones": [
        "trained", {"arch": "resnet18", "weights": "empty.pt"}]}}))
    result = snakemake(tmp_path, "--dry-run", configfiles=(TINY, config), check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "first_layer_filters.backbones[1].weights: empty.pt is empty (0 bytes)" in message, message


def test_a_dry_run_beside_a_live_run_says_what_is_going_on(tmp_path):
    """Snakemake's dry run finds the live run's lock files, prints 'Error: Directory cannot be
    locked' and returns 0; the message now says that a run is working and the dry run changes
    nothing, or that the lock files are a dead run's (issue 26, item 7)."""
    from test_runlock import hold_in_another_process

    from cnnpipe.workflow import runlock

    holder = hold_in_another_process(tmp_path)
    locks = tmp_path / runlock.SNAKEMAKE_LOCKS  # the live run's, written after it took the run lock
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text("results/train/model.pt\n")
    try:
        result = snakemake(tmp_path, "--dry-run", "results/train/model.pt")
    finally:
        holder.kill()
        holder.wait()
    message = result.stdout + result.stderr
    assert "Directory cannot be locked" not in message
    assert f"another run is working in {tmp_path} (process {holder.pid} on " in message, message
    assert "this dry run changes nothing" in message
    after = snakemake(tmp_path, "--dry-run", "results/train/model.pt")
    message = after.stdout + after.stderr
    assert "Directory cannot be locked" not in message and "a run that no longer runs" in message, message


def _image_folder(root: Path, counts: dict[str, int]) -> Path:
    """An image folder dataset: one subfolder per class with ``counts[class]`` 8x8 PNG files."""
    from PIL import Image

    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            Image.new("L", (8, 8), 40 * index % 256).save(root / name / f"{index}.png")
    return root


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        (None, ["dataset.folder", "does not exist"]),
        ({"cat": 5}, ["dataset.folder", "a single class subfolder", "'cat'"]),
        ({"cat": 5, "dog": 0}, ["dataset.folder", "dog", "holds no images"]),
        ({"cat": 5, "dog": 1}, ["dataset.test_fraction", "dog", "fewer than 2 images"]),
        ({"cat": 5, "dog": 5}, ["dataset.test_fraction", "0.9", "10 images in 2 classes", "1 train"]),
    ],
    ids=["missing", "one-class", "empty-class", "one-image-class", "too-few-to-train"],
)
def test_an_image_folder_that_cannot_be_split_stops_before_any_job(tmp_path, counts, expected):
    """dataset.folder is read while the workflow is parsed: a folder the download job could
    not split into stratified train and test sets is refused, naming the key and the folder."""
    folder = tmp_path / "images"
    if counts is not None:
        _image_folder(folder, counts)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"name": "imagefolder", "folder": str(folder), "image_size": 12,
                                                  "test_fraction": 0.9}}))
    result = snakemake(tmp_path / "work", "--dry-run", "results/data/dataset.pt", configfiles=(TINY, config),
                       check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    for word in [*expected, str(folder)]:
        assert word in message, (word, message)
    assert not (tmp_path / "work" / "results").exists()


def test_an_image_folder_that_can_be_split_plans_its_download(tmp_path):
    folder = _image_folder(tmp_path / "images", {"cat": 3, "dog": 2})
    config = tmp_path / "ok.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"name": "imagefolder", "folder": str(folder), "image_size": 12,
                                                  "test_fraction": 0.4}}))
    jobs = planned_jobs(snakemake(tmp_path / "work", "--dry-run", "results/data/dataset.pt",
                                  configfiles=(TINY, config)))
    assert jobs == {"download": 1}
