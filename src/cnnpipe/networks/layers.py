"""The addressable layers of a network: every qualified module name, its type, its output shape
for one input size and its friendly aliases (``python -m cnnpipe layers <spec>``).

The names listed are the ones every stage's ``layers``/``layer`` keys accept. The network is
built on the meta device and run once on a zeros input there, so shapes cost neither weights
(nothing is read or downloaded, except a ``{checkpoint: ...}`` spec's small file) nor compute."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch
import yaml
from torch import nn

from cnnpipe.networks.spec import TIMM_PREFIX, TRAINED, parse_backbone

# The input channels of the built-in datasets (imagefolder says its own in dataset.channels).
DATASET_CHANNELS = {"digits": 1, "mnist": 1, "fashion_mnist": 1, "kmnist": 1, "cifar10": 3}
# A tensor's shape; a tuple of those (or type names) for a module returning several values;
# a type name for any other output; None for a module the forward pass never called.
Shape = tuple | str | None


class LayerRow(NamedTuple):
    name: str
    type: str
    shape: Shape
    aliases: list[str]


@dataclass(frozen=True)
class LayerListing:
    """What ``python -m cnnpipe layers`` prints: the network, the input it ran and its rows."""

    label: str
    input_shape: tuple[int, ...]
    native_size: int | None
    rows: list[LayerRow]


@dataclass
class _Network:
    model: nn.Module
    label: str
    channels: int
    native_size: int | None
    # the lecture CNN's fully connected layers take one input size only
    fixed_size: bool = False


def _read_config(config_path: str | Path) -> dict:
    path = Path(config_path)
    if not path.is_file():
        raise ValueError(f"backbone 'trained' is built from the model and dataset sections of a config; "
                         f"{path} does not exist (give --config PATH)")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, Mapping) or not isinstance(config.get("model"), Mapping) \
            or not isinstance(config.get("dataset"), Mapping):
        raise ValueError(f"{path}: expected a config with 'model' and 'dataset' sections")
    return dict(config)


def _trained_network(config_path: str | Path, size: int | None) -> _Network:
    from cnnpipe.data.catalog import NATIVE_SIZES
    from cnnpipe.networks.lecture_cnn import build_model

    config = _read_config(config_path)
    dataset, model_cfg = config["dataset"], config["model"]
    name = dataset.get("name")
    channels = int(dataset.get("channels") or 3) if name == "imagefolder" else DATASET_CHANNELS.get(name)
    if channels is None:
        raise ValueError(f"{config_path}: dataset.name {name!r} is not one of "
                         f"{[*DATASET_CHANNELS, 'imagefolder']}")
    native = int(dataset.get("image_size") or 0) or NATIVE_SIZES.get(name)
    # An imagefolder run without image_size has no fixed size: build the CNN for the one asked.
    built = native or size
    if built is None:
        raise ValueError(f"{config_path}: dataset.image_size is 0 for {name!r}, so the CNN's input size is "
                         "unknown; give --size N")
    manifest = {
        "image_shape": [channels, built, built],
        "classes": [f"class {i}" for i in range(10)],
        "normalization": {"mean": [0.0] * channels, "std": [1.0] * channels},
    }
    with torch.device("meta"):
        model = build_model(model_cfg, manifest)
    return _Network(model.eval(), f"trained CNN of {config_path}", channels, native, fixed_size=native is not None)


def _network(spec_value, size: int | None, config_path: str | Path) -> _Network:
    from cnnpipe.networks.build import load_backbone

    if isinstance(spec_value, str) and spec_value.startswith(TIMM_PREFIX):
        spec_value = {"arch": spec_value}
    if isinstance(spec_value, Mapping) and "arch" in spec_value and "weights" not in spec_value:
        # parse_backbone insists on weights for timm and num_classes (it loads them); the
        # architecture needs none, so the mapping is checked with a stand-in file that is never read.
        spec = replace(parse_backbone({**spec_value, "weights": "-"}, "backbone", must_exist=False), weights=None)
    else:
        spec = parse_backbone(spec_value, "backbone", must_exist=False)
    if spec.kind == TRAINED:
        return _trained_network(config_path, size)
    if spec.kind == "checkpoint":
        if not Path(spec.checkpoint).is_file():
            raise ValueError(f"backbone.checkpoint: {spec.checkpoint!r} does not exist")
        # the checkpoint alone knows its architecture, so its (small) file is read
        model = load_backbone(spec).to("meta")
        channels, _, width = model.image_shape
        return _Network(model, spec.label, int(channels), int(width), fixed_size=True)
    with torch.device("meta"):
        model = load_backbone(spec, pretrained=False)
    return _Network(model, spec.label, 3, model.input_size)


def _shape(output) -> Shape:
    if torch.is_tensor(output):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)):
        return tuple(tuple(item.shape) if torch.is_tensor(item) else type(item).__name__ for item in output)
    return type(output).__name__


def _too_small(label: str, size: int, native: int | None, error: Exception) -> ValueError:
    native_text = f"its native size is {native} px" if native else "it has no native size"
    problem = "is too small for" if native is None or size < native else "does not fit"
    return ValueError(f"size {size} px {problem} {label} ({native_text}): the forward pass fails with: {error}")


def layer_listing(spec_value, size: int | None = None, config_path: str | Path = "config.yaml") -> LayerListing:
    """Every named module of the network of ``spec_value`` (a backbone spec: a name, a mapping
    or a :class:`BackboneSpec`) with its output shape for a ``size`` x ``size`` input (default
    the native size). ``config_path`` is the config that describes ``trained``."""
    net = _network(spec_value, size, config_path)
    size = size or net.native_size
    if size is None:
        raise ValueError(f"{net.label} has no native input size; give --size N")
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, not {size}")
    if net.fixed_size and size != net.native_size:
        raise ValueError(f"size {size} px does not fit {net.label}: its fully connected layers take "
                         f"{net.native_size} px inputs only (its native size); leave out --size")
    modules = [(name, module) for name, module in net.model.named_modules() if name]
    shapes: dict[str, Shape] = {}
    handles = []

    def hook_for(name: str):
        def hook(module, inputs, output):
            # a module called twice (torchvision's shared ReLUs) keeps its first output, as ascent.capture does
            shapes.setdefault(name, _shape(output))
        return hook

    try:
        for name, module in modules:
            handles.append(module.register_forward_hook(hook_for(name)))
        x = torch.zeros(1, net.channels, size, size, device="meta")
        try:
            with torch.no_grad():
                net.model(x)
        except (RuntimeError, ValueError, IndexError, AssertionError) as error:
            raise _too_small(net.label, size, net.native_size, error) from error
    finally:
        for handle in handles:
            handle.remove()
    aliases: dict[str, list[str]] = {}
    for alias, qualified in getattr(net.model, "layer_aliases", {}).items():
        aliases.setdefault(qualified, []).append(alias)
    rows = [LayerRow(name, type(module).__name__, shapes.get(name), aliases.get(name, [])) for name, module in modules]
    return LayerListing(net.label, tuple(x.shape), net.native_size, rows)


def layer_table(spec_value, size: int | None = None, config_path: str | Path = "config.yaml") -> list[LayerRow]:
    """The rows of :func:`layer_listing`: (qualified name, module type, output shape, aliases)."""
    return layer_listing(spec_value, size, config_path).rows


def format_shape(shape: Shape) -> str:
    """``1x64x56x56`` for a tensor, ``(1x64, 1x64)`` for several, ``-`` for a module never called."""
    if shape is None:
        return "-"
    if isinstance(shape, str):
        return shape
    if all(isinstance(dim, int) for dim in shape):
        return "x".join(map(str, shape)) or "scalar"
    return "(" + ", ".join(format_shape(item) for item in shape) + ")"


def format_table(rows: list[LayerRow]) -> str:
    """Aligned columns: name, type, output shape, aliases."""
    table = [("name", "type", "output", "aliases")]
    table += [(row.name, row.type, format_shape(row.shape), ", ".join(row.aliases)) for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(3)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths + [0])).rstrip()
                     for line in table)
