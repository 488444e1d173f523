"""Style pairs one at a time against one batch (``style.batch``, Adam).

Makes ``--pairs`` content images of one size (seeded square crops of the bundled photos, at
``--size`` px) paired in turn with the two default style images, then runs the config's style
settings with ``optimizer: adam`` twice on the prepared backbone: each pair alone
(``style_transfer.transfer``), and all pairs in one batch (``transfer_batch``). Both sides are
timed the same way (targets, optimization and the final losses; on CUDA after a
synchronize), after one untimed warm-up pair. Printed: seconds per pair each way, their
ratio, and how far the batched results are from the lone ones (mean pixel difference, the
largest relative difference of a final loss). On a CPU a batch mostly saves per-step overhead;
the point of batching is a GPU, where one 256 px pair leaves most of the device idle
(benchmarks/gpu.sh runs this with ``--device cuda``).

Run: .venv/bin/python benchmarks/style_batch.py [--pairs 4] [--size 128] [--steps 40] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from record import add_option, record

from cnnpipe.io.images import pil_to_tensor
from cnnpipe.io.photos import sample_photo
from cnnpipe.methods.style.optimize import transfer, transfer_batch
from cnnpipe.networks.build import load_backbone
from cnnpipe.networks.fold import inference_model
from cnnpipe.runtime.device import select_device

ROOT = Path(__file__).resolve().parents[1]
STYLES = ("hubble_deep_field", "ihc")
CONTENTS = ("astronaut", "chelsea", "coffee", "rocket")


def contents(count: int, size: int) -> list[torch.Tensor]:
    """``count`` square crops (half to all of the shorter side) of the bundled photos, ``size`` px."""
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        photo = sample_photo(CONTENTS[i % len(CONTENTS)]).convert("RGB")
        width, height = photo.size
        side = int(rng.integers(min(width, height) // 2, min(width, height) + 1))
        left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        images.append(pil_to_tensor(crop))
    return images


def style_image(name: str, size: int) -> torch.Tensor:
    """A bundled photo at the content's area (``size`` squared), its aspect kept, as the stage
    sizes a style image."""
    photo = sample_photo(name)
    width, height = photo.size
    factor = size / math.sqrt(width * height)
    return pil_to_tensor(photo.resize((round(width * factor), round(height * factor)), Image.Resampling.LANCZOS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--size", type=int, default=128, help="content side in pixels")
    parser.add_argument("--steps", type=int, default=40, help="Adam steps per pair")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    add_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    settings = yaml.safe_load((ROOT / "config.yaml").read_text())["style"]
    model = inference_model(load_backbone(settings["backbone"]).to(device), channels_last=device.type != "mps")
    options = dict(content_layers=settings["content_layers"], style_layers=settings["style_layers"],
                   content_weight=settings["content_weight"], style_weight=settings["style_weight"],
                   tv_weight=settings["tv_weight"], smoothing=settings["smoothing"],
                   temperature=settings["smoothing_temperature"], optimizer="adam", steps=args.steps, progress=False)
    pictures = contents(args.pairs, args.size)
    styles = [style_image(STYLES[i % len(STYLES)], args.size) for i in range(args.pairs)]

    def timed(work):
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        out = work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - began

    transfer(model, pictures[0], styles[0], **{**options, "steps": 2})  # warm-up: first-call costs
    alone, alone_s = timed(lambda: [transfer(model, c, s, **options) for c, s in zip(pictures, styles)])
    together, together_s = timed(lambda: transfer_batch(model, pictures, styles, **options))
    pixel = max(float((a.image - b.image).abs().mean()) for a, b in zip(alone, together))
    loss = max(abs(a.final[k] - b.final[k]) / abs(a.final[k]) for a, b in zip(alone, together)
               for k in ("content_loss", "style_loss", "total_loss"))
    print(f"{args.pairs} pairs of {args.size} px, {args.steps} Adam steps, {settings['backbone']} on {device} "
          f"({torch.get_num_threads()} threads)")
    print(f"  one at a time: {alone_s:.2f} s ({alone_s / args.pairs:.3f} s per pair)")
    print(f"  one batch:     {together_s:.2f} s ({together_s / args.pairs:.3f} s per pair)")
    print(f"  speed-up: {alone_s / together_s:.2f}x")
    print(f"  batched vs alone: mean pixel difference at most {pixel:.2e}, final losses within {loss:.1e} (relative)")
    print(f"RESULT style_batch pairs={args.pairs} size={args.size} steps={args.steps} one_at_a_time_s={alone_s:.3f} "
          f"batched_s={together_s:.3f} speedup={alone_s / together_s:.2f} mean_pixel_diff={pixel:.2e} "
          f"loss_rel_diff={loss:.1e}")
    if not args.no_record:
        record("style_batch", [{
            "pairs": args.pairs, "size": args.size, "steps": args.steps, "device": str(device),
            "one_at_a_time_s": round(alone_s, 3), "batched_s": round(together_s, 3),
            "one_at_a_time_s_per_pair": round(alone_s / args.pairs, 3),
            "batched_s_per_pair": round(together_s / args.pairs, 3), "speedup": round(alone_s / together_s, 2),
            "mean_pixel_diff": float(f"{pixel:.2e}"), "loss_rel_diff": float(f"{loss:.1e}")}])


if __name__ == "__main__":
    main()
