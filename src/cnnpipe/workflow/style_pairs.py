"""The style stage's content/style pairs and sizes, read from the config while the workflow is parsed; errors name the key at fault."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from cnnpipe.io.images import list_images
from cnnpipe.io.photos import SAMPLE_PHOTOS
from cnnpipe.methods.style.names import pair_name
from cnnpipe.workflow.inputs import RST_MARKUP_TEXT, rst_markup


class StylePair(tuple):
    """One style job's images: ``(content path, style path)``, or for a blend of several style
    images ``(content path, (style paths, ...))``, compared as that 2-tuple; ``weights`` holds
    the blend's weights, normalized to sum 1 ((1.0,) for one image), ``styles`` the style
    paths as a tuple in both cases (the rule's input), ``content`` the content path."""

    weights: tuple[float, ...]

    def __new__(cls, content: str, styles: Sequence[str], weights: Sequence[float] = (1.0,)):
        styles = tuple(styles)
        if len(weights) != len(styles):
            raise ValueError(f"{len(weights)} weights for {len(styles)} style images")
        pair = super().__new__(cls, (content, styles[0] if len(styles) == 1 else styles))
        pair.weights = tuple(float(w) for w in weights)
        return pair

    @property
    def content(self) -> str:
        return self[0]

    @property
    def styles(self) -> tuple[str, ...]:
        return (self[1],) if isinstance(self[1], str) else tuple(self[1])


def _blend_entries(value, where: str) -> list[tuple[object, object, str]]:
    """A pair's ``style`` value as (image, weight, key) triples: a name or path (weight 1), a
    mapping {image: weight}, or a list of names and one-entry mappings
    (``[starry: 0.7, scream: 0.3]``)."""
    if isinstance(value, Mapping):
        return [(image, weight, f"{where}.{image}") for image, weight in value.items()]
    if isinstance(value, (list, tuple)):
        entries = []
        for index, item in enumerate(value):
            if isinstance(item, Mapping) and len(item) == 1:
                ((image, weight),) = item.items()
                entries.append((image, weight, f"{where}[{index}].{image}"))
            elif isinstance(item, str):
                entries.append((item, 1.0, f"{where}[{index}]"))
            else:
                raise ValueError(f"{where}[{index}]: expected a style image or {{image: weight}}, got {item!r}")
        return entries
    return [(value, 1.0, where)]


def _blend_weights(entries: Sequence[tuple[object, object, str]], where: str) -> list[float]:
    """The blend's weights normalized to sum 1; each must be a positive number."""
    if not entries:
        raise ValueError(f"{where}: no style image given")
    weights = []
    for _, weight, key in entries:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
                weight > 0 and weight != float("inf")):
            raise ValueError(f"{key}: a style's weight must be a positive number, got {weight!r}")
        weights.append(float(weight))
    total = sum(weights)
    return [weight / total for weight in weights]


def style_pairs(settings: Mapping, photo_dir: str | os.PathLike = "results/photos",
                sample_photos: Sequence[str] = tuple(SAMPLE_PHOTOS)) -> dict[str, StylePair]:
    """Pair name -> ``StylePair`` (content path, style path or paths, blend weights), in config
    order: the explicit ``pairs``, then every content image of ``content_folder`` with every
    style image of ``style_folder``. A name from ``sample_photos`` means
    ``<photo_dir>/<name>.png`` (made by the pipeline); anything else must be an existing image
    file. A pair's ``style`` may blend several images: ``{starry: 0.7, scream: 0.3}`` or
    ``[starry: 0.7, scream: 0.3]`` (positive weights, normalized to sum 1; a list of names
    without weights blends them equally). Errors name the key at fault."""
    found = _listed_pairs(settings, photo_dir, sample_photos) + _folder_pairs(settings)
    if not found:
        raise ValueError(
            "style: no content/style pairs to run. List some under style.pairs "
            "(e.g. {content: chelsea, style: hubble_deep_field}) or set both style.content_folder "
            "and style.style_folder"
        )
    return _by_name(found)


def _source(value, where: str, photo_dir: str | os.PathLike, sample_photos: Sequence[str]) -> str:
    """The file an image value names: a sample photo's PNG under ``photo_dir``, or an existing file."""
    value = str(value)
    if value in sample_photos:
        return str(Path(photo_dir) / f"{value}.png")
    if not Path(value).is_file():
        raise ValueError(
            f"{where}: {value!r} is neither a sample photo ({', '.join(sorted(sample_photos))}) "
            "nor an existing image file"
        )
    return value


def _listed_pairs(settings: Mapping, photo_dir: str | os.PathLike, sample_photos: Sequence[str]) -> list[StylePair]:
    """The pairs listed under ``style.pairs``, in order."""
    found: list[StylePair] = []
    for index, entry in enumerate(settings.get("pairs") or []):
        if not isinstance(entry, Mapping) or set(entry) != {"content", "style"}:
            raise ValueError(f"style.pairs[{index}]: expected {{content: ..., style: ...}}, got {entry!r}")
        content = _source(entry["content"], f"style.pairs[{index}].content", photo_dir, sample_photos)
        where = f"style.pairs[{index}].style"
        entries = _blend_entries(entry["style"], where)
        weights = _blend_weights(entries, where)
        styles = [_source(image, key, photo_dir, sample_photos) for image, _, key in entries]
        if len(set(styles)) != len(styles):
            raise ValueError(f"{where}: a style image appears twice in the blend: {styles}")
        found.append(_without_markup(StylePair(content, styles, weights),
                                     [f"style.pairs[{index}].content", *(key for _, _, key in entries)]))
    return found


def _without_markup(pair: StylePair, keys: Sequence[str]) -> StylePair:
    """``pair``, unless the name of one of its images holds reStructuredText markup
    (:func:`rst_markup`): the pair's files are named after them, and Snakemake's report, which
    names every result, would break. The error names the key (``keys``: the content's, then
    each style's) and the file. The ``__`` that joins the names is safe after any character."""
    for key, path in zip(keys, [pair.content, *pair.styles]):
        if rst_markup(Path(path).stem):
            raise ValueError(f"{key}: {path!r} has a name that holds {RST_MARKUP_TEXT}, which reStructuredText "
                             f"reads as markup in the report (where each result, named after the pair "
                             f"{pair_name(pair.content, pair.styles, pair.weights)!r}, is named); rename the file")
    return pair


def _folder_pairs(settings: Mapping) -> list[StylePair]:
    """Every content image of ``style.content_folder`` with every style image of
    ``style.style_folder`` (both or neither must be set)."""
    content_folder, style_folder = settings.get("content_folder"), settings.get("style_folder")
    if bool(content_folder) != bool(style_folder):
        given, missing = ("content_folder", "style_folder") if content_folder else ("style_folder", "content_folder")
        raise ValueError(f"style.{given} is set but style.{missing} is not: pairs from folders need both")
    if not content_folder:
        return []
    try:
        contents, styles = list_images(content_folder), list_images(style_folder)
    except (OSError, ValueError) as error:
        raise ValueError(f"style.content_folder / style.style_folder: {error}") from None
    return [_without_markup(StylePair(str(c), [str(s)]), ["style.content_folder", "style.style_folder"])
            for c in contents for s in styles]


def _by_name(found: Sequence[StylePair]) -> dict[str, StylePair]:
    """The pairs by their names (a pair listed twice once), refusing two pairs of one name and
    names that cannot be file names."""
    pairs: dict[str, StylePair] = {}
    for pair in found:
        content, style = pair
        name = pair_name(content, pair.styles, pair.weights)
        if name in pairs and (pairs[name] != pair or pairs[name].weights != pair.weights):
            raise ValueError(
                f"style: two pairs would both write results/style/{name}.png: {tuple(pairs[name])} and "
                f"{tuple(pair)}; rename one of the files"
            )
        if re.search(r"[/\\{}<>\x00-\x1f\x7f]", name):
            raise ValueError(f"style: pair name {name!r} (from {content!r} and {style!r}) cannot be an output "
                             "file name: rename the files without slashes, braces, angle brackets or control "
                             "characters")
        pairs[name] = pair
    return pairs


def style_sizes(settings: Mapping) -> list[int]:
    """The sizes style transfer works at, smallest first: ``style.sizes`` (null: one size,
    ``style.image_size``), which must grow and end at ``style.image_size`` (the output's size),
    and the matching ``style.steps`` (one count for all or one per size) are checked here."""
    final = settings["image_size"]
    sizes = settings.get("sizes")
    if sizes is None:
        sizes = [final]
    if not isinstance(sizes, (list, tuple)) or not sizes or any(
            isinstance(size, bool) or not isinstance(size, int) or size < 8 for size in sizes):
        raise ValueError(f"style.sizes: expected a list of sizes in pixels (integers >= 8), or null, got {sizes!r}")
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"style.sizes: each scale starts from the previous one upscaled, so sizes must grow; "
                         f"got {list(sizes)}")
    if sizes[-1] != final:
        raise ValueError(f"style.sizes: the last size is the output's and must equal style.image_size ({final}); "
                         f"got {list(sizes)}")
    steps = settings.get("steps")
    if isinstance(steps, (list, tuple)) and len(steps) != len(sizes):
        raise ValueError(f"style.steps: {len(steps)} step counts for {len(sizes)} sizes (style.sizes: "
                         f"{list(sizes)}); give one count for all or one per size")
    return list(sizes)
