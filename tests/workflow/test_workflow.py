"""The Snakemake workflow end to end on the tiny config, reruns, conventions, bad config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline import ROOT, TINY, planned_jobs, planned_resources, result_files, snakemake

from cnnpipe.workflow.codegraph import package_files_used_by

# The stages that read the trained checkpoint.
TRAINED = {"first_layer_filters_network", "filters_layer", "classes", "fooling_method"}


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
        ({"train": {"epochs": 3}}, {"train"} | TRAINED),
        ({"dataset": {"image_size": 10}}, {"download", "lecture", "train"} | TRAINED),
        ({"filters": {"steps": 7}}, {"filters_layer"}),
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
}
# The stages whose jobs have wildcards: their names are target rules that only collect files.
STAGE_TARGETS = {"filters", "fooling", "first_layer_filters", "dream", "style"}


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
    assert {name.split("/")[0] for name in chunks} == {"dream", "style"}
    assert timed == chunks | {
        "train", "lecture", "classes", "fooling_gradient", "fooling_evolution", "dream/summary",
        "filters/conv1", "filters/conv2", "filters/fc1",
        "first_layer_filters/trained", "first_layer_filters/efficientnet_lite0",
    }
    for name in timed:
        assert (results / "benchmarks" / f"{name}.tsv").read_text().startswith("s\th:m:s\t"), name
    assert not [name for name in result_files(tiny_run) if name.startswith("benchmarks")]


# Each rule's script under workflow/scripts/, and the rules that consume its outputs (the DAG).
SCRIPTS = {
    "download": "download", "train": "train", "lecture": "lecture",
    "first_layer_filters_network": "first_layer_filters", "sample_photo": "sample_photo",
    "filters_layer": "filters", "classes": "classes", "fooling_method": "fooling",
    "dream_chunk": "dream", "dream_photo": "dream", "dream_summary": "dream_summary",
    "style_chunk": "style", "style_pair": "style",
}
CONSUMERS = {
    "download": {"train", "lecture"} | TRAINED,
    "train": TRAINED,
    "sample_photo": {"dream_chunk", "dream_photo", "dream_summary", "style_chunk", "style_pair"},
    "dream_chunk": {"dream_photo"},
    "dream_photo": {"dream_summary"},
    "style_chunk": {"style_pair"},
}

# Run in a fresh interpreter: execute only the import statements of each script, and list the
# cnnpipe modules that this loads (what the script imports for real, found without our ast code).
RUNTIME_IMPORTS = """
import ast, json, sys
found = {}
for rule, script in json.loads(sys.argv[1]).items():
    for name in [n for n in sys.modules if n == "cnnpipe" or n.startswith("cnnpipe.")]:
        del sys.modules[name]
    tree = ast.parse(open(script).read())
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(body=imports, type_ignores=[]), script, "exec"), {})
    found[rule] = sorted(getattr(m, "__file__", None) for n, m in sys.modules.items()
                         if n == "cnnpipe" or n.startswith("cnnpipe."))
print(json.dumps(found))
"""


def runtime_imports(code: Path) -> dict[str, set[str]]:
    """Rule -> the package files (relative to src/) its script loads when its imports run."""
    scripts = {rule: str(code / "workflow" / "scripts" / f"{script}.py") for rule, script in SCRIPTS.items()}
    result = subprocess.run([sys.executable, "-c", RUNTIME_IMPORTS, json.dumps(scripts)], cwd=code / "src",
                            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(code / "src")})
    src = code / "src"
    return {rule: {str(Path(f).resolve().relative_to(src.resolve())) for f in files}
            for rule, files in json.loads(result.stdout).items()}


def declared_code_inputs(workdir: Path, src: Path) -> dict[str, set[str]]:
    """Rule -> the package files among its inputs, as Snakemake holds them for a finished run
    (one `--detailed-summary`: every output file with its rule and inputs)."""
    summary = snakemake(workdir, "--detailed-summary").stdout
    rows = [line.split("\t") for line in summary.splitlines()[1:] if line.count("\t") >= 4]
    found: dict[str, set[str]] = {}
    for _, _, rule, _, inputs, *_ in rows:
        paths = {(workdir / name).resolve() for name in inputs.split(",") if name.endswith(".py")}
        found.setdefault(rule, set()).update(str(path.relative_to(src.resolve())) for path in paths
                                             if path.is_relative_to(src.resolve()))
    return found


def test_each_rule_tracks_exactly_the_package_files_its_script_imports(tiny_run):
    """In process, for every file of the package: the rules that hold it as an input are
    exactly the stages whose scripts import it (directly or through other modules), and what
    a script loads when it starts is among them. With Snakemake's rerun on a changed input
    (checked by real edits in the next test), editing a module reruns exactly those stages."""
    code = tiny_run.parent / "code"
    src = code / "src"
    loaded = runtime_imports(code)
    static = {rule: {str(p.relative_to(src)) for p in package_files_used_by(code / "workflow" / "scripts" / f"{s}.py", src)}
              for rule, s in SCRIPTS.items()}
    declared = declared_code_inputs(tiny_run, src)
    for rule in SCRIPTS:
        assert declared.get(rule, set()) == static[rule], rule
        # What the scripts load when they start is part of what the rules track.
        assert loaded[rule] <= static[rule], (rule, loaded[rule] - static[rule])
    modules = {str(p.relative_to(src)) for p in (src / "cnnpipe").rglob("*.py")}
    unused = {module for module in modules if not any(module in files for files in static.values())}
    # Only the parse-time package, the dataset catalog it reads and the command line are used
    # by no stage.
    assert unused == {module for module in modules
                      if module.startswith("cnnpipe/workflow/") or module in {
                          "cnnpipe/__main__.py", "cnnpipe/networks/layers.py", "cnnpipe/data/catalog.py"}}, unused


def users_of(module: str, src: Path) -> set[str]:
    """The rules whose scripts import ``module``, with the rules that consume their outputs."""
    users = {rule for rule, script in SCRIPTS.items()
             if src / module in package_files_used_by(src.parent / "workflow" / "scripts" / f"{script}.py", src)}
    return users | {consumer for rule in users for consumer in CONSUMERS.get(rule, ())}


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        # DeepDream's algorithm: the dream jobs and their summary, not classes, fooling or filters.
        ("cnnpipe/methods/deepdream.py", {"dream_chunk", "dream_photo", "dream_summary"}),
        # A style loss: the style jobs only, not classes or fooling (their judge measures no style).
        ("cnnpipe/methods/style/losses.py", {"style_chunk", "style_pair"}),
        # The pixel classifier: the stages that judge with it.
        ("cnnpipe/judges/pixels.py", {"classes", "fooling_method"}),
        # The parse-time package: nothing runs it, so nothing reruns.
        ("cnnpipe/workflow/checks.py", set()),
    ],
)
def test_editing_a_module_reruns_exactly_the_stages_that_import_it(tiny_run_copy, module, expected):
    """A real edit and a real plan: the stages that import the module rerun, with what
    consumes their outputs; undoing the edit leaves nothing to do (code is compared by
    content, not by time)."""
    tiny_run = tiny_run_copy
    src = tiny_run.parent / "code" / "src"
    assert users_of(module, src) == expected
    path = src / module
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# an edit\n")
        planned = set(planned_jobs(snakemake(tiny_run, "--dry-run"))) - {"all"}
    finally:
        path.write_bytes(original)
    assert planned == expected
    assert planned_jobs(snakemake(tiny_run, "--dry-run")) == {}


def test_a_finished_run_moved_elsewhere_has_nothing_to_do(tiny_run, tmp_path):
    """A results folder handed on with its code (a cluster's other mount point, a colleague's
    disk) is complete there too: no path the plan depends on is absolute."""
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(tiny_run.parent, moved, symlinks=True)
    assert planned_jobs(snakemake(moved / "work", "--dry-run")) == {}


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
        ({"classes": {"objective": "margin"}}, ["objective", "probability", "logit"]),
        ({"model": {"conv_channels": [4, 8, 8, 8, 8]}}, ["model.conv_channels", "12 px", "at most 3 blocks"]),
        ({"dream": {"tile": 1}}, ["dream.tile", "1 px", "at least 80 px"]),
        ({"classes": {"backbone": "vgg19", "image_size": 16}}, ["classes.image_size", "vgg19", "at least 32 px"]),
        ({"fooling": {"imagenet_classes": [1, 1000]}}, ["fooling", "imagenet_classes", "1000", "999"]),
        ({"fooling": {"imagenet_classes": []}}, ["fooling", "imagenet_classes"]),
        # Settings the schema takes that would only fail inside a job (issue 26, item 2).
        ({"dataset": {"test_fraction": 0.999}},
         ["dataset.test_fraction", "0.999", "1797 images in 10 classes", "1 train", "at most 0.994"]),
        ({"dataset": {"test_fraction": 0.001}}, ["dataset.test_fraction", "0.001", "2 test", "above 0.00501"]),
        ({"classes": {"parameterization": "phase"}}, ["classes.blur_every", "'phase'", "0"]),
        ({"classes": {"backbone": "vgg19", "imagenet_regularized": {"parameterization": "phase", "blur_every": 2}}},
         ["classes.imagenet_regularized.blur_every", "'phase'"]),
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
