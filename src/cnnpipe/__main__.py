"""Command-line tools next to the pipeline: ``python -m cnnpipe layers <backbone spec>`` lists a
network's layer names (the values the config's ``layers``/``layer`` keys take) with their output
shapes, so a layer can be chosen without reading the network's source. ``python -m cnnpipe
publish`` is the chunked stages' publishing job (:func:`cnnpipe.runtime.chunks.publish_item`); it does
not import torch, so it starts in a fraction of a second.

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
    from cnnpipe.networks.layers import format_shape, format_table, layer_listing

    listing = layer_listing(_spec_value(args.spec), args.size, args.config)
    native = f", native size {listing.native_size} px" if listing.native_size else ""
    print(f"{listing.label}: input {format_shape(listing.input_shape)}{native}, {len(listing.rows)} layers")
    print(format_table(listing.rows))


def _publish(args: argparse.Namespace) -> None:
    from cnnpipe.runtime.chunks import publish_item

    outputs = {}
    for item in args.outputs:
        ext, sep, target = item.partition("=")
        if not (ext and sep and target):
            raise ValueError(f"{item!r} is not EXT=TARGET")
        outputs[ext] = target
    publish_item(args.folder, args.name, outputs, args.log)


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
    publish = commands.add_parser(
        "publish", help="put one image's files from its chunk's folder in place (the chunked stages' local jobs)",
        description="Publish one image's files from a chunk job's folder: FOLDER/NAME.log to LOG first, then "
                    "FOLDER/NAME.EXT to TARGET for each EXT=TARGET, as hard links (or copies), each target "
                    "whole or absent. An image the chunk could not process fails here with its error.")
    publish.add_argument("folder", help="the chunk job's output folder")
    publish.add_argument("name", help="the image's (or pair's) name in that folder")
    publish.add_argument("log", help="where the image's own log goes")
    publish.add_argument("outputs", nargs="+", metavar="EXT=TARGET", help="a file of the image and its target path")
    publish.set_defaults(run=_publish)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as error:
        # a wrong name or size is the user's to fix: the message, not a traceback
        print(f"cnnpipe {args.command}: {error}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as error:  # publish: a file that cannot be put in place, a failed image
        print(f"cnnpipe {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
