"""Which source files of the package a workflow script runs, read from import statements.

Snakemake reruns a job when its script changes, but not when a module the script imports
changes. The rules therefore list those modules as inputs, and this module finds them: the
transitive closure of ``import cnnpipe...`` statements (anywhere in a file, including inside
functions, so an import done only on some paths still counts), found with :mod:`ast` at parse
time without importing anything."""

from __future__ import annotations

import ast
import os
from functools import cache
from pathlib import Path

PACKAGE = "cnnpipe"


def module_file(src: Path, module: str) -> Path | None:
    """The file that defines ``module`` (``cnnpipe.x`` or ``cnnpipe.x.y``) under ``src`` (the
    folder holding the package), or None when it is not part of the package."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = src.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(src: Path, path: Path) -> str:
    """Dotted name of the package a file belongs to (for relative imports)."""
    return ".".join(path.relative_to(src).parent.parts)


def _imported_modules(src: Path, path: Path) -> set[str]:
    """Every dotted module name an ``import`` or ``from ... import`` in ``path`` may load,
    relative imports resolved; ``from pkg import name`` counts ``pkg.name`` too, since the
    name may be a submodule."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(src, path).split(".")
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a submodule runs its packages' __init__."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def _direct_dependencies(src: Path, path: Path) -> frozenset[Path]:
    found = set()
    for name in _imported_modules(src, path):
        for module in _with_parents(name):
            target = module_file(src, module)
            if target is not None and target != path:
                found.add(target)
    return frozenset(found)


def package_files_used_by(script: str | os.PathLike, src: str | os.PathLike) -> list[Path]:
    """The package's source files that ``script`` imports, directly or through other package
    modules, sorted. ``src`` is the folder that holds the ``cnnpipe`` package."""
    # abspath, not resolve: symlinks stay as the user sees them, so paths relative to the
    # working folder stay short and stable.
    src = Path(os.path.abspath(src))
    seen: set[Path] = set()
    todo = [Path(os.path.abspath(script))]
    while todo:
        for dependency in _direct_dependencies(src, todo.pop()):
            if dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    return sorted(seen)
