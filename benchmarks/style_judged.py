"""Style transfer judged by a second network: style distance and content kept.

Compares feature smoothing off (``none``) against softmax smoothing (Wang, Li and Vasconcelos,
CVPR 2021), on the style stage's pairs.

For every pair and smoothing option the script runs the style stage's algorithm with the
``style`` settings of config.yaml (the generator, EfficientNet-Lite0 by default, its layers,
weights, steps and image size), times the transfer alone, writes the result as an 8-bit PNG,
reads it back and lets the judge (``style.judge``, EfficientNet-Lite1 by default; it only
measures, nothing is optimized against it) measure it, as the stage does
(:func:`cnnpipe.stages.style.judge_result`): the style distance (the result's Gram matrices against
the style image's at the judge's layers, relative to the content photo's: 1 = unchanged,
0 = the style image's) and whether the judge's top-1 class for the content photo is in its
top 5 for the result. It prints one row per pair, the options side by side, and the means.
Goal: style distance <= 0.3 and the content kept in every pair, without visible blocks (look
at the PNGs in ``--out``).

Before the pairs it prints, per content photo, how firmly the judge holds its top-1 class: its
probability, and its rank after small changes that leave the photo plainly the same (2%
Gaussian pixel noise, seeded; grey scale). A class that such changes already push out of the
top 5 cannot be expected to survive a style.

Run: .venv/bin/python benchmarks/style_judged.py [--options none softmax] [--temperature 0.5 1]
     [--steps N] [--size PX] [--pairs chelsea__ihc] [--out /tmp/style_judged] [--threads 2]
     [--set style_weight=50 "sizes=[128,256]" "steps=[200,150]"]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml
from record import add_option, record

from cnnpipe.io.images import load_image, pil_to_tensor, save_png
from cnnpipe.io.photos import export_sample_photo
from cnnpipe.judges.imagenet import ImageNetJudge, target_ranks, top_classes
from cnnpipe.judges.specs import check_judge
from cnnpipe.methods.style.configured import transfer_configured
from cnnpipe.networks.build import imagenet_class_names, load_backbone
from cnnpipe.networks.fold import inference_model
from cnnpipe.stages.style import judge_result, load_pair

ROOT = Path(__file__).resolve().parents[1]


def class_margin(judge: ImageNetJudge, photo: torch.Tensor, seed: int) -> str:
    """The judge's top-1 class for ``photo`` [3, H, W] with its probability, and that class's
    rank (1 = top-1) after 2% Gaussian noise and in grey scale."""
    generator = torch.Generator().manual_seed(seed)
    noisy = (photo + 0.02 * torch.randn(photo.shape, generator=generator)).clamp(0, 1)
    grey = photo.mean(0, keepdim=True).expand_as(photo)
    proba = judge.predict_proba(torch.stack([photo, noisy, grey]))
    first = int(top_classes(proba[:1], 1)[0, 0])
    ranks = [1 + int(rank) for rank in target_ranks(proba[1:], [first, first])]
    return (f"{imagenet_class_names()[first]} {proba[0, first]:.0%}; its rank with 2% noise {ranks[0]}, "
            f"in grey {ranks[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--options", nargs="*", default=["none", "softmax"], help="smoothing options to compare")
    parser.add_argument("--temperature", nargs="*", type=float, default=None,
                        help="softmax temperatures to try (default: the config's)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--size", type=int, default=None, help="image size (default: the config's)")
    parser.add_argument("--pairs", nargs="*", default=None, help="only these pairs, as content__style")
    parser.add_argument("--out", default="/tmp/style_judged", help="folder for the photos and results")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override style settings, e.g. style_weight=50 (values read as YAML)")
    add_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = dict(yaml.safe_load(Path(args.config).read_text())["style"])
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in cfg:
            raise SystemExit(f"--set {item}: style has no key {key!r}")
        cfg[key] = yaml.safe_load(value)
    cfg["steps"] = cfg["steps"] if args.steps is None else args.steps
    cfg["image_size"] = cfg["image_size"] if args.size is None else args.size
    temperatures = args.temperature or [cfg["smoothing_temperature"]]
    # (label, smoothing, temperature), one column group each
    variants = [(option, option, 1.0) for option in args.options if option != "softmax"]
    if "softmax" in args.options:
        variants += [(f"softmax T={t:g}", "softmax", t) for t in temperatures]

    out = Path(args.out)
    pairs = [(p["content"], p["style"]) for p in cfg["pairs"]]
    if args.pairs:
        pairs = [pair for pair in pairs if "__".join(pair) in args.pairs]
    for name in {name for pair in pairs for name in pair}:
        if not (out / "photos" / f"{name}.png").exists():
            export_sample_photo(name, out / "photos" / f"{name}.png")

    spec = check_judge("style", cfg["judge"] or "efficientnet_lite1", cfg["backbone"])
    judge = ImageNetJudge(spec)
    model = inference_model(load_backbone(cfg["backbone"]))
    print(f"generator {cfg['backbone']} at {cfg['sizes'] or cfg['image_size']} px, {cfg['steps']} {cfg['optimizer']} steps, "
          f"style_weight {cfg['style_weight']}, tv_weight {cfg['tv_weight']}; judge {judge.kind}; "
          f"{args.threads} threads")
    print("the judge's top-1 class for each photo (rank 1 = top-1; content kept needs rank <= 5):")
    for name, style_name in dict(pairs).items():
        photo, _ = load_pair(out / "photos" / f"{name}.png", out / "photos" / f"{style_name}.png",
                             int(cfg["image_size"]), float(cfg["style_scale"]))
        print(f"  {name}: {class_margin(judge, photo, args.seed)}")
    print("columns per option: style distance (1 = the content photo's, 0 = the style image's), "
          "content kept (judge top-1 of the photo in its top 5 of the result), that class's rank "
          "for the result (r1 = top-1), seconds")
    width = 29
    print(f"{'pair':<30}" + "".join(f"{label:>{width}}" for label, _, _ in variants))
    totals = {label: [] for label, _, _ in variants}
    for content_name, style_name in pairs:
        def images_at(size: int, content_name=content_name, style_name=style_name):
            return load_pair(out / "photos" / f"{content_name}.png", out / "photos" / f"{style_name}.png",
                             int(size), float(cfg["style_scale"]))

        content, style = images_at(cfg["image_size"])
        cells = []
        for label, smoothing, temperature in variants:
            start = time.perf_counter()
            # the stage's own call (one size, or style.sizes when set)
            settings = {**cfg, "smoothing": smoothing, "smoothing_temperature": temperature}
            result = transfer_configured(model, images_at, settings, seed=args.seed, progress=False)
            seconds = time.perf_counter() - start
            path = out / label.replace(" ", "_") / f"{content_name}__{style_name}.png"
            save_png(result.image, path)
            judged = judge_result(judge, content, style, pil_to_tensor(load_image(path)))
            totals[label].append((judged["style_distance"], judged["content_kept"], seconds))
            # the photo's class's rank for the result (1 = top-1; kept: at most 5)
            cells.append(f"{judged['style_distance']:.3f} {'yes' if judged['content_kept'] else 'NO':>3} "
                         f"r{judged['content_rank'] + 1:<3} {seconds:6.1f}s")
        print(f"{content_name + '__' + style_name:<30}" + "".join(f"{cell:>{width}}" for cell in cells),
              flush=True)
    means, records = [], []
    for label in totals:
        rows = totals[label]
        distance = sum(r[0] for r in rows) / len(rows)
        kept = sum(r[1] for r in rows)
        means.append(f"{distance:.3f} {kept}/{len(rows)} {sum(r[2] for r in rows) / len(rows):6.1f}s")
        records.append({"option": label, "settings": " ".join(args.set), "generator": cfg["backbone"],
                        "judge": judge.kind, "size": cfg["image_size"], "steps": cfg["steps"], "pairs": len(rows),
                        "style_distance": round(distance, 3), "kept": kept,
                        "seconds_per_pair": round(sum(r[2] for r in rows) / len(rows), 1)})
    print(f"{'mean (kept: count)':<30}" + "".join(f"{cell:>{width}}" for cell in means))
    print(f"images: {out}/<option>/<pair>.png")
    if records and not args.no_record:
        record("style_judged", records)


if __name__ == "__main__":
    main()
