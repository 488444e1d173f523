"""Checks of the config made while the workflow is parsed, each naming the key at fault, so a
bad setting stops the run before any job starts (and before Snakemake deletes the outputs
of a job it would rerun).

Torch-free on import; the checks that need a network build it on the meta device
(:mod:`cnnpipe.workflow.probes`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from cnnpipe.data.catalog import DIGITS_CLASS_COUNTS, NATIVE_SIZES
from cnnpipe.networks.spec import TRAINED, BackboneSpec, default_layers_for, parse_backbone
from cnnpipe.workflow.probes import _meta_network, _smallest_working, check_layer_names, native_shape, native_size

# A DeepDream tile at least this large fits its margin at any layer stride here (at most 32).
SAFE_TILE = 256


def check_model_fits(dataset_cfg: Mapping, model_cfg: Mapping) -> None:
    """Stop before any job when ``model.conv_channels`` has more 2x2 poolings than the image
    side allows (each block halves it), so training never starts and deletes a good model."""
    size = int(dataset_cfg.get("image_size") or 0) or NATIVE_SIZES.get(dataset_cfg["name"])
    if size is None:
        return
    blocks = len(model_cfg["conv_channels"])
    if size // 2**blocks < 1:
        source = "dataset.image_size" if dataset_cfg.get("image_size") else f"the native size of {dataset_cfg['name']}"
        raise ValueError(
            f"model.conv_channels: {blocks} convolution blocks halve a {size} px image ({source}) {blocks} times, "
            f"below one pixel; use at most {size.bit_length() - 1} blocks or a larger dataset.image_size"
        )


def split_problem(class_counts: Sequence[int], test_fraction: float) -> str | None:
    """Why a stratified split of classes of ``class_counts`` images at ``test_fraction`` fails,
    or None: scikit-learn's rule for ``train_test_split(stratify=...)``, which the download job
    uses (ceil(fraction x N) test images, every class at least twice, and at least one image of
    each class on either side)."""
    total, classes = sum(class_counts), len(class_counts)
    n_test = math.ceil(test_fraction * total)
    n_train = total - n_test
    if min(class_counts) < 2:
        return "every class needs at least 2 images (one to train on, one to test)"
    if n_train < classes or n_test < classes:
        low, high = (classes - 1) / total, (total - classes) / total
        return (f"{total} images in {classes} classes give {n_train} train and {n_test} test images, and a "
                f"stratified split needs at least {classes} on each side (one per class): use a test_fraction "
                f"above {low:.3g} and at most {high:.3g}")
    return None


def _image_folder_counts(folder) -> dict[str, int]:
    """Class name -> number of images in an ``imagefolder`` dataset's folder, as the download job
    will find them (one subfolder per class, not hidden); a folder it would refuse is refused here,
    naming ``dataset.folder``."""
    from cnnpipe.io.images import list_images

    if folder is None:
        raise ValueError("dataset.folder: required when dataset.name is 'imagefolder'")
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"dataset.folder: {root} does not exist or is not a folder")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if len(classes) < 2:
        found = f"a single class subfolder ({classes[0]!r})" if classes else "no class subfolders"
        raise ValueError(f"dataset.folder: {root} has {found}; it needs one subfolder per class, at least 2")
    counts = {}
    for name in classes:
        try:
            counts[name] = len(list_images(root / name))
        except (OSError, ValueError):
            raise ValueError(f"dataset.folder: class subfolder {root / name} holds no images") from None
    return counts


def check_dataset_split(dataset_cfg: Mapping) -> None:
    """Stop before any job when ``dataset.test_fraction`` cannot split the dataset into
    stratified train and test sets (the download job would fail and Snakemake delete the
    prepared data): digits from its known class sizes, an image folder from its files.
    Downloaded datasets come with their own split, which test_fraction does not change."""
    name, fraction = dataset_cfg["name"], float(dataset_cfg["test_fraction"])
    if name == "digits":
        counts, what = dict(enumerate(DIGITS_CLASS_COUNTS)), "scikit-learn's digits"
    elif name == "imagefolder":
        counts, what = _image_folder_counts(dataset_cfg.get("folder")), f"the image folder {dataset_cfg['folder']}"
    else:
        return
    problem = split_problem(list(counts.values()), fraction)
    if problem is None:
        return
    few = [str(label) for label, count in counts.items() if count < 2]
    if few:
        problem += f"; {', '.join(few)} {'has' if len(few) == 1 else 'have'} fewer than 2 images"
    raise ValueError(f"dataset.test_fraction: {fraction} cannot split {what}: {problem}")


def check_classes_settings(classes_cfg: Mapping) -> None:
    """Stop before any job when the classes stage's regularized variant asks to blur a
    ``phase`` image, whose Fourier magnitude stays fixed (the job would refuse it): for the
    trained CNN's settings and for ``imagenet_regularized`` laid over them; or when that
    block's crop_side is not [low, high] or its canvas is smaller than the crops."""
    block = classes_cfg.get("imagenet_regularized") or {}
    for where, settings in (("classes", classes_cfg), ("classes.imagenet_regularized", {**classes_cfg, **block})):
        if settings["parameterization"] == "phase" and settings["blur_every"]:
            raise ValueError(f"{where}.blur_every: {settings['blur_every']} with parameterization 'phase', which "
                             f"keeps the image's Fourier magnitude fixed, so it cannot be blurred; set it to 0")
    side = block.get("crop_side")
    if side is not None and side[0] > side[1]:
        raise ValueError(f"classes.imagenet_regularized.crop_side: {list(side)} is [low, high], so low must not "
                         f"exceed high")
    canvas, size = block.get("canvas"), classes_cfg.get("image_size")
    if canvas is not None and size is not None and canvas < size:
        raise ValueError(f"classes.imagenet_regularized.canvas: {canvas} px is smaller than classes.image_size "
                         f"({size} px), the crops' size; make it at least that")


def check_dream_tile(dream_cfg: Mapping, model_cfg: Mapping) -> None:
    """Stop before any job when ``dream.tile`` is too small for a window around its margin at
    the dream layers' stride. Tiles of 0 (never tile) or from SAFE_TILE up need no network;
    smaller ones are checked on the meta device."""
    tile = int(dream_cfg["tile"])
    if tile <= 0 or tile >= SAFE_TILE:
        return
    from cnnpipe.methods.deepdream import TiledEnergy, resolve_layers, split_axis, tile_margin

    spec = parse_backbone(dream_cfg["backbone"], "dream.backbone", must_exist=False)
    model = _meta_network(spec, model_cfg, None)
    layers = resolve_layers(model, dream_cfg.get("layers"))
    # The layers' stride is probed once; each candidate side only changes the margin.
    align = TiledEnergy(model, layers, tile=tile).align

    def fits(side: int) -> bool:
        try:
            split_axis(side + 1, side, tile_margin(side, align), align)
        except ValueError:
            return False
        return True

    if not fits(tile):
        smallest = _smallest_working(tile, SAFE_TILE, fits)
        raise ValueError(
            f"dream.tile: {tile} px leaves no room inside a window for its margin of context at the stride of "
            f"the layers {layers} (backbone {spec.label!r}); use 0 (never tile) or at least {smallest} px"
        )


def backbones_by_slug(values: Sequence, key: str, pattern: str) -> dict[str, tuple[int, BackboneSpec]]:
    """The networks listed under ``key``, by the file name each one's results take (its spec's
    slug, put into ``pattern``): slug -> (list index, spec), in list order. Two different specs
    with one slug would write one file, the second replacing the first: refused, naming both
    entries and the file. The same network listed twice is kept once."""
    found: dict[str, tuple[int, BackboneSpec]] = {}
    for index, value in enumerate(values):
        spec = parse_backbone(value, f"{key}[{index}]")
        if spec.slug not in found:
            found[spec.slug] = (index, spec)
            continue
        first, other = found[spec.slug]
        if other != spec:
            raise ValueError(f"{key}[{first}] and {key}[{index}]: {other.label!r} and {spec.label!r} would both be "
                             f"written to {pattern.format(spec.slug)}, one replacing the other; rename one of the "
                             f"files")
    return found


def check_backbone_weights(key: str, backbone) -> None:
    """Stop before any job when the ``weights`` file of a backbone spec is refused (it would run
    code when unpickled), unreadable, or does not fit its architecture: the message names
    ``key`` and the first tensor whose name or shape differs. Only such specs import torch."""
    spec = parse_backbone(backbone, key)
    if spec.weights is None:
        return
    from cnnpipe.networks.build import check_weights_file

    check_weights_file(spec, f"{key}.weights")


def check_style_layers(style_cfg: Mapping) -> None:
    """Stop before any job when style transfer has no content or style layers: none named, and
    no defaults for the backbone's architecture (only EfficientNet-Lite, VGG19 and GoogLeNet
    have them)."""
    spec = parse_backbone(style_cfg["backbone"], "style.backbone", must_exist=False)
    defaults = default_layers_for(spec)
    for kind in ("content", "style"):
        if not style_cfg.get(f"{kind}_layers") and not defaults:
            raise ValueError(f"style.{kind}_layers: backbone {spec.label!r} has no default {kind} layers; name "
                             f"them (`python -m cnnpipe layers {spec.arch}` lists the layers)")


def trained_conv_layers(model_cfg: Mapping) -> list[str]:
    """The convolution layers the config's ``model`` section builds: conv1 ... convN."""
    return [f"conv{i}" for i in range(1, len(model_cfg["conv_channels"]) + 1)]


def trained_fc_layers(model_cfg: Mapping) -> list[str]:
    """The hidden fully connected layers the config's ``model`` section builds: fc1 ... fcM."""
    return [f"fc{i}" for i in range(1, len(model_cfg.get("hidden") or []) + 1)]


def filter_layers(filters_cfg: Mapping, model_cfg: Mapping) -> list[str]:
    """The layers the ``filters`` stage visualizes, checked without loading any weights.

    Raises ``ValueError`` naming ``filters.layers`` (or ``filters.backbone``) for a name that
    is not a convolution or hidden fully connected layer of the configured CNN, or not a
    layer of the backbone with a feature map [B, C, H, W] or units [B, N].
    """
    spec = parse_backbone(filters_cfg.get("backbone", TRAINED), "filters.backbone")
    layers = list(dict.fromkeys(filters_cfg.get("layers") or []))
    if spec.kind == TRAINED:
        known = trained_conv_layers(model_cfg) + trained_fc_layers(model_cfg)
        bad = [name for name in layers if name not in known]
        if bad:
            raise ValueError(
                f"filters.layers: {', '.join(map(repr, bad))} {'is' if len(bad) == 1 else 'are'} not a "
                f"convolution or hidden fully connected layer of the configured CNN; model.conv_channels "
                f"{list(model_cfg['conv_channels'])} and model.hidden {list(model_cfg.get('hidden') or [])} give "
                f"the layers {known}"
            )
        return layers or trained_conv_layers(model_cfg)
    if not layers:
        raise ValueError(
            f"filters.layers: required when filters.backbone is {spec.label!r} (a network from elsewhere "
            f"has too many layers to draw them all); `python -m cnnpipe layers {spec.arch}` lists them"
        )
    if spec.kind == "checkpoint":  # another run's CNN: probed at its own channels and size, as the job draws it
        shape = native_shape(spec)
    else:
        size = filters_cfg.get("image_size", 128) or native_size(spec)
        shape = (3, size, size)
    check_layer_names("filters.layers", spec, layers, model_cfg, input_shape=shape, units_allowed=True)
    return layers
