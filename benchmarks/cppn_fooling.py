"""CPPN fooling images on EfficientNet-Lite0 within a wall-clock budget.

Issue 11 §4. Evolves one CPPN image per class with ``cnnpipe.methods.fooling.evolve_fooling`` on the generator
EfficientNet-Lite0 at ``--size`` px (default 128) for the ten classes of config.yaml's
``fooling.imagenet_classes``, until ``--seconds`` of wall-clock time (default 600) are spent:
a generation is not started when the last one's duration would overrun the budget. The clock
starts with generation 0 (random genomes) and leaves out loading the networks.

Every ``--every`` generations it prints: elapsed seconds, the generation, the classes at
>= 99% and the median confidence over the classes (the fitness itself: the generator's
probability on the image rounded to 8 bits, which is what its PNG stores), the 1-minute load
average and the CPU time this process got per wall second (2.0 = both cores to itself).
``--curve`` writes that curve for every generation as CSV. At the end, per class: the
confidence after a real PNG round trip (save_png, load_image) and the rank of the target
class by the independent judge, EfficientNet-Lite1 (0 = its top-1; the judge only measures).
``--gradient`` first runs the pipeline's gradient method (target 99.9%, 500 steps) on the
same classes and reports the same numbers for it.

The machine is shared: the load average and CPU share printed with each line say how much of
the two cores the run actually had. The search's options default to config.yaml's fooling
settings; changing them changes the search (for ablations): ``--adapt`` adapts each class's
mutation step (from ``--sigma``) by the 1/5th success rule, ``--no-focus`` gives every class
the same number of children throughout.

Run: .venv/bin/python benchmarks/cppn_fooling.py [--seconds 600] [--generations N] [--every 10] [--curve curve.csv]
     [--gradient] [--seed 0] [--offspring N] [--hidden N] [--span S] [--sigma S]
     [--structure 1] [--crossover 0] [--no-focus] [--adapt] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from record import add_option, record

from cnnpipe.judges.imagenet import ImageNetJudge, target_ranks
from cnnpipe.methods import fooling
from cnnpipe.networks.aliases import SCORES_LAYER, resolve_layer
from cnnpipe.networks.build import load_backbone

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.99


def judged(judge: ImageNetJudge, result: fooling.FoolingResult, names: list[str]) -> dict:
    """Print per class the confidence after PNG and the judge's verdict; return the counts."""
    proba = judge.predict_proba(result.loaded)
    ranks = target_ranks(proba, result.targets)
    for j, c in enumerate(result.targets):
        print(f"  {names[c]:<18} after PNG {float(result.confidence_after_png[j]):.6f}  "
              f"judge: target rank {int(ranks[j])}, says {names[int(proba[j].argmax())]} "
              f"({float(proba[j].max()):.3f})")
    reached = int(result.reached.sum())
    top5 = int((ranks < 5).sum())
    print(f"  {reached}/{len(ranks)} at >= {result.target:g} after PNG (min "
          f"{float(result.confidence_after_png.min()):.6f}, median "
          f"{float(result.confidence_after_png.median()):.6f}); judge top-5: {top5}/{len(ranks)}, "
          f"top-1: {int((ranks == 0).sum())}/{len(ranks)}")
    return {"classes": len(ranks), "target": result.target, "reached": reached,
            "median_after_png": round(float(result.confidence_after_png.median()), 4),
            "min_after_png": round(float(result.confidence_after_png.min()), 4),
            "judge_top5": top5, "judge_top1": int((ranks == 0).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--generations", type=int, default=1_000_000,
                        help="stop after this many generations at the latest (compare searches by generation)")
    parser.add_argument("--every", type=int, default=10, help="print every N generations")
    parser.add_argument("--curve", type=Path, help="write the per-generation curve to this CSV")
    parser.add_argument("--gradient", action="store_true", help="also measure the gradient method")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    # The search's defaults are the fooling stage's (config.yaml).
    stage = yaml.safe_load((ROOT / "config.yaml").read_text())["fooling"]
    parser.add_argument("--offspring", type=int, default=stage["offspring"])
    parser.add_argument("--hidden", type=int, default=stage["cppn_nodes"])
    parser.add_argument("--span", type=float, default=stage["cppn_span"])
    parser.add_argument("--sigma", type=float, default=stage["mutation_sigma"])
    parser.add_argument("--structure", type=float, default=1.0)
    parser.add_argument("--crossover", type=float, default=0.0)
    parser.add_argument("--no-focus", action="store_true")
    parser.add_argument("--adapt", action="store_true", default=stage["adapt_sigma"],
                        help="1/5th success rule on each class's step size")
    parser.add_argument("--threads", type=int, default=2)
    add_option(parser)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    targets = stage["imagenet_classes"]
    model = load_backbone("efficientnet_lite0")
    names = list(model.class_names)
    judge = ImageNetJudge("efficientnet_lite1")
    shape = (3, args.size, args.size)
    print(f"generator efficientnet_lite0 at {args.size} px, judge {judge.kind}; classes "
          f"{', '.join(names[c] for c in targets)}; {args.threads} threads, {os.cpu_count()} CPUs; "
          f"load average at start {os.getloadavg()[0]:.2f}")

    rows = []
    if args.gradient:
        start, cpu = time.perf_counter(), time.process_time()
        result = fooling.gradient_fooling(model, shape, target=0.999, steps=500, lr=0.01, targets=targets,
                                          layer=resolve_layer(model, SCORES_LAYER),
                                          seed=args.seed, show_progress=False)
        print(f"gradient: {time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu:.1f} s CPU, "
              f"steps per class {result.iterations}")
        rows.append({"method": "gradient", "size": args.size, "seed": args.seed,
                     "wall_s": round(time.perf_counter() - start, 1), **judged(judge, result, names)})

    log_target = math.log(TARGET)
    curve: list[dict] = []
    start, cpu = time.perf_counter(), time.process_time()
    last = [start, cpu]

    def on_generation(generation: int, fitness: torch.Tensor) -> bool:
        now, used = time.perf_counter(), time.process_time()
        conf = fitness.exp()
        row = {"elapsed_s": round(now - start, 2), "generation": generation,
               "classes_at_99": int((fitness >= log_target).sum()), "median": round(float(conf.median()), 6),
               "min": round(float(conf.min()), 6), "load1": round(os.getloadavg()[0], 2),
               "cpu_per_wall": round((used - last[1]) / max(now - last[0], 1e-9), 2)}
        curve.append(row)
        if generation % args.every == 0:
            print(f"{row['elapsed_s']:7.1f} s  gen {generation:4d}  at 99%: {row['classes_at_99']:2d}/{len(fitness)}  "
                  f"median {row['median']:.4f}  min {row['min']:.4f}  load {row['load1']:.2f}  "
                  f"cpu/wall {row['cpu_per_wall']:.2f}", flush=True)
        step = now - last[0]
        last[:] = [now, used]
        return now - start + step > args.seconds

    result = fooling.evolve_fooling(
        model, shape, target=TARGET, generations=args.generations, offspring=args.offspring, hidden=args.hidden,
        span=args.span, sigma=args.sigma, adapt=args.adapt, structure=args.structure, crossover=args.crossover,
        focus=not args.no_focus, targets=targets, seed=args.seed, show_progress=False, on_generation=on_generation)
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    loads = [row["load1"] for row in curve] or [os.getloadavg()[0]]
    print(f"evolution: {result.extra['budget']} generations in {wall:.1f} s wall, {used:.1f} s CPU "
          f"({used / wall:.2f} cores of {args.threads}); load average (1 min) mean {statistics.mean(loads):.2f}, "
          f"max {max(loads):.2f}; generations to 99% per class {result.iterations}")
    print(f"  final step sizes {np.round(result.extra['sigma'], 3).tolist()}, nodes {result.extra['nodes']}")
    rows.append({"method": "cppn", "size": args.size, "seed": args.seed, "budget_s": args.seconds,
                 "offspring": args.offspring, "hidden": args.hidden, "span": args.span, "sigma": args.sigma,
                 "structure": args.structure, "crossover": args.crossover, "focus": not args.no_focus,
                 "adapt": args.adapt, "generations": result.extra["budget"], "wall_s": round(wall, 1),
                 "cores_used": round(used / wall, 2), "load_mean": round(statistics.mean(loads), 2),
                 "load_max": round(max(loads), 2), **judged(judge, result, names)})
    if args.curve:
        args.curve.parent.mkdir(parents=True, exist_ok=True)
        with open(args.curve, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(curve[0]))
            writer.writeheader()
            writer.writerows(curve)
        print(f"curve: {args.curve}")
    if not args.no_record:
        record("cppn_fooling", rows)


if __name__ == "__main__":
    main()
