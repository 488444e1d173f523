"""Peak memory of a DeepDream job against the memory its rule declares.

The `dream_chunk` rule declares ``mem_mb`` from its largest photo's size and ``dream.tile``
(``cnnpipe.workflow.resources.dream_mem_mb``); a cluster kills a job that goes over it. For photos of
several sizes and tiles this runs the rule's own function (``cnnpipe.stages.dream.run_dream_chunk`` on one photo, one
step per octave, on the CPU) in a fresh process, reads its peak resident memory, and prints
the declaration's ratio to it. The goal: every declaration covers the peak with a margin
(ratio >= 1.1) and asks for at most twice of it (ratio <= 2).

Run: .venv/bin/python benchmarks/dream_memory.py   (a few minutes on two cores)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from record import add_option, record

from cnnpipe.workflow.resources import dream_mem_mb

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys
import torch
from cnnpipe.stages.dream import run_dream_chunk
torch.set_num_threads(1)
image, folder, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
run_dream_chunk({"out": image}, folder, settings, device_name="cpu")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

# (megapixels, tile, octaves)
CASES = [(0.01, 512, 1), (0.25, 512, 1), (1, 256, 1), (1, 512, 1), (1, 1024, 1), (4, 512, 1), (4, 512, 4),
         (16, 512, 1)]


def peak_mb(image: Path, settings: dict, folder: Path) -> float:
    result = subprocess.run([sys.executable, "-c", CHILD, str(image), str(folder), json.dumps(settings)],
                            capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-mp", type=float, default=16, help="skip photos larger than this")
    add_option(parser)
    args = parser.parse_args()
    base = yaml.safe_load((ROOT / "config.yaml").read_text())["dream"]
    print(f"backbone {base['backbone']}, one step per octave, CPU, one thread")
    failures, rows = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for mp, tile, octaves in CASES:
            if mp > args.max_mp:
                continue
            side = round((mp * 1e6) ** 0.5)
            image = folder / f"photo_{side}.png"
            if not image.exists():
                noise = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
                Image.fromarray(noise).save(image)
            settings = {**base, "tile": tile, "octaves": octaves, "steps": 1, "max_side": None}
            declared = dream_mem_mb(image, settings)
            peak = peak_mb(image, settings, folder)
            ratio = declared / peak
            ok = 1.1 <= ratio <= 2.0
            failures += not ok
            rows.append({"megapixels": mp, "side": side, "tile": tile, "octaves": octaves, "threads": 1,
                         "peak_mb": round(peak), "declared_mb": declared, "ratio": round(ratio, 2),
                         "within": "yes" if ok else "no"})
            print(f"{mp:6.2f} MP ({side}x{side}), tile {tile:4d}, {octaves} octave(s): peak {peak:7.0f} MB, "
                  f"declared {declared:6d} MB, ratio {ratio:.2f} {'ok' if ok else 'OUT OF [1.1, 2]'}")
    print(f"{len(CASES) - failures} of {len(CASES)} cases within [1.1, 2]" if not failures else
          f"{failures} case(s) outside [1.1, 2]")
    if rows and not args.no_record:
        record("dream_memory", rows)


if __name__ == "__main__":
    main()
