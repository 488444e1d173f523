"""Networks from a backbone spec, end to end on the tiny config: offline ImageNet networks in
the classes and fooling stages with an independent judge, the neuron slide of fc1, a user's
weights file in the first-layer slide (and what replacing it reruns), and the weights download
rule against a local server."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import torchvision
import yaml
from pipeline import TINY, planned_jobs, snakemake

from cnnpipe.networks.build import imagenet_class_names
from cnnpipe.networks.spec import parse_backbone

USER_WEIGHTS = "weights/mine.pt"
USER_SPEC = {"arch": "squeezenet1_1", "weights": USER_WEIGHTS}
USER_SLUG = parse_backbone(USER_SPEC, must_exist=False).slug
OVERRIDE = {
    # Lite1 generates, so Lite0 judges (the judge must be another network)
    "classes": {"backbone": "efficientnet_lite1", "judge": "efficientnet_lite0", "imagenet_classes": [1, 963],
                "image_size": 64, "steps": 10, "imagenet_regularized": {"canvas": 96, "steps": 10}},
    "fooling": {"backbone": "efficientnet_lite0", "imagenet_classes": [1, 963], "image_size": 64,
                "gradient_steps": 30, "gradient_lr": 0.05},
    "first_layer_filters": {"backbones": ["trained", USER_SPEC]},
}
TARGETS = [
    "results/classes/summary.csv",
    "results/fooling/gradient.csv",
    f"results/lecture/first_layer_filters/{USER_SLUG}.png",
]


def write_user_weights(workdir, seed: int) -> None:
    """A squeezenet1_1 state dict as a user would save it (random weights, seeded)."""
    torch.manual_seed(seed)
    path = workdir / USER_WEIGHTS
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.squeezenet1_1().state_dict(), path)


@pytest.fixture(scope="module")
def backbone_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("backbones")
    write_user_weights(workdir, seed=0)
    override = workdir / "override.yaml"
    override.write_text(yaml.safe_dump(OVERRIDE))
    snakemake(workdir, "--cores", "2", *TARGETS, configfiles=(TINY, override))
    return workdir, override


@pytest.mark.e2e
@pytest.mark.slow  # a second pipeline run, on ImageNet backbones
def test_classes_on_efficientnet_lite1_name_the_imagenet_classes(backbone_run):
    workdir, _ = backbone_run
    summary = pd.read_csv(workdir / "results" / "classes" / "summary.csv")
    assert sorted(set(summary["class"])) == ["goldfish", "pizza"]
    assert sorted(set(summary["class_index"])) == [1, 963]
    assert set(summary["variant"]) == {"plain", "l1", "regularized"}
    assert summary["probability"].between(0, 1).all()
    assert "efficientnet_lite1" in (workdir / "results" / "logs" / "classes.log").read_text()
    # The judge (Lite0) names a class for every image, and the target's rank agrees with it.
    names = imagenet_class_names()
    assert summary["independent_prediction"].isin(names).all() and summary["mean_image_correlation"].isna().all()
    top1 = summary["independent_rank"] == 0
    assert (top1 == (summary["independent_prediction"] == summary["class"])).all()
    counts = json.loads((workdir / "results" / "classes" / "attainment.json").read_text())
    assert counts["judge"] == "efficientnet_lite0"
    for variant, group in summary.groupby("variant"):
        assert counts["variants"][variant]["independent_correct"] == int((group["independent_rank"] == 0).sum())
        assert counts["variants"][variant]["independent_top5"] == int((group["independent_rank"] < 5).sum())
    caption = (workdir / "results" / "captions" / "classes.rst").read_text()
    assert "the independent judge puts it first for" in caption and "efficientnet\\_lite0" in caption


@pytest.mark.e2e
@pytest.mark.slow  # a second pipeline run, on ImageNet backbones
def test_gradient_fooling_on_lite0_is_judged_by_lite1_on_the_png_files(backbone_run):
    workdir, _ = backbone_run
    table = pd.read_csv(workdir / "results" / "fooling" / "gradient.csv")
    assert table["class"].tolist() == ["goldfish", "pizza"]
    assert table["independent_prediction"].isin(imagenet_class_names()).all()
    assert table["independent_rank"].between(0, 999).all()
    assert (table["independent_probability"] > 0).all()
    caption = (workdir / "results" / "captions" / "fooling" / "gradient.rst").read_text()
    top5 = int((table["independent_rank"] < 5).sum())
    assert "The independent judge (efficientnet\\_lite1) names the target class for" in caption
    assert f"top 5 for **{top5} of 2**" in caption


@pytest.mark.e2e
def test_fc1_neurons_beat_every_training_image_they_respond_to(tiny_run):
    """The neuron slide: x* = argmax a^j for every unit of fc1. dataset_max is checked against
    a plain forward pass of all training images; every unit that some image turns on is driven
    harder by its x*."""
    from cnnpipe.data.prepare import load_prepared
    from cnnpipe.networks.checkpoint import load_model

    workdir = tiny_run  # its filters stage draws conv1, conv2 and fc1
    table = pd.read_csv(workdir / "results" / "filters" / "fc1.csv")
    assert list(table.columns) == ["unit", "activation", "dataset_max", "ratio", "start"]
    model = load_model(workdir / "results" / "train" / "model.pt")
    images = load_prepared(workdir / "results" / "data" / "dataset.pt")["train_images"].float() / 255
    with torch.no_grad():
        names = [name for name, _ in model.named_children()]
        hidden = torch.nn.Sequential(*list(model.children())[: names.index("fc_relu1") + 1])(images)
    assert table["unit"].tolist() == list(range(hidden.shape[1]))
    torch.testing.assert_close(torch.tensor(table["dataset_max"].to_numpy(), dtype=torch.float32),
                               hidden.max(dim=0).values, atol=1e-3, rtol=1e-4)
    live = table["dataset_max"] > 0
    assert live.sum() >= len(table) // 2
    assert (table.loc[live, "activation"] > table.loc[live, "dataset_max"]).all(), table[live]
    caption = (workdir / "results" / "captions" / "filters" / "fc1.rst").read_text()
    assert f"**{int((table['activation'] > table['dataset_max']).sum())} of {len(table)}** neurons" in caption


@pytest.mark.e2e
@pytest.mark.slow  # a second pipeline run, on ImageNet backbones
def test_replacing_a_weights_file_reruns_only_the_stages_that_use_it(backbone_run):
    workdir, override = backbone_run
    assert planned_jobs(snakemake(workdir, "--dry-run", *TARGETS, configfiles=(TINY, override))) == {}
    write_user_weights(workdir, seed=1)
    jobs = planned_jobs(snakemake(workdir, "--dry-run", *TARGETS, configfiles=(TINY, override)))
    assert jobs == {"first_layer_filters_network": 1}, jobs


@pytest.mark.e2e
def test_the_weights_rule_downloads_from_a_mirror_and_keeps_nothing_that_fails_its_checksum(file_server, tmp_path):
    """resnet18's file name carries the first hex digits of its SHA-256; a mirror serving other
    bytes under that name fails the job, and the cache stays empty."""
    name = "resnet18-f37072fd.pth"
    file_server.files[name] = b"not the resnet18 weights"
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"weights_mirror": file_server.url(""), "cache": "cache",
                                        "classes": {"backbone": "resnet18"}}))
    result = snakemake(tmp_path, "--cores", "1", f"cache/{name}", configfiles=(TINY, override), check=False)
    assert result.returncode != 0
    log = (tmp_path / "results" / "logs" / "backbone_weights" / "resnet18-f37072fd.log").read_text()
    assert f"resnet18 weights downloaded from {file_server.url(name)} fail their checksum" in log
    assert file_server.requests == [f"/{name}"]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@pytest.mark.e2e
def test_a_downloaded_judge_beside_lite1_is_planned_with_its_weights(tmp_path):
    """``classes.judge: [efficientnet_lite1, resnet18]``: the dry run plans resnet18's download
    (weights rule) and the classes job with both judges' weights as inputs, and nothing else;
    the same judge as a plain spec or a list of one plans the same jobs."""
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"cache": "cache", "classes": {
        "backbone": "efficientnet_lite0", "judge": ["efficientnet_lite1", "resnet18"], "imagenet_classes": [1]}}))
    result = snakemake(tmp_path, "--dry-run", "--printshellcmds", "results/classes/summary.csv",
                       configfiles=(TINY, override))
    assert planned_jobs(result) == {"backbone_weights": 1, "classes": 1}, result.stdout
    text = result.stdout + result.stderr
    assert "cache/resnet18-f37072fd.pth" in text
    classes_job = text[text.index("rule classes:"):]
    assert "cache/resnet18-f37072fd.pth" in classes_job.split("output:")[0]
    for judge in ("efficientnet_lite1", ["efficientnet_lite1"]):
        override.write_text(yaml.safe_dump({"classes": {"backbone": "efficientnet_lite0", "judge": judge,
                                                        "imagenet_classes": [1]}}))
        result = snakemake(tmp_path, "--dry-run", "results/classes/summary.csv", configfiles=(TINY, override))
        assert planned_jobs(result) == {"classes": 1}, result.stdout


def _stops_before_any_job(workdir, override: dict) -> str:
    config = workdir / "override.yaml"
    config.write_text(yaml.safe_dump(override))
    result = snakemake(workdir, "--dry-run", configfiles=(TINY, config), check=False)
    assert result.returncode != 0
    assert not (workdir / "results").exists()
    return result.stdout + result.stderr


@pytest.mark.e2e
def test_weights_files_are_checked_before_any_job(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.squeezenet1_1(num_classes=5)
    torch.save(net.state_dict(), tmp_path / "five.pt")
    torch.save(net, tmp_path / "pickled.pt")  # a whole module: unpickling it would run code
    message = _stops_before_any_job(tmp_path, {"dream": {"backbone": {"arch": "squeezenet1_1", "weights": "five.pt"}}})
    assert "dream.backbone.weights five.pt does not fit squeezenet1_1: tensor 'classifier.1.weight' has shape " \
           "(5, 512, 1, 1) in the file but (1000, 512, 1, 1)" in message, message
    message = _stops_before_any_job(tmp_path, {"first_layer_filters": {"backbones": [
        "trained", {"arch": "squeezenet1_1", "weights": "pickled.pt", "num_classes": 5}]}})
    assert "first_layer_filters.backbones[1].weights: pickled.pt is refused: unpickling it would run code" in message
    message = _stops_before_any_job(tmp_path, {"classes": {"backbone": {"arch": "squeezenet1_1", "weights": "five.pt",
                                                                        "num_classes": 5}}})
    assert "classes.imagenet_classes: backbone 'squeezenet1_1 (weights five.pt)' has 5 classes" in message
