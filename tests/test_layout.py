"""The house rules a newcomer relies on: small modules, short functions, a one-screen README,
and a package whose sub-packages are the layers of pyproject.toml's import contract."""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "cnnpipe"
MODULE_LINES, FUNCTION_LINES, README_LINES = 500, 60, 150


def test_no_module_over_500_lines_and_no_function_over_60():
    long_modules, long_functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MODULE_LINES:
            long_modules.append(str(path.relative_to(PACKAGE)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert long_modules == [] and long_functions == []


def test_the_readme_fits_one_screen_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_LINES
    commands = [line.split("#")[0].strip() for line in lines[:8] if line.startswith("make ")]
    assert commands == ["make run", "make test"]


def test_every_sub_package_is_a_layer_of_the_import_contract():
    """A new folder must take a place in the layering, or nothing checks its imports."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = config["tool"]["importlinter"]["contracts"]
    layered = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    packages = {f"cnnpipe.{path.parent.name}" for path in PACKAGE.glob("*/__init__.py")}
    assert packages <= layered, packages - layered
