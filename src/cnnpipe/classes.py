"""Per-class activation maximization: "can we see digits?"

For every class i the image x* = argmax_x y^i (the class logit) is found by gradient ascent
with the engine ``cnnpipe.ascent``, in three variants, each one batched call for all classes:

* ``plain`` - the slide: pixels in [0, 1] (clipped after each step), no transforms, no penalty.
* ``l1`` - the slide's regularizer: x* = argmax_x y^i - lambda * sum_ij |x_ij| on pixels in
  [0, 1], so the penalty pulls pixels towards black (the digits' background).
* ``regularized`` - our best-looking choice: a Fourier (or pixel) parameterization, random
  jitter, zoom and rotation each step, a periodic blur, a small L1 and optional TV penalty.

Each image is then judged by the CNN (logit, probability) and by an independent pixel
classifier (``cnnpipe.independent``), and compared with its class's mean training image
(Pearson r) - a plainer measure than any classifier's verdict, since gradient images tend to
fool pixel classifiers too.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnnpipe import ascent as A
from cnnpipe.checkpoint import load_model
from cnnpipe.data import load_prepared
from cnnpipe.device import seed_everything, select_device
from cnnpipe.fileio import save_figure, write_csv, write_json
from cnnpipe.independent import fit_on_prepared
from cnnpipe.plots import image_grid

log = logging.getLogger(__name__)

VARIANTS = ("plain", "l1", "regularized")
SUMMARY_COLUMNS = [
    "class",
    "variant",
    "logit",
    "probability",
    "independent_prediction",
    "independent_probability",
    "cnn_prediction",
    "mean_image_correlation",
]
CONFIG_KEYS = (
    "steps",
    "lr",
    "l1_weight",
    "parameterization",
    "jitter",
    "scale",
    "degrees",
    "blur_every",
    "blur_sigma",
    "tv_weight",
    "regularized_l1_weight",
    "independent_classifier",
)


def check_config(cfg: dict) -> None:
    """Every key this stage reads is present; the error names the missing ones."""
    missing = [key for key in CONFIG_KEYS if key not in cfg]
    if missing:
        raise KeyError(f"config section 'classes' lacks {missing}")
    if cfg["parameterization"] not in ("pixel", "fft"):
        raise ValueError(f"classes.parameterization must be 'pixel' or 'fft', got {cfg['parameterization']!r}")


def regularized_transforms(cfg: dict) -> list[A.Transform]:
    """Jitter, zoom (1 +- scale) and rotation (+- degrees), then a half jitter: the ones switched on."""
    transforms: list[A.Transform] = []
    if cfg["jitter"] > 0:
        transforms.append(A.Jitter(cfg["jitter"]))
    if cfg["scale"] > 0 or cfg["degrees"] > 0:
        transforms.append(A.RandomAffine((1 - cfg["scale"], 1 + cfg["scale"]), cfg["degrees"]))
    if cfg["jitter"] > 0:
        transforms.append(A.Jitter(cfg["jitter"] / 2))
    return transforms


def variant_settings(cfg: dict, shape) -> dict[str, dict]:
    """Variant name -> keyword arguments for ``ascent.ascend`` (param, transforms, penalties)."""
    check_config(cfg)
    pixels = A.pixel_image(shape)
    regularized_param = A.fft_image(shape) if cfg["parameterization"] == "fft" else A.pixel_image(shape)
    penalties = {"l1": cfg["regularized_l1_weight"], "tv": cfg["tv_weight"]}
    return {
        "plain": {"param": pixels},
        "l1": {"param": pixels, "regularizers": {"l1": cfg["l1_weight"]}},
        "regularized": {
            "param": regularized_param,
            "transforms": regularized_transforms(cfg),
            "blur_every": cfg["blur_every"] or None,
            "blur_sigma": cfg["blur_sigma"],
            "regularizers": {name: w for name, w in penalties.items() if w},
        },
    }


def visualize_classes(
    model: nn.Module,
    image_shape,
    cfg: dict,
    *,
    layer: str = "logits",
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Variant -> images [K, C, H, W] in [0, 1], image i maximizing the logit of class i.

    One batched ascent per variant; plain and l1 start from the same seeded noise, so their
    difference is the L1 term alone.
    """
    shape = tuple(int(s) for s in image_shape)
    with torch.no_grad(), A.frozen(model):
        k = int(model(torch.zeros(1, *shape, device=next(model.parameters()).device)).shape[1])
    objectives = [A.class_logit(layer, i) for i in range(k)]
    images = {}
    for name, settings in variant_settings(cfg, shape).items():
        settings = dict(settings)
        param = settings.pop("param")
        result = A.ascend(
            model, objectives, param, steps=cfg["steps"], lr=cfg["lr"], seed=seed, progress=show_progress,
            desc=f"classes: {name}", **settings,
        )
        images[name] = result.images
    return images


@torch.no_grad()
def summarize(
    model: nn.Module, images: dict[str, torch.Tensor], independent, class_names
) -> pd.DataFrame:
    """One row per (class, variant): the CNN's logit and probability of that class and its
    prediction, the pixel classifier's prediction and probability of the class, and the
    correlation with the class's mean training image."""
    device = next(model.parameters()).device
    rows = []
    for variant, batch in images.items():
        with A.frozen(model):  # eval mode (no dropout), restored afterwards
            logits = model(batch.to(device)).float().cpu()
        probs = torch.softmax(logits, dim=1)
        classes = np.arange(len(batch))
        pixel_probs = independent.predict_proba(batch)
        correlation = independent.mean_image_correlation(batch, classes)
        for i in classes:
            rows.append(
                {
                    "class": str(class_names[i]),
                    "variant": variant,
                    "logit": round(float(logits[i, i]), 4),
                    "probability": round(float(probs[i, i]), 6),
                    "cnn_prediction": str(class_names[int(probs[i].argmax())]),
                    "independent_prediction": str(class_names[int(pixel_probs[i].argmax())]),
                    "independent_probability": round(float(pixel_probs[i, i]), 6),
                    "mean_image_correlation": round(float(correlation[i]), 4),
                }
            )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def attainment(summary: pd.DataFrame, reference: dict) -> dict:
    """Per variant: how many classes the CNN and the pixel classifier assign to the intended
    class, and the correlation with the class means; ``reference`` holds the same measures
    for real test images."""
    out = {"reference": reference, "variants": {}}
    for variant, group in summary.groupby("variant", sort=False):
        out["variants"][variant] = {
            "classes": int(len(group)),
            "cnn_correct": int((group["cnn_prediction"] == group["class"]).sum()),
            "independent_correct": int((group["independent_prediction"] == group["class"]).sum()),
            "independent_probability_mean": round(float(group["independent_probability"].mean()), 4),
            "mean_image_correlation_mean": round(float(group["mean_image_correlation"].mean()), 4),
            "mean_image_correlation_min": round(float(group["mean_image_correlation"].min()), 4),
        }
    return out


def reference_measures(independent, data: dict) -> dict:
    """The pixel classifier's test accuracy and real test images' correlation with their class mean."""
    images, labels = data["test_images"], data["test_labels"].numpy()
    correlation = independent.mean_image_correlation(images, labels)
    return {
        "independent_classifier": independent.kind,
        "independent_test_accuracy": round(independent.accuracy(images, labels), 4),
        "test_images_mean_image_correlation_median": round(float(np.median(correlation)), 4),
        "test_images_mean_image_correlation_p10": round(float(np.quantile(correlation, 0.1)), 4),
    }


VARIANT_LABELS = {"plain": "plain", "l1": "L1", "regularized": "reg."}


def classes_figure(images: dict[str, torch.Tensor], summary: pd.DataFrame, class_means: np.ndarray,
                   class_names, cfg: dict, reference: dict):
    """Rows: the variants, then the class's mean training image; columns: the classes.
    Under each image: CNN probability | pixel classifier's prediction | r with the class mean."""
    k = len(class_names)
    shape = next(iter(images.values())).shape[1:]
    means = torch.from_numpy(class_means.reshape(k, *shape)).float()
    panels = torch.cat([*images.values(), means])
    labels, sublabels = [], []
    by_key = summary.set_index(["variant", "class"])
    for variant in images:
        for name in class_names:
            row = by_key.loc[(variant, str(name))]
            labels.append(f"{VARIANT_LABELS.get(variant, variant)}: {name}")
            sublabels.append(f"p {row['probability']:.3f} | {row['independent_prediction']} | r {row['mean_image_correlation']:.2f}")
    labels += [f"mean: {name}" for name in class_names]
    sublabels += ["training mean"] * k
    reg = [cfg["parameterization"].upper() if cfg["parameterization"] == "fft" else "pixels"]
    if cfg["jitter"] > 0 or cfg["scale"] > 0 or cfg["degrees"] > 0:
        reg.append("jitter/zoom/rotation")
    if cfg["blur_every"]:
        reg.append(f"blur every {cfg['blur_every']} steps")
    if cfg["regularized_l1_weight"]:
        reg.append(f"L1 {cfg['regularized_l1_weight']:g}")
    if cfg["tv_weight"]:
        reg.append(f"TV {cfg['tv_weight']:g}")
    tally = " | ".join(
        f"{VARIANT_LABELS.get(v, v)} {int((g['independent_prediction'] == g['class']).sum())}/{k} "
        f"(mean r {g['mean_image_correlation'].mean():.2f})"
        for v, g in summary.groupby("variant", sort=False)
    )
    title = (
        f"Can we see the classes? x* = argmax_x y^i for each class i, {cfg['steps']} Adam steps from noise\n"
        f"rows: plain | L1: y^i - {cfg['l1_weight']:g} \u03a3|x_ij| (pixels in [0, 1]) | reg.: {', '.join(reg)} "
        "| mean training image\n"
        f"under each: CNN probability | {reference['independent_classifier']} pixel classifier's prediction | "
        f"r: correlation with the class's mean image (test digits: median "
        f"{reference['test_images_mean_image_correlation_median']:.2f})\n"
        f"pixel classifier agrees: {tally}"
    )
    return image_grid(panels, labels, title, ncols=k, sublabels=sublabels)


def run_classes(
    model_path,
    data_path,
    cfg: dict,
    *,
    seed: int,
    device_name: str,
    summary_csv,
    attainment_json,
    grid_png,
) -> pd.DataFrame:
    """Rule `classes`: the images of all variants, their summary, counts and the grid."""
    check_config(cfg)
    seed_everything(seed)
    device = select_device(device_name)
    model = load_model(model_path).to(device)
    data = load_prepared(data_path)
    shape = tuple(data["train_images"].shape[1:])
    class_names = list(model.classes)
    images = visualize_classes(model, shape, cfg, seed=seed)
    independent = fit_on_prepared(data, cfg["independent_classifier"], num_classes=len(class_names), seed=seed)
    reference = reference_measures(independent, data)
    summary = summarize(model, images, independent, class_names)
    counts = attainment(summary, reference)
    for variant, numbers in counts["variants"].items():
        log.info("%s: CNN %d/%d, pixel classifier %d/%d, mean r with class mean %.3f", variant,
                 numbers["cnn_correct"], numbers["classes"], numbers["independent_correct"], numbers["classes"],
                 numbers["mean_image_correlation_mean"])
    log.info("reference: %s", reference)
    write_csv(summary_csv, summary)
    write_json(attainment_json, counts)
    save_figure(classes_figure(images, summary, independent.class_means, class_names, cfg, reference), grid_png)
    return summary
