"""Style transfer judged by a second network: development and reported protocols.

Two protocols that share nothing (issue 24: a setting chosen by a network's verdict fits that
network's quirks, so the numbers that choose a setting and the numbers that report it must
come from different networks and different pictures):

- ``reported``: the style stage as configured: generator ``style.backbone`` (EfficientNet-Lite0),
  judge EfficientNet-Lite1, the six default pairs of config.yaml. Computed once a setting is
  chosen, never fed back into the choice.
- ``development``: the roles swapped, generator EfficientNet-Lite1 judged by EfficientNet-Lite0,
  on six other pairs of scikit-image pictures (``DEVELOPMENT_PAIRS``). Settings are chosen here.

For every pair the script runs the style stage's algorithm with config.yaml's ``style``
settings (``--set`` overrides them for both protocols), times the transfer alone, writes the
result as an 8-bit PNG, reads it back and lets the protocol's judge measure it as the stage
does (:func:`cnnpipe.judges.style_verdict.judge_result`; the judge never guides anything):
style distance (the result's Gram matrices against the style image's at the judge's layers,
relative to the content photo's: 1 = unchanged, 0 = the style image's), content retention
(the judge's pooled embedding of the result against the photo's, rescaled: 1 = the photo's,
0 = the style image's) and content kept (the judge's top-1 class for the photo in its top 5
for the result). It prints each protocol's pairs, then both protocols side by side: style
distance median and mean, content retention median and minimum, pairs kept, seconds per pair.
Issue 24's goals (on a held-out network): median distance <= 0.35, median retention >= 0.5,
no pair below 0.35.

Before the pairs it prints, per content photo, how firmly the judge holds its top-1 class: its
probability, and its rank after small changes that leave the photo plainly the same (2%
Gaussian pixel noise, seeded; grey scale).

Run: .venv/bin/python benchmarks/style_judged.py [--protocol development|reported|both]
     [--options none softmax] [--temperature 0.5 1] [--steps N] [--size PX] [--pairs chelsea__ihc]
     [--out /tmp/style_judged] [--threads 2] [--set style_weight=50 "sizes=[128,256]" "steps=[200,150]"]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from record import add_option, record

from cnnpipe.io.images import load_image, pil_to_tensor, save_png
from cnnpipe.io.photos import SAMPLE_PHOTOS, export_sample_photo
from cnnpipe.judges.imagenet import ImageNetJudge, target_ranks, top_classes
from cnnpipe.judges.specs import check_judges
from cnnpipe.judges.style_verdict import judge_result
from cnnpipe.methods.style.configured import transfer_configured
from cnnpipe.networks.build import imagenet_class_names, load_backbone
from cnnpipe.networks.fold import inference_model
from cnnpipe.stages.style import load_pair

ROOT = Path(__file__).resolve().parents[1]
# The development protocol's pairs, fixed before any of them was run or judged. Chosen from the
# scikit-image pictures that load offline (no pooch download), with no picture of the reported
# pairs (chelsea and its alias cat, astronaut, rocket, hubble_deep_field, ihc): three colour or
# grey photos of one object each, as content (coffee: a cup; stereo_motorcycle's left image: a
# motorcycle; camera: a photographer with a tripod), and two styles that differ from each other
# as the reported ones do (retina: a dark field with bright orange structure, as the deep-sky
# photo is dark with bright points; gravel: a dense irregular texture, as the stained tissue).
DEVELOPMENT_PAIRS = [(content, style) for content in ("coffee", "stereo_motorcycle", "camera")
                     for style in ("retina", "gravel")]
PROTOCOLS = {
    # generator, judge; None: the config's (the reported protocol is the stage as configured)
    "development": ("efficientnet_lite1", "efficientnet_lite0"),
    "reported": (None, None),
}


def export_picture(name: str, path: Path) -> None:
    """A scikit-image picture as an RGB PNG: the stage's sample photos, or another one of
    ``skimage.data`` (a stereo pair's left image; grey repeated to RGB)."""
    if name in SAMPLE_PHOTOS:
        export_sample_photo(name, path)
        return
    import skimage.data

    array = getattr(skimage.data, name)()
    array = np.asarray(array[0] if isinstance(array, tuple) else array)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    save_png(Image.fromarray(array[..., :3].astype(np.uint8), mode="RGB"), path)


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


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--protocol", choices=["development", "reported", "both"], default="both")
    parser.add_argument("--options", nargs="*", default=None,
                        help="smoothing options to compare (default: the config's smoothing only)")
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
    return parser.parse_args()


def settings_from(args) -> dict:
    cfg = dict(yaml.safe_load(Path(args.config).read_text())["style"])
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in cfg:
            raise SystemExit(f"--set {item}: style has no key {key!r}")
        cfg[key] = yaml.safe_load(value)
    cfg["steps"] = cfg["steps"] if args.steps is None else args.steps
    cfg["image_size"] = cfg["image_size"] if args.size is None else args.size
    return cfg


def variants_from(args, cfg: dict) -> list[tuple[str, str, float]]:
    """(label, smoothing, temperature) for each option compared."""
    options = args.options or [cfg["smoothing"]]
    temperatures = args.temperature or [cfg["smoothing_temperature"]]
    variants = [(option, option, 1.0) for option in options if option != "softmax"]
    if "softmax" in options:
        variants += [(f"softmax T={t:g}", "softmax", t) for t in temperatures]
    return variants


def run_protocol(name: str, cfg: dict, variants, args, out: Path) -> list[dict]:
    """Every pair of one protocol with each option: the judge's measures and the seconds."""
    generator, judge_name = PROTOCOLS[name]
    cfg = {**cfg, "backbone": generator or cfg["backbone"]}
    judge_spec = check_judges("style", judge_name or cfg["judge"] or "efficientnet_lite1", cfg["backbone"])[0]
    pairs = DEVELOPMENT_PAIRS if name == "development" else [(p["content"], p["style"]) for p in cfg["pairs"]]
    if args.pairs:
        pairs = [pair for pair in pairs if "__".join(pair) in args.pairs]
    for picture in {picture for pair in pairs for picture in pair}:
        if not (out / "photos" / f"{picture}.png").exists():
            export_picture(picture, out / "photos" / f"{picture}.png")
    judge = ImageNetJudge(judge_spec)
    model = inference_model(load_backbone(cfg["backbone"]))
    print(f"\n== {name}: generator {cfg['backbone']} at {cfg['sizes'] or cfg['image_size']} px, {cfg['steps']} "
          f"{cfg['optimizer']} steps, style_weight {cfg['style_weight']}; judge {judge.name}; {len(pairs)} pairs")
    print("the judge's top-1 class for each photo (rank 1 = top-1; content kept needs rank <= 5):")
    for content_name, style_name in dict(pairs).items():
        photo, _ = load_pair(out / "photos" / f"{content_name}.png", out / "photos" / f"{style_name}.png",
                             int(cfg["image_size"]), float(cfg["style_scale"]))
        print(f"  {content_name}: {class_margin(judge, photo, args.seed)}")
    print("per option: style distance, content retention, kept (photo's class's rank for the result), seconds")
    rows = []
    for content_name, style_name in pairs:
        def images_at(size: int, content_name=content_name, style_name=style_name):
            return load_pair(out / "photos" / f"{content_name}.png", out / "photos" / f"{style_name}.png",
                             int(size), float(cfg["style_scale"]))

        content, style = images_at(cfg["image_size"])
        cells = []
        for label, smoothing, temperature in variants:
            start = time.perf_counter()
            settings = {**cfg, "smoothing": smoothing, "smoothing_temperature": temperature}
            result = transfer_configured(model, images_at, settings, seed=args.seed, progress=False)
            seconds = time.perf_counter() - start
            path = out / name / label.replace(" ", "_") / f"{content_name}__{style_name}.png"
            save_png(result.image, path)
            judged = judge_result(judge, content, style, pil_to_tensor(load_image(path)))
            rows.append({"protocol": name, "option": label, "generator": cfg["backbone"], "judge": judge.name,
                         "pair": f"{content_name}__{style_name}", "seconds": seconds, **judged})
            cells.append(f"{judged['style_distance']:.3f} {judged['content_retention']:6.3f} "
                         f"{'yes' if judged['content_kept'] else 'NO':>3} r{judged['content_rank'] + 1:<3} "
                         f"{seconds:5.1f}s")
        print(f"  {content_name + '__' + style_name:<30}" + "  |  ".join(cells), flush=True)
    return rows


SUMMARY = [  # label, function of one group's rows
    ("style distance median", lambda rows: f"{statistics.median(r['style_distance'] for r in rows):.3f}"),
    ("style distance mean", lambda rows: f"{statistics.fmean(r['style_distance'] for r in rows):.3f}"),
    ("content retention median", lambda rows: f"{statistics.median(r['content_retention'] for r in rows):.3f}"),
    ("content retention min", lambda rows: f"{min(r['content_retention'] for r in rows):.3f}"),
    ("content kept", lambda rows: f"{sum(bool(r['content_kept']) for r in rows)}/{len(rows)}"),
    ("seconds per pair", lambda rows: f"{statistics.fmean(r['seconds'] for r in rows):.1f}"),
]


def summarize(rows: list[dict], args, cfg: dict) -> list[dict]:
    """Print the protocols (and options) side by side; return one record per group."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["protocol"], row["option"]), []).append(row)
    heads = [f"{protocol} ({option})" for protocol, option in groups]
    width = max(28, *(len(head) + 2 for head in heads))
    print("\n" + f"{'':<26}" + "".join(f"{head:>{width}}" for head in heads))
    print(f"{'generator / judge':<26}" + "".join(
        f"{group[0]['generator'].replace('efficientnet_', '') + ' / ' + group[0]['judge'].replace('efficientnet_', ''):>{width}}"
        for group in groups.values()))
    for label, function in SUMMARY:
        print(f"{label:<26}" + "".join(f"{function(group):>{width}}" for group in groups.values()))
    records = []
    for (protocol, option), group in groups.items():
        distances = [r["style_distance"] for r in group]
        retained = [r["content_retention"] for r in group]
        records.append({
            "protocol": protocol, "option": option, "settings": " ".join(args.set),
            "generator": group[0]["generator"], "judge": group[0]["judge"], "size": cfg["image_size"],
            "steps": cfg["steps"], "pairs": len(group), "style_distance": round(statistics.fmean(distances), 3),
            "style_distance_median": round(statistics.median(distances), 3),
            "content_retention_median": round(statistics.median(retained), 3),
            "content_retention_min": round(min(retained), 3),
            "kept": sum(bool(r["content_kept"]) for r in group),
            "seconds_per_pair": round(statistics.fmean(r["seconds"] for r in group), 1)})
    return records


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cfg = settings_from(args)
    variants = variants_from(args, cfg)
    out = Path(args.out)
    protocols = ["development", "reported"] if args.protocol == "both" else [args.protocol]
    rows = [row for name in protocols for row in run_protocol(name, cfg, variants, args, out)]
    if not rows:
        raise SystemExit("no pairs left to run (--pairs)")
    records = summarize(rows, args, cfg)
    print(f"images: {out}/<protocol>/<option>/<pair>.png")
    if records and not args.no_record:
        record("style_judged", records)


if __name__ == "__main__":
    main()
