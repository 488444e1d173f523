"""The Snakemake workflow end to end on the tiny config, reruns, conventions, bad config."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from pipeline import ROOT, TINY, planned_jobs, snakemake


# The stages that read the trained checkpoint.
TRAINED = {"first_layer_filters", "filters", "classes", "fooling"}
# What a changed output of each stage makes rerun after it.
DOWNSTREAM = {
    "lecture": set(),
    "train": TRAINED,
    "data": {"train", "lecture"} | TRAINED,
}


def test_tiny_pipeline_runs_end_to_end(tiny_run):
    results = tiny_run / "results"
    evaluation = json.loads((results / "metrics" / "eval.json").read_text())
    assert 0.1 < evaluation["test_accuracy"] <= 1.0
    example = json.loads((results / "lecture" / "conv_example.json").read_text())
    assert {"stride1", "stride2", "maxpool"} <= set(example)
    assert [len(m) for m in example["stride1"][0]] == [4, 4, 4, 4]
    for png in ["train/learning_curve.png", "train/confusion_matrix.png", "lecture/conv_example.png",
                "lecture/parameters.png", "lecture/first_layer_filters.png"]:
        assert (results / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    for log in ["download", "train", "lecture", "first_layer_filters"]:
        assert (results / "logs" / f"{log}.log").exists(), log
    assert "test acc" in (results / "logs" / "train.log").read_text()
    assert (results / "benchmarks" / "train.tsv").exists()


def test_nothing_to_do_after_a_complete_run(tiny_run):
    assert planned_jobs(snakemake(tiny_run, "--dry-run")) == {}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"train": {"epochs": 3}}, {"train"} | TRAINED),
        ({"dataset": {"image_size": 10}}, {"download", "lecture", "train"} | TRAINED),
        ({"filters": {"steps": 7}}, {"filters"}),
        ({"classes": {"l1_weight": 0.5}}, {"classes"}),
        ({"fooling": {"target_confidence": 0.95}}, {"fooling"}),
        ({"dream": {"octaves": 1}}, {"dream", "dream_summary"}),
        ({"style": {"steps": 4}}, {"style"}),
        # An ImageNet backbone: no training behind it, the weights download where needed.
        ({"classes": {"backbone": "vgg19"}}, {"backbone_weights", "classes"}),
        ({"fooling": {"backbone": "efficientnet_lite0"}}, {"fooling"}),
    ],
    ids=lambda value: "-".join(f"{k}.{next(iter(v))}" for k, v in value.items()) if isinstance(value, dict) else "",
)
def test_a_config_change_reruns_exactly_the_stages_it_affects(tiny_run, tmp_path, override, expected):
    config = tmp_path / "override.yaml"
    config.write_text(yaml.safe_dump(override))
    jobs = planned_jobs(snakemake(tiny_run, "--dry-run", configfiles=(TINY, config)))
    assert set(jobs) - {"all"} == expected


@pytest.mark.parametrize(
    ("module", "rules"),
    [("lecture", {"lecture", "first_layer_filters"}), ("train", {"train"}), ("data", {"download"})],
)
def test_editing_a_stage_module_reruns_that_stage(tiny_run, module, rules):
    path = tiny_run.parent / "code" / "src" / "cnnpipe" / f"{module}.py"
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# an edit\n")
        jobs = planned_jobs(snakemake(tiny_run, "--dry-run"))
    finally:
        path.write_bytes(original)
    assert rules <= set(jobs)
    # Only the edited stage and what consumes its outputs: no unrelated stage reruns.
    assert set(jobs) - {"all"} <= rules | DOWNSTREAM[module]
    # Undoing the edit leaves nothing to do: code is compared by content, not by time.
    assert planned_jobs(snakemake(tiny_run, "--dry-run")) == {}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"trian": {"epochs": 1}}, ["trian", "Additional properties"]),
        ({"train": {"epochs": "many"}}, ["epochs", "integer"]),
        ({"dataset": {"name": "imagenet"}}, ["name", "digits", "mnist", "cifar10", "imagefolder"]),
        ({"device": "tpu"}, ["device", "auto", "cuda"]),
        ({"model": {"kernel_size": 4}}, ["kernel_size"]),
        ({"dream": {"backbone": "resnet50"}}, ["backbone", "efficientnet_lite0", "vgg19", "googlenet"]),
        ({"dream": {"layers": ["blocks.99"]}}, ["dream.layers", "blocks.99", "blocks.6"]),
        ({"style": {"style_layers": ["conv1_1"]}}, ["style.style_layers", "conv1_1"]),
        ({"filters": {"layers": ["conv7"]}}, ["filters.layers", "conv7"]),
        ({"dream": {"folder": "/no/such/folder"}}, ["dream.folder", "/no/such/folder"]),
        ({"style": {"pairs": []}}, ["style.pairs", "no content/style pairs"]),
        ({"classes": {"backbone": "resnet"}}, ["classes", "backbone", "trained", "efficientnet_lite0"]),
        ({"fooling": {"imagenet_classes": [1, 1000]}}, ["fooling", "imagenet_classes", "1000", "999"]),
        ({"fooling": {"imagenet_classes": []}}, ["fooling", "imagenet_classes"]),
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


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_check_passes():
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
