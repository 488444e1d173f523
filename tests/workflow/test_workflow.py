"""The Snakemake workflow end to end on the tiny config: results, reruns, stage targets,
conventions (bad configs: test_bad_config.py; code inputs: test_code_inputs.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from pipeline import ROOT, TINY, TRAINED, planned_jobs, planned_resources, result_files, snakemake

# The tiny run's test accuracy after its six epochs is 0.878 (chance: 0.1). The floor is well
# below that, and a broken model, loss, schedule or data split does not clear it.
ACCURACY_FLOOR = 0.7


def test_tiny_pipeline_runs_end_to_end(tiny_run):
    import torch
    from lecture_example import MAXPOOL, STRIDE1_FILTER1, STRIDE1_FILTER2, STRIDE2

    from cnnpipe.data.prepare import load_prepared
    from cnnpipe.networks.checkpoint import load_model

    results = tiny_run / "results"
    evaluation = json.loads((results / "metrics" / "eval.json").read_text())
    # The final checkpoint asked again here about every held-out image: what eval.json reports.
    model = load_model(results / "train" / "model.pt")
    data = load_prepared(results / "data" / "dataset.pt")
    with torch.no_grad():
        predicted = model(data["test_images"].float() / 255).argmax(dim=1)
    labels = data["test_labels"]
    accuracy = float((predicted == labels).double().mean())
    assert evaluation["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert accuracy >= ACCURACY_FLOOR, accuracy
    confusion = torch.zeros(10, 10, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    assert evaluation["confusion_matrix"] == confusion.tolist()  # rows: true class, columns: predicted
    # The lecture's worked example, as computed by hand in test_lecture.
    example = json.loads((results / "lecture" / "conv_example.json").read_text())
    assert example["stride1"] == [STRIDE1_FILTER1, STRIDE1_FILTER2]
    assert example["stride2"] == STRIDE2 and example["maxpool"] == MAXPOOL
    for png in ["train/learning_curve.png", "train/confusion_matrix.png", "lecture/conv_example.png",
                "lecture/parameters.png", "lecture/first_layer_filters/trained.png",
                "lecture/first_layer_filters/efficientnet_lite0.png"]:
        assert (results / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    for log in ["download", "train", "lecture", "first_layer_filters/trained"]:
        assert (results / "logs" / f"{log}.log").exists(), log
    assert "test acc" in (results / "logs" / "train.log").read_text()
    assert (results / "benchmarks" / "train.tsv").exists()


def test_nothing_to_do_after_a_complete_run(tiny_run):
    assert planned_jobs(snakemake(tiny_run, "--dry-run")) == {}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"train": {"epochs": 3}}, {"train", "atlas_site"} | TRAINED),
        ({"dataset": {"image_size": 10}}, {"download", "lecture", "train", "atlas_site"} | TRAINED),
        ({"filters": {"steps": 7}}, {"filters_layer"}),
        # The atlas: a diversity setting reruns the ascent and the pages, not the dataset pass;
        # a dataset setting the dataset pass and the pages, no ascent.
        ({"atlas": {"diversity": 0.5}}, {"atlas_chunk", "atlas_site"}),
        ({"atlas": {"top_n": 3}}, {"atlas_dataset", "atlas_site"}),
        ({"classes": {"l1_weight": 0.5}}, {"classes"}),
        ({"fooling": {"target_confidence": 0.95}}, {"fooling_method"}),
        ({"dream": {"octaves": 1}}, {"dream_chunk", "dream_photo", "dream_summary"}),
        ({"style": {"steps": 4}}, {"style_chunk", "style_pair"}),
        # Other chunks: the pairs' results are the same bytes, but their chunks' folders are new.
        ({"style": {"per_job": 1}}, {"style_chunk", "style_pair"}),
        # An ImageNet backbone: no training behind it, the weights download where needed.
        ({"classes": {"backbone": "vgg19"}}, {"backbone_weights", "classes"}),
        ({"fooling": {"backbone": "efficientnet_lite0"}}, {"fooling_method"}),
    ],
    ids=lambda value: "-".join(f"{k}.{next(iter(v))}" for k, v in value.items()) if isinstance(value, dict) else "",
)
def test_a_config_change_reruns_exactly_the_stages_it_affects(tiny_run, tmp_path, override, expected):
    config = tmp_path / "override.yaml"
    config.write_text(yaml.safe_dump(override))
    jobs = planned_jobs(snakemake(tiny_run, "--dry-run", configfiles=(TINY, config)))
    assert set(jobs) - {"all"} == expected


# Each stage by its name on a fresh folder: its jobs and what they need, nothing else. The
# tiny config has three filter layers, two first-layer networks, two dream photos, one pair.
STAGE_PLANS = {
    "train": {"download": 1, "train": 1},
    "lecture": {"download": 1, "lecture": 1},
    "classes": {"download": 1, "train": 1, "classes": 1},
    "filters": {"download": 1, "train": 1, "filters_layer": 3, "filters": 1},
    "fooling": {"download": 1, "train": 1, "fooling_method": 2, "fooling": 1},
    "first_layer_filters": {"download": 1, "train": 1, "first_layer_filters_network": 2, "first_layer_filters": 1},
    "dream": {"sample_photo": 2, "dream_chunk": 1, "dream_photo": 2, "dream_summary": 1, "dream": 1},
    "style": {"sample_photo": 2, "style_chunk": 1, "style_pair": 1, "style": 1},
    "atlas": {"download": 1, "train": 1, "atlas_dataset": 3, "atlas_chunk": 1, "atlas_site": 1, "atlas": 1},
}
# The stages whose jobs have wildcards: their names are target rules that only collect files.
STAGE_TARGETS = {"filters", "fooling", "first_layer_filters", "dream", "style", "atlas"}


@pytest.mark.parametrize("stage", STAGE_PLANS)
def test_each_stage_runs_by_its_name(tmp_path, stage):
    assert planned_jobs(snakemake(tmp_path, "--dry-run", stage)) == STAGE_PLANS[stage]


def test_the_stages_by_name_together_are_the_default_run(tmp_path):
    """The stage targets ask for the same files as `all`, so none misses a final file."""
    everything = planned_jobs(snakemake(tmp_path, "--dry-run"))
    stages = planned_jobs(snakemake(tmp_path, "--dry-run", *STAGE_PLANS))
    assert {rule: n for rule, n in stages.items() if rule not in STAGE_TARGETS} == {
        rule: n for rule, n in everything.items() if rule != "all"}


def test_the_slurm_profile_sets_resources_only_for_rules_that_exist(tmp_path):
    """Snakemake ignores set-resources for an unknown rule: a renamed rule would silently lose
    its GPU partition."""
    rules = set(snakemake(tmp_path, "--list-rules").stdout.split())
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert set(profile["set-resources"]) <= rules, set(profile["set-resources"]) - rules


def test_every_computing_job_times_itself_beside_its_log(tiny_run):
    """`benchmark:` on every rule that computes: a TSV at its log's path under
    results/benchmarks/; the byte-identity checks (result_files) leave them out."""
    results = tiny_run / "results"

    def stems(folder, suffix):
        return {str(path.relative_to(folder).with_suffix("")) for path in folder.rglob(f"*{suffix}")}

    logs, timed = stems(results / "logs", ".log"), stems(results / "benchmarks", ".tsv")
    chunks = {name for name in logs if "/chunks/" in name}
    assert {name.split("/")[0] for name in chunks} == {"dream", "style", "atlas"}
    assert timed == chunks | {
        "train", "lecture", "classes", "fooling_gradient", "fooling_evolution", "dream/summary",
        "filters/conv1", "filters/conv2", "filters/fc1",
        "first_layer_filters/trained", "first_layer_filters/efficientnet_lite0",
        "atlas/dataset/conv1", "atlas/dataset/conv2", "atlas/dataset/fc1", "atlas/site",
    }
    for name in timed:
        assert (results / "benchmarks" / f"{name}.tsv").read_text().startswith("s\th:m:s\t"), name
    assert not [name for name in result_files(tiny_run) if name.startswith("benchmarks")]


def test_a_finished_run_moved_elsewhere_has_nothing_to_do(tiny_run, tmp_path):
    """A results folder handed on with its code (a cluster's other mount point, a colleague's
    disk) is complete there too: no path the plan depends on is absolute."""
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(tiny_run.parent, moved, symlinks=True)
    assert planned_jobs(snakemake(moved / "work", "--dry-run")) == {}


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_check_passes():
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_local_runs_give_the_gpu_to_one_job_at_a_time(tmp_path):
    """profiles/default sets a global `gpu` limit of 1 (Snakemake only limits what is set
    globally): jobs that declare a GPU never share it."""
    result = snakemake(tmp_path, "--cores", "1", "results/photos/chelsea.png")
    assert 'Provided resources: gpu=Resource("gpu", 1)' in result.stdout + result.stderr
    plan = snakemake(tmp_path, "--dry-run", "results/dream/summary.csv", "--config", "device=cuda")
    assert {job["gpu"] for job in planned_resources(plan)["dream_chunk"]} == {"1"}
