"""Batching ablation of per-filter activation maximization: one batched ascent vs one at a time.

This is an ablation, not a comparison with another tool: both sides are cnnpipe's own code,
and the only difference is whether the filters are optimized together in one batch or one
after another. The ratio measures what batching buys inside cnnpipe; it says nothing about
how cnnpipe compares with other activation-maximization libraries (none is run here).

Both sides run the same engine (``cnnpipe.ascent``) on the default model's widest conv layer,
with the same steps, image size, learning rate and leak: the batched side is the stage's own
``maximize_filters`` (all filters in one ``render_batched`` call), the loop calls
``ascent.ascend`` once per filter with that filter's global index, so each sample starts from
the same seeded noise as in the batch. The model is ``results/train/model.pt`` when it exists
(the default config's trained CNN), else the default config's architecture with random weights.
Each side runs ``--repeat`` times; the median is reported, and the speed ratio loop / batched.

Why the ratio stays near 4x on a CPU (goal: 20x). A step costs a fixed ~0.3 ms of Python and
dispatch (parameterization, hooks, objective, Adam, clipping) plus the real work per image.
Batching removes the fixed part for all but one image, so the ratio is bounded by
(fixed + work) / work per image. Profiled on two cores, one thread: the work before conv2
alone (conv1, ReLU, max pooling, forward and backward) takes 1.9 ms for 32 images, ~60 us per
image, so even a free conv2 would leave the ratio under ~6.5x. Computing only the maximized
filter of conv2 per image (a grouped convolution) did not make the step faster. On a GPU,
where a single image's step is all launch overhead, the bound is much higher.

Run: .venv/bin/python benchmarks/filters_speed.py [--config config.yaml] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml
from record import add_option, record

from cnnpipe import ascent
from cnnpipe.methods.filter_search import feature_map_layer, image_spec, leaky_relus, maximize_filters, prepare_model
from cnnpipe.runtime.device import select_device

ROOT = Path(__file__).resolve().parents[1]


def load_default_model(config: dict, model_path: Path):
    """(model, image shape, where it came from)."""
    if model_path.is_file():
        from cnnpipe.networks.checkpoint import load_checkpoint, model_from_state

        state = load_checkpoint(model_path)
        return model_from_state(state), tuple(state["image_shape"]), f"trained weights from {model_path}"
    from cnnpipe.networks.lecture_cnn import LectureCNN, model_kwargs

    torch.manual_seed(config["seed"])
    size = config["dataset"]["image_size"] or 28
    channels = config["dataset"].get("channels", 1) if config["dataset"]["name"] == "imagefolder" else 1
    model = LectureCNN(channels, 10, size, **model_kwargs(config["model"]))
    return model.eval(), (channels, size, size), "random weights (no results/train/model.pt)"


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--model", type=Path, default=ROOT / "results" / "train" / "model.pt")
    parser.add_argument("--steps", type=int, help="default: the config's filters.steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the rule uses 1)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (benchmarks/gpu.sh: cuda)")
    parser.add_argument("--channels-first", action="store_true",
                        help="keep the model in [B, C, H, W] memory format (the stage uses channels last)")
    add_option(parser)
    args = parser.parse_args()

    config = yaml.safe_load(args.config.read_text())
    settings = config["filters"]
    steps = args.steps or settings["steps"]
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # as in the pipeline's seed_everything
    model, shape, origin = load_default_model(config, args.model)
    model.to(select_device(args.device))  # the engine runs where the model is
    if not args.channels_first:
        prepare_model(model)  # as the stage does
    widths = list(config["model"]["conv_channels"])
    layer = f"conv{widths.index(max(widths)) + 1}"
    target = feature_map_layer(model, layer)
    filters = list(range(min(max(widths), settings["max_filters"])))
    common = dict(steps=steps, lr=settings["lr"])
    spec = image_spec(shape, settings["parameterization"])
    transforms = (ascent.Jitter(settings["jitter"]),) if settings["jitter"] > 0 else ()
    seed = config["seed"]

    def batched():
        return maximize_filters(model, target, filters, shape, parameterization=settings["parameterization"],
                                jitter=settings["jitter"], leak=settings["leak"], memory_mb=settings["memory_mb"],
                                seed=seed, progress=False, **common)

    def one_at_a_time():
        with leaky_relus(model, settings["leak"]):
            return [ascent.ascend(model, [ascent.channel(target, k)], spec, indices=[k], seed=seed, progress=False,
                             transforms=transforms, **common) for k in filters]

    batched(), one_at_a_time()  # warm-up: first calls allocate and pick kernels
    batch_times, loop_times = [], []
    for _ in range(args.repeat):  # interleaved, so that a busy spell on a shared machine hits both
        batch_times.append(timed(batched))
        loop_times.append(timed(one_at_a_time))
    together, alone = batched(), one_at_a_time()
    difference = (together.images - torch.cat([r.images for r in alone])).abs()

    t_batch, t_loop = statistics.median(batch_times), statistics.median(loop_times)
    print("ablation of batching (cnnpipe against itself, not against another tool): "
          "all filters in one batched ascent vs one ascent per filter")
    print(f"model: {origin}; layer {layer} (a^k read at {target}), {len(filters)} filters, "
          f"images {'x'.join(map(str, shape))}, {steps} Adam steps, on {args.device}, {args.threads} thread(s), "
          f"{'channels first' if args.channels_first else 'channels last'}")
    print(f"batched (one render_batched call): {t_batch:.3f} s   runs {[round(t, 3) for t in batch_times]}")
    print(f"one filter at a time ({len(filters)} ascend calls): {t_loop:.3f} s   runs "
          f"{[round(t, 3) for t in loop_times]}")
    print(f"per step: batched {1e3 * t_batch / steps:.2f} ms for {len(filters)} images, "
          f"one at a time {1e3 * t_loop / steps / len(filters):.2f} ms per image")
    print(f"batching ablation, speed ratio (one at a time / batched): {t_loop / t_batch:.1f}x   (goal: >= 20x)")
    print(f"images, batched vs one at a time: max |difference| {difference.max():.3g}, "
          f"pixels differing by > 0.01: {(difference > 0.01).float().mean():.1%}")
    if not args.no_record:
        record("filters_speed", [{
            "layer": layer, "filters": len(filters), "steps": steps, "device": args.device,
            "model": "trained" if origin.startswith("trained") else "random",
            "memory_format": "channels first" if args.channels_first else "channels last",
            "repeats": args.repeat, "batched_s": round(t_batch, 3), "one_at_a_time_s": round(t_loop, 3),
            "ratio": round(t_loop / t_batch, 1), "max_difference": float(f"{difference.max():.3g}")}])


if __name__ == "__main__":
    main()
