"""Each rule depends on exactly the package files its script imports, so editing a module
reruns exactly the stages that use it (and what consumes their outputs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline import TRAINED, planned_jobs, snakemake

from cnnpipe.workflow.codegraph import package_files_used_by

# Each rule's script under workflow/scripts/, and the rules that consume its outputs (the DAG).
SCRIPTS = {
    "download": "download", "train": "train", "lecture": "lecture",
    "first_layer_filters_network": "first_layer_filters", "sample_photo": "sample_photo",
    "filters_layer": "filters", "classes": "classes", "fooling_method": "fooling",
    "dream_chunk": "dream", "dream_photo": "dream", "dream_summary": "dream_summary",
    "style_chunk": "style", "style_pair": "style",
    "atlas_dataset": "atlas_dataset", "atlas_chunk": "atlas_chunk", "atlas_site": "atlas_site",
}
CONSUMERS = {
    "download": {"train", "lecture", "atlas_site"} | TRAINED,
    "train": TRAINED | {"atlas_site"},
    "sample_photo": {"dream_chunk", "dream_photo", "dream_summary", "style_chunk", "style_pair"},
    "dream_chunk": {"dream_photo"},
    "dream_photo": {"dream_summary"},
    "style_chunk": {"style_pair"},
    "atlas_dataset": {"atlas_site"},
    "atlas_chunk": {"atlas_site"},
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
        # The pixel classifier: the stages that judge with it (the atlas: its class units, and so its pages).
        ("cnnpipe/judges/pixels.py", {"classes", "fooling_method", "atlas_chunk", "atlas_site"}),
        # The atlas's pages: the site only, not the dataset pass or the ascent.
        ("cnnpipe/report/atlas_site.py", {"atlas_site"}),
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
