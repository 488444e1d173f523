"""Class visualizations that transfer: each classes-stage variant, judged by a second ImageNet network.

Each variant of the classes stage runs on an ImageNet network and is judged by a second,
separately trained network (the measure of Fel et al., "MACO", 2023).

For every variant (plain, the slide's L1, regularized) the script makes x* for the configured
ImageNet classes on the generator, times it, reads the images back from 8-bit PNG, and prints
side by side: the generator's own top-1 count, the judge's top-1 and top-5 counts, the wall
seconds, the process's CPU seconds and the load average (the CPU may be shared: wall time
alone can mislead). The judge only measures; nothing is optimized against it.

Defaults follow the issue's setting: EfficientNet-Lite0 at 128 px, the default config's ten
classes, judged by EfficientNet-Lite1 (both offline), with the ``classes`` settings of
config.yaml for that backbone: the regularized variant takes ``imagenet_regularized`` over the
trained CNN's settings, and ``--set key=value`` changes a key there when it is one of its keys,
else the top-level key (``--steps`` overrides the steps). Goals: the best variant >= 9/10 at top-1 by the
judge, the plain variant <= 1/10, and <= 2 min for the ten classes on two CPU cores.

Run: .venv/bin/python benchmarks/class_transfer.py [--generator efficientnet_lite0]
     [--judge efficientnet_lite1] [--size 128] [--steps N] [--threads 2] [--variants regularized]
     [--set jitter=0.15 scale=0.2]
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from record import add_option, record

from cnnpipe import ascent
from cnnpipe.judges.imagenet import ImageNetJudge, target_ranks
from cnnpipe.networks.aliases import SCORES_LAYER, resolve_layer
from cnnpipe.networks.build import imagenet_class_names, load_backbone
from cnnpipe.stages.classes import OBJECTIVES, variant_settings

ROOT = Path(__file__).resolve().parents[1]


def png_round_trip(images: torch.Tensor) -> torch.Tensor:
    """The images as an 8-bit PNG file holds them."""
    out = []
    for image in images:
        array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        buffer.seek(0)
        out.append(torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--generator", default="efficientnet_lite0")
    parser.add_argument("--judge", default="efficientnet_lite1")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="*", default=None, help="only these variants (default: all)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override classes settings, e.g. jitter=0.15 (values read as YAML)")
    add_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = dict(yaml.safe_load(Path(args.config).read_text())["classes"])
    cfg["backbone"] = args.generator
    cfg["imagenet_regularized"] = dict(cfg["imagenet_regularized"] or {})
    if args.steps is not None:
        cfg["steps"] = args.steps
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in cfg:
            raise SystemExit(f"--set {item}: classes has no key {key!r}")
        (cfg["imagenet_regularized"] if key in cfg["imagenet_regularized"] else cfg)[key] = yaml.safe_load(value)
    targets = [int(i) for i in cfg["imagenet_classes"]]
    names = imagenet_class_names()
    model = load_backbone(args.generator)
    layer = resolve_layer(model, SCORES_LAYER)
    judge = ImageNetJudge(args.judge)
    shape = (3, args.size, args.size)
    objectives = [OBJECTIVES[cfg["objective"]](layer, i) for i in targets]
    print(f"generator {args.generator} at {args.size} px, judge {judge.kind} at {judge.size} px, "
          f"{len(targets)} classes, {cfg['steps']} steps, {args.threads} threads")
    print(f"{'variant':<12} {'generator top-1':>15} {'judge top-1':>11} {'judge top-5':>11} {'seconds':>8} "
          f"{'cpu s':>6} {'load':>5}  judge says")
    rows = []
    for name, settings in variant_settings(cfg, shape).items():
        if args.variants and name not in args.variants:
            continue
        settings = dict(settings)
        param = settings.pop("param")
        start, cpu_start = time.perf_counter(), time.process_time()
        result = ascent.ascend(model, objectives, param, steps=cfg["steps"], lr=cfg["lr"], seed=args.seed,
                               progress=False, **settings)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        load = os.getloadavg()[0]  # the last minute's, as the variant ends
        images = png_round_trip(result.images)
        with torch.no_grad(), ascent.frozen(model):
            own = model(images).argmax(dim=1).numpy()
        proba = judge.predict_proba(images)
        ranks = target_ranks(proba, targets)
        said = [names[i] for i in proba.argmax(axis=1)]
        print(f"{name:<12} {int((own == np.asarray(targets)).sum()):>12}/{len(targets)} "
              f"{int((ranks == 0).sum()):>8}/{len(targets)} {int((ranks < 5).sum()):>8}/{len(targets)} "
              f"{seconds:>8.1f} {cpu:>6.0f} {load:>5.1f}  {', '.join(said)}")
        rows.append({"variant": name, "generator": args.generator, "judge": judge.kind, "size": args.size,
                     "steps": cfg["steps"], "seed": args.seed, "settings": " ".join(args.set), "classes": len(targets),
                     "generator_top1": int((own == np.asarray(targets)).sum()), "judge_top1": int((ranks == 0).sum()),
                     "judge_top5": int((ranks < 5).sum()), "seconds": round(seconds, 1), "cpu_s": round(cpu),
                     "load_end": round(load, 1)})
    if rows and not args.no_record:
        record("class_transfer", rows)


if __name__ == "__main__":
    main()
