"""Peak memory of an atlas chunk against the memory its rule declares.

The `atlas_chunk` rule declares ``mem_mb`` from the network, the image side, the units per
chunk and the set size (``cnnpipe.workflow.resources.atlas_chunk_mem_mb``); a cluster kills a
job that goes over it. For a few (layer, units per chunk) settings on the trained CNN (built
at the default run's size (28 px digits), random weights: memory does not depend on them) and on
EfficientNet-Lite0, this runs the rule's own function (``run_atlas_chunk``, two ascent steps,
on the CPU, one thread) in a fresh process, reads its peak resident memory, and prints the
declaration's ratio to it. The goal, as for DeepDream: every declaration covers the peak with
a margin (ratio >= 1.1) and asks for at most twice of it (ratio <= 2).

Run: .venv/bin/python benchmarks/atlas_memory.py   (about two minutes on two cores)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from record import add_option, record

from cnnpipe.workflow.resources import atlas_chunk_mem_mb

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys
import torch
from cnnpipe.stages import atlas_chunk as atlas
torch.set_num_threads(1)
units, folder, settings = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
if settings["backbone"] == "trained":  # the default run's CNN, random weights
    from cnnpipe.networks.lecture_cnn import LectureCNN
    model = LectureCNN(1, 10, 28, conv_channels=(16, 32), hidden=(64,)).eval()
    atlas.load_network = lambda *args, **kwargs: (model, (1, 28, 28))
atlas.run_atlas_chunk(units, settings, folder, seed=0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

# (backbone, layer, units in the chunk)
CASES = [("trained", "conv2", 8), ("trained", "conv2", 32), ("trained", "fc1", 64),
         ("efficientnet_lite0", "blocks.4", 1), ("efficientnet_lite0", "blocks.4", 4),
         ("efficientnet_lite0", "blocks.4", 16), ("efficientnet_lite0", "blocks.2", 16)]


def peak_mb(units: list[str], settings: dict, folder: Path) -> float:
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(units), str(folder), json.dumps(settings)],
                            capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def measure(backbone: str, layer: str, count: int, folder: Path, steps: int = 2) -> dict:
    """One case: the chunk's peak RSS and what the rule declares for it."""
    base = yaml.safe_load((ROOT / "config.yaml").read_text())["atlas"]
    settings = {**base, "backbone": backbone, "steps": steps, "judge": None}
    side = 28 if backbone == "trained" else settings["image_size"]
    declared = atlas_chunk_mem_mb(settings, trained=backbone == "trained", units=count, side=side)
    peak = peak_mb([f"{layer}:{u}" for u in range(count)], settings, folder / f"{backbone}_{layer}_{count}")
    return {"backbone": backbone, "layer": layer, "units": count, "members": settings["diverse"],
            "image_size": side, "peak_mb": round(peak),
            "declared_mb": declared, "ratio": round(declared / peak, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", help="only the cases of this network")
    add_option(parser)
    args = parser.parse_args()
    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for backbone, layer, count in CASES:
            if args.backbone and backbone != args.backbone:
                continue
            row = measure(backbone, layer, count, Path(tmp))
            ok = 1.1 <= row["ratio"] <= 2.0
            failures += not ok
            rows.append({**row, "threads": 1, "within": "yes" if ok else "no"})
            print(f"{backbone} {layer} x {count} units: peak {row['peak_mb']} MB, declared {row['declared_mb']} MB, "
                  f"ratio {row['ratio']:.2f} {'ok' if ok else 'OUT OF [1.1, 2]'}")
    print(f"{len(rows) - failures} of {len(rows)} cases within [1.1, 2]")
    if rows and not args.no_record:
        record("atlas_memory", rows)


if __name__ == "__main__":
    main()
