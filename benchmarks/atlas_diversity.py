"""Atlas diverse sets: member similarity, and members beating the dataset.

For one layer and a few diversity weights (0 = k - 1 independent restarts beside x*), the
atlas's own code (``cnnpipe.methods.atlas.xstar_and_diverse``) makes each unit's set of k; per
weight this records the mean pairwise cosine of the members' Gram matrices at the layer (the
similarity the term penalizes; lower = more diverse, x* included in the pairs) and the share
of members 1..k-1 whose a^k beats the largest a^k on the dataset (the trained CNN's training
images; for an ImageNet network scikit-image's bundled photos, a low bar).

The weight in config.yaml (0.25) was picked by hand on the tiny CNN of the tests; this
measures it, it does not tune it.

Run: .venv/bin/python benchmarks/atlas_diversity.py --model results/train/model.pt
       --data results/data/dataset.pt [--layer conv2]      (the trained CNN; a minute)
     .venv/bin/python benchmarks/atlas_diversity.py --backbone efficientnet_lite0 --layer blocks.4
       --units 4 --size 64 --steps 100                     (Lite0; a few minutes)
"""

from __future__ import annotations

import argparse

import torch
from record import add_option, record

from cnnpipe.methods import atlas
from cnnpipe.methods.filter_search import feature_map_layer, prepare_model, reference_photos
from cnnpipe.runtime.device import select_device


def _network(args):
    if args.backbone == "trained":
        from cnnpipe.data.prepare import load_prepared
        from cnnpipe.networks.checkpoint import load_model

        model = load_model(args.model)
        return model, tuple(model.image_shape), load_prepared(args.data)["train_images"], "training set"
    from cnnpipe.networks.build import load_backbone

    shape = (3, args.size, args.size)
    return load_backbone(args.backbone), shape, reference_photos(args.size), "bundled photos"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="trained")
    parser.add_argument("--model", default="results/train/model.pt")
    parser.add_argument("--data", default="results/data/dataset.pt")
    parser.add_argument("--layer", default="conv2")
    parser.add_argument("--units", type=int, default=0, help="the first N units (0: all)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--parameterization", default="auto")
    parser.add_argument("--diverse", type=int, default=4)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25])
    parser.add_argument("--threads", type=int, default=2)
    add_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, shape, images, dataset = _network(args)
    prepare_model(model, select_device("cpu"))
    layer = feature_map_layer(model, args.layer, "--layer")
    values, _, _ = atlas.activations_and_positions(model, layer, images)
    maximum = values.max(dim=0).values
    units = list(range(args.units or values.shape[1]))
    parameterization = args.parameterization
    if parameterization == "auto":
        parameterization = "pixel" if args.backbone == "trained" else "fft"
    jitter = 0.05 if args.backbone != "trained" else 0.0
    rows = []
    for weight in args.weights:
        settings = dict(steps=args.steps, lr=0.05, parameterization=parameterization, jitter=jitter, leak=0.01,
                        memory_mb=1024, seed=0, diverse=args.diverse, diversity=weight)
        sets, members = atlas.xstar_and_diverse(model, layer, units, shape, settings)
        similarity = atlas.set_similarity(model, layer, sets)
        above = (members[:, 1:] > maximum[units, None]).float()
        rows.append({"backbone": args.backbone, "layer": args.layer, "units": len(units), "diverse": args.diverse,
                     "steps": args.steps, "size": shape[-1], "parameterization": parameterization,
                     "dataset": dataset, "images": len(images), "diversity": weight,
                     "mean_pairwise_gram_cosine": round(float(similarity.nanmean()), 4),
                     "members_above_dataset_max": round(float(above.mean()), 4),
                     "x_star_above_dataset_max": round(float((members[:, 0] > maximum[units]).float().mean()), 4)})
        print(rows[-1])
    if not args.no_record:
        record("atlas_diversity", rows)


if __name__ == "__main__":
    main()
