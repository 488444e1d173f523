"""The images of a folder that the DeepDream stage dreams over, found while the workflow is parsed; names Snakemake or the file system cannot take are refused or skipped with a message."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from cnnpipe.io.images import IMAGE_EXTENSIONS, ImageError


def find_images(folder: str | os.PathLike, files: Iterable[str]) -> dict[str, str]:
    """Name -> path of the images among ``files`` (names relative to ``folder``, as Snakemake's
    ``glob_wildcards`` gives them): directly inside the folder, not hidden, with an image
    extension. The name is the file's stem; stems shared by several files keep the extension
    (``cat.jpg``, ``cat.png``). A missing folder or one without images is an
    :class:`~cnnpipe.io.images.ImageError` naming the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(folder, "dream.folder: no such folder")
    images = sorted(f for f in files if _is_image_name(f))
    if not images:
        raise ImageError(
            folder, f"dream.folder holds no images (looked for {', '.join(IMAGE_EXTENSIONS)} directly inside it)"
        )
    stems: dict[str, int] = {}
    for f in images:
        stems[Path(f).stem] = stems.get(Path(f).stem, 0) + 1
    return {(Path(f).stem if stems[Path(f).stem] == 1 else f): str(folder / f) for f in images}


def _is_image_name(name: str) -> bool:
    top_level = "/" not in name and os.sep not in name
    return top_level and not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


# Characters Snakemake reads as wildcards ({}) or path variables (<>) in a file path.
_PATTERN_CHARACTERS = re.compile(r"[{}<>]")
# What reStructuredText reads as markup in a name: ` : * |, and _ at the start or end of a word.
# Snakemake's report writes a hyperlink target `.. _<file name>: ...` for every result into
# every caption, so one such name breaks them all.
_RST_MARKUP = re.compile(r"[`:*|]|(?<!\w)_|_(?!\w)")
RST_MARKUP_TEXT = "` : * | or an _ at the start or end of a word"


def rst_markup(name: str) -> bool:
    """Whether ``name`` holds what reStructuredText reads as markup (see ``_RST_MARKUP``)."""
    return bool(_RST_MARKUP.search(name))


def folder_files(folder: str | os.PathLike) -> list[str]:
    """The names of the plain files directly inside ``folder`` (none if it is missing)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_file())


def dream_inputs(settings: Mapping, files: Iterable[str] = ()) -> dict[str, str]:
    """The images of the ``dream`` config section, name -> file, for the workflow.

    ``folder`` null: the bundled photos in ``photos`` (exported to results/photos/<name>.png).
    Otherwise the images among ``files`` (the folder's :func:`folder_files`), see
    :func:`find_images`. Other visible files, and names with control characters (a newline),
    which cannot be output file names, are reported on stderr and skipped. A name with
    ``{ } < >``, which Snakemake would read as a pattern, or with reStructuredText markup
    (:func:`rst_markup`), which breaks the report, stops the run naming the file.
    """
    folder = settings.get("folder")
    if folder is None:
        return {name: f"results/photos/{name}.png" for name in settings["photos"]}
    files = [f for f in files if not f.startswith(".")]
    unprintable = sorted(f for f in files if not f.isprintable())
    files = [f for f in files if f.isprintable()]
    patterned = sorted(f for f in files if _is_image_name(f) and _PATTERN_CHARACTERS.search(f))
    if patterned:
        raise ImageError(Path(folder) / patterned[0],
                         "dream.folder: the file name holds { } < >, which Snakemake reads as a pattern; rename it"
                         + (f" (and {patterned[1:]})" if len(patterned) > 1 else ""))
    images = find_images(folder, files)
    skipped = sorted(f for f in files if "/" not in f and not _is_image_name(f))
    if skipped:
        print(f"dream.folder {folder}: skipping files that are not images: {skipped}", file=sys.stderr)
    if unprintable:
        print(f"dream.folder {folder}: skipping files whose names hold control characters (a newline), which "
              f"cannot be output file names: {unprintable}", file=sys.stderr)
    marked = sorted(name for name in images if rst_markup(name))
    if marked:
        raise ImageError(images[marked[0]], f"dream.folder: the name {marked[0]!r} holds {RST_MARKUP_TEXT}, which "
                                            "reStructuredText reads as markup in the report (where each result is named); "
                                            "rename it" + (f" (and {marked[1:]})" if len(marked) > 1 else ""))
    if "summary" in images:
        raise ImageError(images["summary"], "an image named 'summary' would collide with results/dream/summary.csv; "
                                            "rename it")
    return images


def atlas_images(folder) -> list[str]:
    """The image files directly inside ``atlas.folder`` (sorted), or none for null (the
    bundled photos, or the trained CNN's training images). A missing folder or one without
    images stops the run, naming ``atlas.folder``."""
    if folder is None:
        return []
    path = Path(folder)
    if not path.is_dir():
        raise ImageError(path, "atlas.folder: no such folder")
    images = [str(path / name) for name in folder_files(path) if _is_image_name(name)]
    if not images:
        raise ImageError(path, f"atlas.folder holds no images (looked for {', '.join(IMAGE_EXTENSIONS)} directly "
                               "inside it)")
    return images
