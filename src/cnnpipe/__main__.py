"""Command-line tools next to the pipeline: ``python -m cnnpipe layers <backbone spec>`` lists a
network's layer names (the values the config's ``layers``/``layer`` keys take) with their output
shapes, so a layer can be chosen without reading the network's source.

    python -m cnnpipe layers alexnet
    python -m cnnpipe layers resnet50 --size 128
    python -m cnnpipe layers trained --config my.yaml
    python -m cnnpipe layers '{arch: resnet18, num_classes: 5}'
    python -m cnnpipe layers '{checkpoint: results/train/model.pt}'
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml


def _spec_value(text: str):
    """A plain name stays a string; ``{...}`` is a YAML (or JSON) mapping, as in the config."""
    if not text.lstrip().startswith("{"):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{text!r} is not a YAML mapping ({getattr(error, 'problem', None) or error})") from None


def _layers(args: argparse.Namespace) -> None:
    from cnnpipe.layers import format_shape, format_table, layer_listing

    listing = layer_listing(_spec_value(args.spec), args.size, args.config)
    native = f", native size {listing.native_size} px" if listing.native_size else ""
    print(f"{listing.label}: input {format_shape(listing.input_shape)}{native}, {len(listing.rows)} layers")
    print(format_table(listing.rows))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cnnpipe", description="cnnpipe's command-line tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    layers = commands.add_parser(
        "layers", help="list a network's layers with their output shapes and aliases",
        description="List every layer name of a network (qualified names and friendly aliases, as the config's "
                    "layer keys take them) with its module type and its output shape for one input.")
    layers.add_argument("spec", help="a backbone spec: a name (trained, efficientnet_lite0, resnet50, timm:resnet18) "
                                     "or a mapping such as '{arch: resnet18, num_classes: 5}'")
    layers.add_argument("--size", type=int, default=None,
                        help="input side in pixels (default: the network's native size)")
    layers.add_argument("--config", default="config.yaml",
                        help="the config whose model and dataset sections describe 'trained' (default: %(default)s)")
    layers.set_defaults(run=_layers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as error:
        # a wrong name or size is the user's to fix: the message, not a traceback
        print(f"cnnpipe {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
