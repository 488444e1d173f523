"""Networks probed on the meta device while the workflow is parsed: whether a layer exists and
gives a feature map, and whether an input size runs. No weights, no memory, milliseconds;
torch is imported only when there is something to check (layers named explicitly, a network
other than the bundled ones, a small image), so the default dry run stays light."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from cnnpipe.networks.spec import TRAINED, BackboneSpec, default_layers_for, layer_list, parse_backbone


def _smallest_working(start: int, limit: int, works) -> int | None:
    """The smallest side in (start, limit] for which ``works(side)`` holds, for an error
    message that says what to use instead; None if there is none."""
    return next((side for side in range(start + 1, limit + 1) if works(side)), None)


# How far above its native size a network is tried, to tell one that takes a single size (a
# ViT) from one whose poolings need a larger image; and the least side searched for the latter.
SAFE_INPUT = 64


def check_input_size(key: str, backbone, size: int, layers: Sequence[str] | None = None) -> None:
    """Stop before any job when an ImageNet ``backbone`` cannot run on ``size`` px images (its
    poolings would shrink them below one pixel, or it takes one size only): the whole network,
    or only up to ``layers`` (aliases allowed; style transfer reads no deeper; an empty list
    means the backbone's default content and style layers). The message names ``key`` and the
    size to use. The bundled networks (EfficientNet-Lite) run at every size, down to 1 px (their
convolutions pad so that no map shrinks below one pixel; tests/workflow/test_plan.py tries
1 to 64 px), so they need no check and torch stays unloaded."""
    spec = parse_backbone(backbone, key.rsplit(".", 1)[0] + ".backbone", must_exist=False)
    if size is None or spec.kind in (TRAINED, "checkpoint") or spec.kind == "packaged":
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


def native_shape(backbone) -> tuple[int, int, int]:
    """The input [C, H, W] a network takes: another run's checkpoint its own (the lecture CNN
    may be gray), any other network RGB at its native size."""
    spec = parse_backbone(backbone, "backbone", must_exist=False)
    model = _meta_network(spec, None, None)
    if spec.kind == "checkpoint":
        return tuple(int(s) for s in model.image_shape)
    return (3, int(model.input_size), int(model.input_size))


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

    from cnnpipe.networks.build import load_backbone
    from cnnpipe.networks.lecture_cnn import build_model

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
    from cnnpipe.networks.aliases import resolve_layer

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


# `atlas.layers: conv` names every convolution layer of the network.
EVERY_CONV = "conv"


def _trained_units(backbone, layers, model_cfg: Mapping | None) -> dict[str, int] | None:
    """Layer -> units for the trained CNN's convN and fcN layers (or ``conv``), from the model
    section; None where another network or layer needs the probe."""
    if model_cfg is None or parse_backbone(backbone, "atlas.backbone", must_exist=False).kind != TRAINED:
        return None
    known = {f"conv{i}": int(c) for i, c in enumerate(model_cfg["conv_channels"], start=1)}
    if layers == EVERY_CONV:
        return known
    known.update({f"fc{j}": int(w) for j, w in enumerate(model_cfg.get("hidden") or [], start=1)})
    if isinstance(layers, str) or not layers or not set(layers) <= set(known):
        return None
    return {name: known[name] for name in dict.fromkeys(layers)}


def layer_units(key: str, backbone, layers, model_cfg: Mapping | None = None, *,
                input_shape: Sequence[int] | None = None) -> dict[str, int]:
    """Layer -> its number of units (channels of a feature map, neurons of a fully connected
    layer), for the layers named under ``key`` or, for ``"conv"``, every ``Conv2d`` of the
    network; from one forward on the meta device (no weights). Errors name ``key``. The trained
    CNN's conv and fc layers are read from ``model_cfg`` without importing torch."""
    from_config = _trained_units(backbone, layers, model_cfg)
    if from_config is not None:
        return from_config
    import torch
    from torch import nn

    from cnnpipe import ascent

    spec = parse_backbone(backbone, key.rsplit(".", 1)[0] + ".backbone", must_exist=False)
    model = _meta_network(spec, model_cfg, None)
    if layers == EVERY_CONV:
        return {name: int(m.out_channels) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    if isinstance(layers, str) or not layers:
        raise ValueError(f"{key}: a list of layer names, or {EVERY_CONV!r} for every convolution layer")
    try:
        qualified = {name: _qualified_layer(model, spec, name) for name in dict.fromkeys(layers)}
    except (ascent.LayerNotFoundError, ValueError) as error:
        raise ValueError(f"{key}: {error}") from None
    shape = input_shape or (3, 224, 224)
    if spec.kind == TRAINED:  # the stand-in CNN that _meta_network builds
        size = 4 * 2 ** len(model_cfg["conv_channels"])
        shape = (1, size, size)
    elif hasattr(model, "image_shape"):  # another run's CNN: its own shape
        shape = tuple(model.image_shape)
    with ascent.capture(model, sorted(set(qualified.values()))) as acts:
        acts.run(torch.zeros(1, *(int(s) for s in shape), device="meta"))
    units = {}
    for name, target in qualified.items():
        out = acts[target]
        if not torch.is_tensor(out) or out.dim() not in (2, 4):
            raise ValueError(f"{key}: layer {name!r} of backbone {spec.label!r} gives "
                             f"{tuple(out.shape) if torch.is_tensor(out) else type(out).__name__}, not a feature map "
                             "[B, C, H, W] or units [B, N]")
        units[name] = int(out.shape[1])
    return units
