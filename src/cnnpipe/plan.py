"""What the workflow decides while Snakemake parses it: which jobs exist and which files they
read (layers, images, photos, downloaded weights), and every check that stops a bad config
before any job starts, naming the config key at fault.

Importing this module does not import torch, so a dry run of the whole pipeline starts in
about a second. The checks that need a network import torch only when there is something to
check (layers named explicitly, a network other than the bundled ones, a small image): they
build it on the meta device, without weights, in milliseconds."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cnnpipe.backbone_spec import TRAINED, BackboneSpec, default_layers_for, layer_list, parse_backbone
from cnnpipe.images import IMAGE_EXTENSIONS, ImageError, list_images
from cnnpipe.photos import SAMPLE_PHOTOS

# The side of each dataset's images when dataset.image_size is 0 (an image folder's is known
# only from its files).
NATIVE_SIZES = {"digits": 8, "mnist": 28, "fashion_mnist": 28, "kmnist": 28, "cifar10": 32}
# A DeepDream tile at least this large fits its margin at any layer stride here (at most 32).
SAFE_TILE = 256


def _smallest_working(start: int, limit: int, works) -> int | None:
    """The smallest side in (start, limit] for which ``works(side)`` holds, for an error
    message that says what to use instead; None if there is none."""
    return next((side for side in range(start + 1, limit + 1) if works(side)), None)


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


def check_dream_tile(dream_cfg: Mapping, model_cfg: Mapping) -> None:
    """Stop before any job when ``dream.tile`` is too small for a window around its margin at
    the dream layers' stride. Tiles of 0 (never tile) or from SAFE_TILE up need no network;
    smaller ones are checked on the meta device."""
    tile = int(dream_cfg["tile"])
    if tile <= 0 or tile >= SAFE_TILE:
        return
    from cnnpipe.deepdream import TiledEnergy, resolve_layers, split_axis

    spec = parse_backbone(dream_cfg["backbone"], "dream.backbone", must_exist=False)
    model = _meta_network(spec, model_cfg, None)
    layers = resolve_layers(model, dream_cfg.get("layers"))

    def fits(side: int) -> bool:
        energy = TiledEnergy(model, layers, tile=side)
        try:
            split_axis(side + 1, side, energy.margin, energy.align)
        except ValueError:
            return False
        return True

    if not fits(tile):
        smallest = _smallest_working(tile, SAFE_TILE, fits)
        raise ValueError(
            f"dream.tile: {tile} px leaves no room inside a window for its margin of context at the stride of "
            f"the layers {layers} (backbone {spec.label!r}); use 0 (never tile) or at least {smallest} px"
        )


# The memory of one DeepDream job, in MB, from peak RSS measured on EfficientNet-Lite0 on two
# CPU cores (benchmarks/dream_memory.py): the process with torch and the network, the
# activations and gradients of one window (per million window pixels), and the copies of the
# photo (per million photo pixels; more with smaller octaves kept beside it).
DREAM_MEMORY_MB = {"base": 900, "per_window_mp": 1500, "per_photo_mp": 100, "octaves_factor": 1.7, "margin": 1.3}


def dream_mem_mb(image: str | os.PathLike, dream_cfg: Mapping) -> int:
    """The ``mem_mb`` a DeepDream job declares for ``image``: enough for its measured peak,
    with a margin, for the photo's size (read from its header) and ``dream.tile``."""
    from PIL import Image

    try:
        with Image.open(image) as photo:
            width, height = photo.size
    except Exception:  # not an image: the job itself stops with a message naming the file
        width = height = 0
    photo_mp = width * height / 1e6
    tile = int(dream_cfg["tile"])
    window_mp = photo_mp if tile <= 0 else min(photo_mp, tile * tile / 1e6)
    cost = DREAM_MEMORY_MB
    per_photo = cost["per_photo_mp"] * (cost["octaves_factor"] if int(dream_cfg["octaves"]) > 1 else 1.0)
    mb = (cost["base"] + cost["per_window_mp"] * window_mp + per_photo * photo_mp) * cost["margin"]
    return int(-(-mb // 100) * 100)


def style_mem_mb(style_cfg: Mapping) -> int:
    """The ``mem_mb`` a style chunk declares (its pairs, or batches of ``style.batch`` pairs, run
    one after another): a fixed part (Python, torch, the network and the judge), activations and
    gradients growing with the largest size's pixels (square, the worst case) and the batch,
    and L-BFGS's 2 x ``lbfgs_history`` images; measured on EfficientNet-Lite0 by
    benchmarks/style_multiscale.py (2.4 GB peak at 1024 px, history 20). At least 4000, the
    former fixed declaration, for networks not measured. (With batch "auto" the batches run on
    a GPU, so one pair's host memory is counted.)"""
    size = int(style_cfg["image_size"])
    history = int(style_cfg.get("lbfgs_history") or 20)
    batch = check_style_batch(style_cfg)
    mb = 1500 + 1.6e-3 * size * size * (batch if isinstance(batch, int) else 1) + (
        2 * history * 3 * 4 * (size + 16) ** 2 / 2**20)
    return max(4000, int(-(-mb // 100) * 100))


def check_style_batch(style_cfg: Mapping) -> int | str:
    """``style.batch``: a positive integer or "auto"; more than one pair per batch needs
    ``style.optimizer: adam`` (L-BFGS's dot products would couple the pairs of a batch)."""
    setting, optimizer = style_cfg.get("batch", 1), style_cfg["optimizer"]
    if setting == "auto":
        return setting
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"style.batch must be a positive integer or 'auto', got {setting!r}")
    if setting > 1 and optimizer != "adam":
        raise ValueError(f"style.batch is {setting} but style.optimizer is {optimizer!r}: pairs share a batch "
                         "with adam only (L-BFGS's dot products would couple them); set style.optimizer: adam "
                         "or style.batch: 1")
    return setting


# The bundled ImageNet networks (EfficientNet-Lite) run at this input side or more; smaller
# sides, and every other network (a ViT takes one size only), are checked on the meta device.
SAFE_INPUT = 64


def check_input_size(key: str, backbone, size: int, layers: Sequence[str] | None = None) -> None:
    """Stop before any job when an ImageNet ``backbone`` cannot run on ``size`` px images (its
    poolings would shrink them below one pixel, or it takes one size only): the whole network,
    or only up to ``layers`` (aliases allowed; style transfer reads no deeper; an empty list
    means the backbone's default content and style layers). The message names ``key`` and the
    size to use. The bundled networks from SAFE_INPUT up need no check (torch stays unloaded)."""
    spec = parse_backbone(backbone, key.rsplit(".", 1)[0] + ".backbone", must_exist=False)
    if size is None or spec.kind in (TRAINED, "checkpoint") or (spec.kind == "packaged" and int(size) >= SAFE_INPUT):
        return  # null: the network's native size, which it runs at
    import torch

    model = _meta_network(spec, None, None)
    if layers is not None and not layers:  # style transfer's defaults: the content and style layers
        defaults = default_layers_for(spec)
        layers = [*layer_list(defaults["content"]), *layer_list(defaults["style"])] if defaults else None
    targets = [_qualified_layer(model, spec, name) for name in layers or []]

    def runs(side: int) -> bool:
        try:
            if targets:
                for target in targets:
                    # the logits may be a content layer: what matters here is that it runs
                    _check_feature_map(model, target, (3, side, side), "", units_allowed=True)
            else:
                model(torch.zeros(1, 3, side, side, device="meta"))
        except (RuntimeError, ValueError, AssertionError):  # a ViT asserts its input size
            return False
        return True

    if not runs(int(size)):
        native = int(getattr(model, "input_size", None) or 224)
        if runs(native) and not runs(native + SAFE_INPUT):  # a ViT: one size only
            raise ValueError(f"{key}: backbone {spec.label!r} takes {native} px images only (its native size), "
                             f"not {size} px")
        smallest = _smallest_working(int(size), max(SAFE_INPUT, native), runs)
        raise ValueError(f"{key}: {size} px is too small for backbone {spec.label!r}: its poolings shrink the image "
                         f"below one pixel; use at least {smallest or native} px")


def native_size(backbone) -> int:
    """The input side a network's weights were made for (their metadata, or the spec's
    ``input_size``), from its architecture on the meta device."""
    spec = parse_backbone(backbone, "backbone", must_exist=False)
    return int(_meta_network(spec, None, None).input_size)


def check_backbone_weights(key: str, backbone) -> None:
    """Stop before any job when the ``weights`` file of a backbone spec is refused (it would run
    code when unpickled), unreadable, or does not fit its architecture: the message names
    ``key`` and the first tensor whose name or shape differs. Only such specs import torch."""
    spec = parse_backbone(backbone, key)
    if spec.weights is None:
        return
    from cnnpipe.backbones import check_weights_file

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
    size = filters_cfg.get("image_size", 128) or native_size(spec)
    check_layer_names("filters.layers", spec, layers, model_cfg, input_shape=(3, size, size), units_allowed=True)
    return layers


def find_images(folder: str | os.PathLike, files: Iterable[str]) -> dict[str, str]:
    """Name -> path of the images among ``files`` (names relative to ``folder``, as Snakemake's
    ``glob_wildcards`` gives them): directly inside the folder, not hidden, with an image
    extension. The name is the file's stem; stems shared by several files keep the extension
    (``cat.jpg``, ``cat.png``). A missing folder or one without images is an
    :class:`~cnnpipe.images.ImageError` naming the folder."""
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
    ``{ } < >``, which Snakemake would read as a pattern, stops the run naming the file.
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
    if "summary" in images:
        raise ImageError(images["summary"], "an image named 'summary' would collide with results/dream/summary.csv; "
                                            "rename it")
    return images


def _stem(path) -> str:
    return Path(str(path)).stem


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


def blend_part(styles: Sequence[str], weights: Sequence[float] = (1.0,)) -> str:
    """The style part of a pair's name: the style image's stem, or for a blend the stems joined
    by ``+``, each followed by its weight in percent when the weights differ
    (``starry70+scream30``; equal weights: ``starry+scream``)."""
    stems = [_stem(path) for path in styles]
    if len(stems) == 1 or len(set(weights)) == 1:
        return "+".join(stems)
    return "+".join(f"{stem}{100 * weight:.3g}" for stem, weight in zip(stems, weights))


def blend_label(styles: Sequence[str], weights: Sequence[float] = (1.0,)) -> str:
    """The style (or blend) as captions say it: ``'starry'``, or ``70% 'starry' + 30% 'scream'``."""
    if len(styles) == 1:
        return repr(_stem(styles[0]))
    return " + ".join(f"{100 * weight:.3g}% {_stem(path)!r}" for path, weight in zip(styles, weights))


def pair_name(content: str, style: str | Sequence[str], weights: Sequence[float] = (1.0,)) -> str:
    """``<content>__<style>`` from the two images' names (file stems); for a blend of styles
    ``<content>__<style1><w1>+<style2><w2>`` (see ``blend_part``)."""
    styles = [style] if isinstance(style, (str, os.PathLike)) else list(style)
    return f"{_stem(content)}__{blend_part(styles, weights)}"


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
    def source(value, where: str) -> str:
        value = str(value)
        if value in sample_photos:
            return str(Path(photo_dir) / f"{value}.png")
        if not Path(value).is_file():
            raise ValueError(
                f"{where}: {value!r} is neither a sample photo ({', '.join(sorted(sample_photos))}) "
                "nor an existing image file"
            )
        return value

    found: list[StylePair] = []
    for index, entry in enumerate(settings.get("pairs") or []):
        if not isinstance(entry, Mapping) or set(entry) != {"content", "style"}:
            raise ValueError(f"style.pairs[{index}]: expected {{content: ..., style: ...}}, got {entry!r}")
        content = source(entry["content"], f"style.pairs[{index}].content")
        where = f"style.pairs[{index}].style"
        entries = _blend_entries(entry["style"], where)
        weights = _blend_weights(entries, where)
        styles = [source(image, key) for image, _, key in entries]
        if len(set(styles)) != len(styles):
            raise ValueError(f"{where}: a style image appears twice in the blend: {styles}")
        found.append(StylePair(content, styles, weights))
    content_folder, style_folder = settings.get("content_folder"), settings.get("style_folder")
    if bool(content_folder) != bool(style_folder):
        given, missing = ("content_folder", "style_folder") if content_folder else ("style_folder", "content_folder")
        raise ValueError(f"style.{given} is set but style.{missing} is not: pairs from folders need both")
    if content_folder:
        try:
            contents, styles = list_images(content_folder), list_images(style_folder)
        except (OSError, ValueError) as error:
            raise ValueError(f"style.content_folder / style.style_folder: {error}") from None
        found += [StylePair(str(c), [str(s)]) for c in contents for s in styles]
    if not found:
        raise ValueError(
            "style: no content/style pairs to run. List some under style.pairs "
            "(e.g. {content: chelsea, style: hubble_deep_field}) or set both style.content_folder "
            "and style.style_folder"
        )
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


def check_layer_names(
    key: str,
    backbone,
    layers: Iterable[str],
    model_cfg: Mapping | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    units_allowed: bool = False,
) -> None:
    """Stop before any job when a layer named under the config key ``key`` is not in ``backbone``
    (a backbone spec).

    ``model_cfg`` (the ``model`` section) describes the network when ``backbone`` is
    ``trained``. With ``input_shape`` [C, H, W] each layer must also give a feature map
    [B, C, H, W] for such an image (DeepDream, style transfer and the filters stage need one),
    or, with ``units_allowed``, units [B, N] (a fully connected layer's neurons, for the filters
    stage). The message starts with ``key`` and names the backbone and the closest layer names.

    The network is built on the meta device (no weights, no memory, milliseconds); torch is
    imported only when layers are named explicitly, so the default dry run stays light."""
    layers = list(layers or [])
    if not layers:
        return
    from cnnpipe import ascent

    spec = parse_backbone(backbone, key.rsplit(".", 1)[0] + ".backbone", must_exist=False)
    model = _meta_network(spec, model_cfg, input_shape)
    for name in layers:
        try:
            qualified = _qualified_layer(model, spec, name)
        except (ascent.LayerNotFoundError, ValueError) as error:
            raise ValueError(f"{key}: {error}") from None
        if input_shape is not None:
            _check_feature_map(model, qualified, input_shape, f"{key}: layer {name!r} of backbone {spec.label!r}",
                               units_allowed=units_allowed)


def _meta_network(spec: BackboneSpec, model_cfg: Mapping | None, input_shape: Sequence[int] | None):
    """The network of ``spec`` on the meta device, without weights; for ``trained``, the CNN
    that ``model_cfg`` builds for a stand-in dataset (layer names depend on the model section
    only); for another run's checkpoint, that model (read from its file, which is small)."""
    import torch

    from cnnpipe.backbones import load_backbone
    from cnnpipe.models import build_model

    if spec.kind == "checkpoint":
        return load_backbone(spec).to("meta")
    with torch.device("meta"):
        if spec.kind != TRAINED:
            return load_backbone(spec, pretrained=False)
        if model_cfg is None:
            raise ValueError("check_layer_names: backbone 'trained' needs the model section (model_cfg)")
        if input_shape is None:
            size = 4 * 2 ** len(model_cfg["conv_channels"])
            input_shape = (1, size, size)
        manifest = {"image_shape": [int(s) for s in input_shape], "classes": ["a", "b"],
                    "normalization": {"mean": [0.0], "std": [1.0]}}
        return build_model(model_cfg, manifest)


def _qualified_layer(model, spec: BackboneSpec, name: str) -> str:
    """The module name for ``name``: as given for a cnnpipe CNN, an alias resolved for any other
    network. Raises the lookup's own error, which lists the closest names."""
    if spec.kind in (TRAINED, "checkpoint"):
        from cnnpipe import ascent

        ascent.get_layer(model, name)
        return name
    from cnnpipe.backbones import resolve_layer

    return resolve_layer(model, name)


def _check_feature_map(model, qualified: str, input_shape: Sequence[int], what: str, *,
                       units_allowed: bool = False) -> None:
    """One forward pass on the meta device, stopped at ``qualified``: its output must be a
    feature map [B, C, H, W] (or, with ``units_allowed``, units [B, N])."""
    import torch

    from cnnpipe import ascent

    with ascent.capture(model, [qualified]) as acts:
        acts.run(torch.zeros(1, *(int(s) for s in input_shape), device="meta"))
    out = acts[qualified]
    if torch.is_tensor(out) and (out.dim() == 4 or (units_allowed and out.dim() == 2)):
        return
    shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
    wanted = "a feature map [B, C, H, W] or units [B, N]" if units_allowed else "a feature map [B, C, H, W]"
    raise ValueError(f"{what} gives an output of shape {shape}, not {wanted}"
                     + ("" if units_allowed else " (this stage needs a layer with a spatial output)"))


def local_gpu_count(environ: Mapping[str, str] | None = None, driver: str | os.PathLike = "/proc/driver/nvidia/gpus"
                    ) -> int:
    """NVIDIA GPUs this machine shows to its jobs, found without importing torch:
    CUDA_VISIBLE_DEVICES where it is set ("" or "-1": none), else the driver's GPU list."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
        return 0 if not entries or entries[0] == "-1" else len(entries)
    driver = Path(driver)
    return sum(1 for _ in driver.iterdir()) if driver.is_dir() else 0


def gpus_per_job(device: str, *, local: bool, local_gpus: int) -> int:
    """The ``gpu`` resource a GPU-capable job declares: none with ``device: cpu``; one with cuda
    or mps; with auto, one on a cluster (its nodes may have GPUs that this host lacks) and
    locally only where this machine has a GPU, so that a CPU-only workstation, whose global
    ``gpu`` limit (profiles/default) is 1, still runs such jobs side by side."""
    if device == "cpu":
        return 0
    if device == "auto" and local:
        return 1 if local_gpus > 0 else 0
    return 1


# --------------------------------------------------------------------------- judges and classes

DEFAULT_JUDGE = "efficientnet_lite1"
# Where the judge measures style: the end of each of EfficientNet-Lite's stages at 1/2 ... 1/16
# and one at 1/32, not the generator's default style layers (the first block at each stride),
# so the measure is not the loss that was minimized. Other networks: their default style layers.
_LITE_STYLE_LAYERS = ("stem", "blocks.1", "blocks.2", "blocks.3", "blocks.5")
JUDGE_STYLE_LAYERS = {"efficientnet_lite0": _LITE_STYLE_LAYERS, "efficientnet_lite1": _LITE_STYLE_LAYERS}


def check_judge(key: str, judge, generator) -> BackboneSpec | None:
    """The judge's spec for the stage ``key`` (``classes``/``fooling``), or None where it has
    nothing to judge (a generator without ImageNet's classes, or ``judge: null``). Raises
    ``ValueError`` naming ``<key>.judge`` when the judge is the generator itself or does not
    predict ImageNet's 1000 classes. Torch-free: called while the workflow is parsed."""
    generator = parse_backbone(generator, f"{key}.backbone", must_exist=False)
    if judge is None or not generator.imagenet:
        return None
    spec = parse_backbone(judge, f"{key}.judge")
    if not spec.imagenet:
        raise ValueError(f"{key}.judge: {spec.label!r} does not predict ImageNet's 1000 classes, so it cannot "
                         f"judge images made for them")
    if spec.to_config() == generator.to_config():
        raise ValueError(f"{key}.judge: {spec.label!r} is the network the images are optimized on "
                         f"({key}.backbone); an independent judge must be another network, e.g. "
                         f"{'efficientnet_lite0' if spec.arch == DEFAULT_JUDGE else DEFAULT_JUDGE}")
    return spec


def style_layers(spec: BackboneSpec) -> tuple[str, ...]:
    """The layers (names or aliases) where a judge measures Gram matrices; () where none are
    known for its architecture."""
    if spec.arch in JUDGE_STYLE_LAYERS:
        return JUDGE_STYLE_LAYERS[spec.arch]
    return tuple(layer_list((default_layers_for(spec) or {}).get("style")))


def class_targets(key: str, backbone, indices) -> list[int]:
    """The class indices a backbone's ``classes``/``fooling`` images are made for: the listed
    ``imagenet_classes`` on an ImageNet network, every class of a network with another number
    of classes (the list must then be null). Checked at parse time too, naming ``key``."""
    spec = parse_backbone(backbone, f"{key}.backbone", must_exist=False)
    if not spec.imagenet:
        if indices is not None:
            raise ValueError(f"{key}.imagenet_classes: backbone {spec.label!r} has {spec.num_classes} classes, not "
                             f"ImageNet's 1000; set {key}.imagenet_classes: null to visualize all of them")
        return list(range(spec.num_classes))
    targets = [int(i) for i in indices or []]
    bad = [i for i in targets if not 0 <= i < 1000]
    if not targets or bad or len(set(targets)) != len(targets):
        raise ValueError(f"{key}.imagenet_classes: need distinct ImageNet class indices in 0..999 for backbone "
                         f"{spec.label!r}, got {indices!r}")
    return targets
