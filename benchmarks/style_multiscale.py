"""Multiscale style transfer against direct 1024 px in equal time; peak memory.

Issue 14: a 1024 px result made at 256 -> 512 -> 1024 against one made at 1024 px directly in
about the same wall time, and the peak memory of the stage at each size against a proposed
mem_mb formula.

Every run is one fresh worker process doing what the style stage does for one pair: load the
generator (``style.backbone``, EfficientNet-Lite0 by default) and the judge
(``style.judge``, EfficientNet-Lite1 by default), read the content and style photos at each
size (``cnnpipe.stages.style.load_pair``), run ``cnnpipe.methods.style.optimize.transfer_multiscale`` with the
config's weights and layers, write the PNG and let the judge measure the PNG as written
(``cnnpipe.judges.style_verdict.judge_result``: style distance, 1 = the content photo's Gram matrices, 0 = the
style image's; content kept: the photo's top-1 class in the result's top 5). The worker
reports its wall time for the transfer alone and its peak resident memory
(``getrusage(RUSAGE_SELF).ru_maxrss``, the whole process: Python, torch, both networks, images,
the optimization and the judging); the parent checks the same with ``RUSAGE_CHILDREN``.

(a) quality at equal time: ``--direct`` L-BFGS evaluations at 1024 px against ``--schedule``
evaluations at 256, 512 and 1024 px (chosen so the wall times match: an evaluation costs
about the number of pixels); both times are printed. (b) peak memory at 256 and 512 px (with
``lbfgs_history + 2`` evaluations, so L-BFGS holds its full history) and at 1024 px (the direct
run of (a), same history, and one run with ``--low-history``), against
``mem_mb = max(4000, 1500 + 1.6e-3 * S^2 + 24 * history * (S + 16)^2 / 2^20)`` for the largest size S
(``cnnpipe.workflow.resources.style_mem_mb``, the rule's declaration; square S x S images, the worst case for that longer side). The load average (``os.getloadavg``) is printed before and after: the 2
CPU cores are shared.

Run: .venv/bin/python benchmarks/style_multiscale.py [--pair chelsea hubble_deep_field]
     [--direct 22] [--schedule 48 16 12] [--threads 2] [--out /tmp/style_multiscale]
     [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml
from record import add_option, record

from cnnpipe.workflow.resources import style_mem_mb

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    """One run, as the stage does it; prints one JSON line."""
    import torch

    from cnnpipe.io.images import load_image, pil_to_tensor, save_png
    from cnnpipe.judges.imagenet import ImageNetJudge
    from cnnpipe.judges.specs import check_judges
    from cnnpipe.judges.style_verdict import judge_result
    from cnnpipe.methods.style.configured import transfer_configured
    from cnnpipe.networks.build import load_backbone
    from cnnpipe.networks.fold import inference_model
    from cnnpipe.stages.style import load_pair

    torch.set_num_threads(args.threads)
    cfg = json.loads(args.worker)
    settings, photos = cfg["settings"], Path(cfg["photos"])
    content_path, style_path = photos / f"{cfg['content']}.png", photos / f"{cfg['style']}.png"
    model = inference_model(load_backbone(settings["backbone"]))
    # the first judge measures (this benchmark compares sizes, not judges)
    judge = ImageNetJudge(check_judges("style", settings["judge"], settings["backbone"])[0])
    start = time.perf_counter()
    result = transfer_configured(
        model, lambda size: load_pair(content_path, style_path, size, float(settings["style_scale"])), settings,
        seed=0, progress=False)
    seconds = time.perf_counter() - start
    save_png(result.image, cfg["output"])
    content, style = load_pair(content_path, style_path, int(settings["image_size"]), float(settings["style_scale"]))
    judged = judge_result(judge, content, style, pil_to_tensor(load_image(cfg["output"])))
    print(json.dumps({
        "seconds": seconds,
        "evaluations": [s["evaluations"] for s in result.scales] or [len(result.history)],
        "style_loss": result.final["style_loss"], "content_loss": result.final["content_loss"],
        "style_distance": judged["style_distance"], "content_kept": judged["content_kept"],
        "result_class": judged["result_class"], "content_class": judged["content_class"],
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "shape": list(result.image.shape),
    }))


def run(label: str, settings: dict, args, photos: Path) -> dict:
    output = Path(args.out) / f"{label}.png"
    spec = {"settings": settings, "photos": str(photos), "content": args.pair[0], "style": args.pair[1],
            "output": str(output)}
    done = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--worker", json.dumps(spec)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["children_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    row["image"] = str(output)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--pair", nargs=2, default=["chelsea", "hubble_deep_field"], metavar=("CONTENT", "STYLE"))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--direct", type=int, default=22, help="L-BFGS evaluations of the direct run")
    parser.add_argument("--schedule", type=int, nargs=3, default=[48, 16, 12],
                        help="evaluations at size/4, size/2 and size")
    parser.add_argument("--low-history", type=int, default=5, help="a second 1024 px memory run with this history")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="/tmp/style_multiscale")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    add_option(parser)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from cnnpipe.io.photos import export_sample_photo

    settings = dict(yaml.safe_load(Path(args.config).read_text())["style"])
    for key in ("pairs", "content_folder", "style_folder", "per_job"):
        settings.pop(key, None)
    settings["judge"] = settings.get("judge") or "efficientnet_lite1"
    history = int(settings.get("lbfgs_history") or 20)
    photos = Path(args.out) / "photos"
    for name in args.pair:
        if not (photos / f"{name}.png").exists():
            export_sample_photo(name, photos / f"{name}.png")
    size = args.size
    sizes = [size // 4, size // 2, size]
    print(f"generator {settings['backbone']}, judge {settings['judge']}, pair {args.pair[0]}__{args.pair[1]}, "
          f"style_weight {settings['style_weight']}, tv_weight {settings['tv_weight']}, lbfgs_history {history}, "
          f"{args.threads} threads; load average before {os.getloadavg()}", flush=True)

    direct = run("direct", {**settings, "image_size": size, "sizes": None, "steps": args.direct}, args, photos)
    multi = run("multiscale", {**settings, "image_size": size, "sizes": sizes, "steps": list(args.schedule)},
                args, photos)
    print(f"\n(a) {size} px output, equal time: style distance by the judge (lower = more stylized), "
          "content kept, generator's final losses at the last size")
    print(f"{'run':<34}{'seconds':>9}{'evaluations':>16}{'style dist':>12}{'kept':>6}{'style loss':>12}"
          f"{'content loss':>14}")
    for label, row in ((f"direct {size}", direct), (f"multiscale {' -> '.join(map(str, sizes))}", multi)):
        print(f"{label:<34}{row['seconds']:9.1f}{'+'.join(map(str, row['evaluations'])):>16}"
              f"{row['style_distance']:12.3f}{'yes' if row['content_kept'] else 'NO':>6}{row['style_loss']:12.4f}"
              f"{row['content_loss']:14.4f}", flush=True)
    print(f"images: {direct['image']}, {multi['image']}; load average {os.getloadavg()}")
    common = {"pair": "__".join(args.pair), "generator": settings["backbone"], "judge": settings["judge"],
              "threads": args.threads}
    records = [{**common, "run": label, "sizes": ",".join(map(str, run_sizes)), "history": history,
                "evaluations": "+".join(map(str, row["evaluations"])), "seconds": round(row["seconds"], 1),
                "style_distance": round(row["style_distance"], 3),
                "content_kept": "yes" if row["content_kept"] else "no", "peak_mb": round(row["peak_mb"])}
               for label, run_sizes, row in (("direct", [size], direct), ("multiscale", sizes, multi))]

    if args.skip_memory:
        if not args.no_record:
            record("style_multiscale", records)
        return
    rows = []
    for s in sizes[:-1]:
        rows.append((s, history, run(f"memory_{s}", {**settings, "image_size": s, "sizes": None,
                                                     "steps": history + 2}, args, photos)))
    rows.append((size, history, direct))
    rows.append((size, args.low_history, run(f"memory_{size}_h{args.low_history}", {
        **settings, "image_size": size, "sizes": None, "steps": args.low_history + 2,
        "lbfgs_history": args.low_history}, args, photos)))
    rows.append((size, history, {**multi, "label": "multiscale"}))
    print("\n(b) peak resident memory of one fresh process (stage: generator + judge + transfer + judging)")
    print(f"{'largest size':>13}{'history':>9}{'evaluations':>14}{'peak MB':>10}{'declared mem_mb':>17}{'fits':>6}")
    for s, h, row in rows:
        proposed = style_mem_mb({**settings, "image_size": s, "lbfgs_history": h})  # what the rule declares
        label = f"{s}{' (multi)' if row.get('label') else ''}"
        print(f"{label:>13}{h:9d}{'+'.join(map(str, row['evaluations'])):>14}{row['peak_mb']:10.0f}"
              f"{proposed:17d}{'yes' if row['peak_mb'] <= proposed else 'NO':>6}")
        records.append({**common, "run": f"memory {label}", "history": h,
                        "sizes": ",".join(map(str, sizes)) if row.get("label") else s,
                        "evaluations": "+".join(map(str, row["evaluations"])), "peak_mb": round(row["peak_mb"]),
                        "declared_mb": proposed, "fits": "yes" if row["peak_mb"] <= proposed else "no"})
    print(f"largest child peak by RUSAGE_CHILDREN: {rows[-1][2]['children_peak_mb']:.0f} MB; "
          f"load average after {os.getloadavg()}")
    if not args.no_record:
        record("style_multiscale", records)


if __name__ == "__main__":
    main()
