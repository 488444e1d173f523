"""The package files a workflow script imports, found from its import statements."""

from __future__ import annotations

from pathlib import Path

from cnnpipe.workflow.codegraph import package_files_used_by


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_closure_follows_every_kind_of_import(tmp_path):
    src = tmp_path / "src"
    write(src, {
        "cnnpipe/__init__.py": "",
        "cnnpipe/stage.py": "import os\nfrom cnnpipe.helpers import tool\nfrom cnnpipe import engine\n",
        "cnnpipe/helpers.py": "import numpy\n\ndef tool():\n    from cnnpipe import lazy  # only on some paths\n",
        "cnnpipe/lazy.py": "import cnnpipe.helpers  # a cycle back\n",
        "cnnpipe/engine/__init__.py": "from .loop import run\n",
        "cnnpipe/engine/loop.py": "from ..shared import value\nfrom . import parts\n",
        "cnnpipe/engine/parts.py": "",
        "cnnpipe/shared.py": "value = 1\n",
        "cnnpipe/unused.py": "import cnnpipe.stage\n",
    })
    script = tmp_path / "script.py"
    script.write_text("import torch\nfrom cnnpipe.stage import run_stage\n")
    found = [str(path.relative_to(src / "cnnpipe")) for path in package_files_used_by(script, src)]
    assert sorted(found) == sorted([
        "__init__.py", "stage.py", "helpers.py", "lazy.py", "engine/__init__.py", "engine/loop.py",
        "engine/parts.py", "shared.py",
    ])


def test_a_script_without_package_imports_uses_no_package_file(tmp_path):
    write(tmp_path / "src", {"cnnpipe/__init__.py": "", "cnnpipe/a.py": ""})
    script = tmp_path / "script.py"
    script.write_text("import json\nprint(json.dumps({}))\n")
    assert package_files_used_by(script, tmp_path / "src") == []
