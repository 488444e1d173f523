"""Per-class activation maximization: "can we see digits?"

For every class i the image x* = argmax_x y^i is found by gradient ascent with the engine
``cnnpipe.ascent``, in three variants, each one batched call for all classes. y^i is the
network's output for class i: by default, as on the lecture's slide, the softmax output,
maximized as its log-odds log(y^i / (1 - y^i)) (the same maximizer; unlike y^i and log y^i
it does not flatten out as y^i nears 1, so the ascent keeps going); with ``objective:
logit``, the score before the softmax (Simonyan et al. 2014). The logit alone can rise with
another class's logit rising faster, so its x* need not be classified as i (measured on the
tiny test CNN: 9 of 10 classes).

* ``plain`` - the slide: pixels in [0, 1] (clipped after each step), no transforms, no penalty.
* ``l1`` - the slide's regularizer: x* = argmax_x y^i - lambda * sum_ij |x_ij| on pixels in
  [0, 1], so the penalty pulls pixels towards black (the digits' background).
* ``regularized`` - our best-looking choice: a Fourier (or pixel) parameterization, random
  jitter, zoom and rotation each step, a periodic blur, a small L1 and optional TV penalty.

Each image is then judged by the CNN (logit, probability) and by an independent pixel
classifier (``cnnpipe.judges.pixels``), and compared with its class's mean training image
(Pearson r) - a plainer measure than any classifier's verdict, since gradient images tend to
fool pixel classifiers too.

With ``backbone`` set to an ImageNet network (``cnnpipe.judges.classifier``) the same three variants
run for the configured ImageNet classes; there is no training set here to fit a pixel
classifier or take class means on, so those columns stay empty, and the independent judges
are the ImageNet networks of ``classes.judge`` (one or a list).

The files: ``summary.csv`` has one row per (class, variant): ``logit`` and ``probability`` of
the class by the network, ``cnn_prediction`` its top class; ``independent_prediction``,
``independent_probability`` (of the class) and ``independent_rank`` (the class's rank, 0 =
top-1) are the *first* judge's verdict (the pixel classifier, or the first ImageNet judge
listed), empty without a judge; ``mean_image_correlation`` is r with the class's mean training
image (pixel classifier only). ``judges.csv`` has one row per image and judge, every judge's
verdict: ``class``, ``class_index``, ``variant``, ``judge`` (its name), ``prediction`` and
``prediction_probability`` (its top class and that class's probability), ``probability`` (of
the intended class), ``rank`` (0 = top-1), ``top1`` and ``top5``. ``attainment.json`` counts
per variant, per judge (``judges``) and as the mean over the judges (``judges_mean``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnnpipe import ascent
from cnnpipe.io.files import save_figure, write_csv, write_json
from cnnpipe.io.images import read_images, write_image_folder
from cnnpipe.judges.classifier import load_classifier
from cnnpipe.judges.imagenet import target_ranks
from cnnpipe.judges.verdicts import count_text, judge_counts, judge_name, judge_verdicts
from cnnpipe.methods.class_search import check_config, regularized_config, visualize_classes
from cnnpipe.report.plots import image_grid
from cnnpipe.runtime.device import model_device, seed_everything, select_device

log = logging.getLogger(__name__)

VARIANTS = ("plain", "l1", "regularized")
SUMMARY_COLUMNS = [
    "class",
    "variant",
    "logit",
    "probability",
    "independent_prediction",
    "independent_probability",
    "independent_rank",
    "cnn_prediction",
    "mean_image_correlation",
    "class_index",
]

@torch.no_grad()
def summarize(
    model: nn.Module, images: dict[str, torch.Tensor], independent, class_names, targets=None
) -> pd.DataFrame:
    """One row per (class, variant): the CNN's logit and probability of that class and its
    prediction; the independent judge's (pixel classifier's or ImageNet judge's; of a list, the
    first's: :func:`judges_table` has every judge's) prediction,
    probability of the class and the class's rank among its predictions (0 = top-1), empty
    without a judge; and the correlation with the class's mean training image (a pixel
    classifier only). Image j of each variant is for class ``targets[j]`` (default: j)."""
    device = model_device(model)
    independent = _first(independent)
    rows = []
    for variant, batch in images.items():
        with ascent.frozen(model):  # eval mode (no dropout), restored afterwards
            logits = model(batch.to(device)).float().cpu()
        probs = torch.softmax(logits, dim=1)
        classes = np.arange(len(batch)) if targets is None else np.asarray(targets)
        if independent is not None:
            pixel_probs = independent.predict_proba(batch)
            ranks = target_ranks(pixel_probs, classes)
            correlation = (independent.mean_image_correlation(batch, classes)
                           if hasattr(independent, "mean_image_correlation") else None)
        for j, c in enumerate(classes):
            row = {
                "class": str(class_names[c]),
                "class_index": int(c),
                "variant": variant,
                "logit": round(float(logits[j, c]), 4),
                "probability": round(float(probs[j, c]), 6),
                "cnn_prediction": str(class_names[int(probs[j].argmax())]),
            }
            if independent is not None:
                row["independent_prediction"] = str(class_names[int(pixel_probs[j].argmax())])
                row["independent_probability"] = round(float(pixel_probs[j, c]), 6)
                row["independent_rank"] = int(ranks[j])
                if correlation is not None:
                    row["mean_image_correlation"] = round(float(correlation[j]), 4)
            rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _first(independent):
    """The first of a list of judges (None for none); a single judge as it is."""
    if isinstance(independent, (list, tuple)):
        return independent[0] if independent else None
    return independent


def judges_table(images: dict[str, torch.Tensor], judges, class_names, targets=None) -> pd.DataFrame:
    """Every judge's verdict on every image: one row per (variant, class, judge), the columns
    of the module docstring's ``judges.csv``."""
    frames = []
    for variant, batch in images.items():
        classes = np.arange(len(batch)) if targets is None else np.asarray(targets)
        verdicts = judge_verdicts(judges, batch, classes, class_names)
        image = verdicts.pop("image").to_numpy()
        verdicts.insert(0, "variant", variant)
        verdicts.insert(0, "class_index", classes[image].astype(int))
        verdicts.insert(0, "class", [str(class_names[c]) for c in classes[image]])
        frames.append(verdicts)
    return pd.concat(frames, ignore_index=True)


def attainment(summary: pd.DataFrame, reference: dict, verdicts: pd.DataFrame | None = None) -> dict:
    """Per variant: how many classes the CNN and the independent judge assign to the intended
    class (the judge also: in its top 5), and the correlation with the class means (pixel
    classifier only); ``reference`` holds the pixel classifier's measures for real test images.
    With ``verdicts`` (:func:`judges_table`), each judge's top-1 and top-5 counts and mean
    probability of the class (``judges``) and their mean over the judges (``judges_mean``)."""
    out = {"reference": reference, "variants": {}}
    for variant, group in summary.groupby("variant", sort=False):
        numbers = {
            "classes": int(len(group)),
            "cnn_correct": int((group["cnn_prediction"] == group["class"]).sum()),
            "probability_min": round(float(group["probability"].min()), 6),
        }
        if group["independent_prediction"].notna().all():
            numbers.update({
                "independent_correct": int((group["independent_prediction"] == group["class"]).sum()),
                "independent_top5": int((group["independent_rank"] < 5).sum()),
                "independent_probability_mean": round(float(group["independent_probability"].mean()), 4),
            })
        if group["mean_image_correlation"].notna().all():
            numbers.update({
                "mean_image_correlation_mean": round(float(group["mean_image_correlation"].mean()), 4),
                "mean_image_correlation_min": round(float(group["mean_image_correlation"].min()), 4),
            })
        if verdicts is not None and not verdicts.empty:
            counts = judge_counts(verdicts[verdicts["variant"] == variant])
            numbers.update(judges=counts["judges"], judges_mean=counts["mean"])
        out["variants"][variant] = numbers
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


def regularization_words(cfg: dict) -> list[str]:
    """What the regularized variant does, for the figure title."""
    plain, cfg = cfg, regularized_config(cfg)
    words = [{"fft": "FFT", "phase": "Fourier phase (photos' magnitude)"}.get(cfg["parameterization"], "pixels")]
    if cfg["parameterization"] == "fft" and cfg["standardize"]:
        words[0] += f" standardized to std {cfg['standardize']:g}"
    if cfg["canvas"] is not None:
        low, high = cfg["crop_side"]
        words.append(f"a {cfg['canvas']} px canvas seen as {cfg['copies']} random crops of {low:g}-{high:g} "
                     f"of its side a step")
    if cfg["jitter"] > 0 or cfg["scale"] > 0 or cfg["degrees"] > 0:
        copies = f" of {cfg['copies']} copies a step" if cfg["copies"] > 1 and cfg["canvas"] is None else ""
        words.append("jitter/zoom/rotation" + copies)
    if cfg["noise"]:
        words.append(f"noise {cfg['noise']:g}")
    if (cfg["optimizer"], cfg["lr"], cfg["steps"]) != ("adam", plain["lr"], plain["steps"]):
        optimizer = {"nadam": "NAdam", "adam": "Adam"}[cfg["optimizer"]]
        words.append(f"{cfg['steps']} {optimizer} steps at lr {cfg['lr']:g}")
    if cfg["blur_every"]:
        words.append(f"blur every {cfg['blur_every']} steps")
    if cfg["regularized_l1_weight"]:
        words.append(f"L1 {cfg['regularized_l1_weight']:g}")
    if cfg["tv_weight"]:
        words.append(f"TV {cfg['tv_weight']:g}")
    return words


def same_side(batch: torch.Tensor, side: int) -> torch.Tensor:
    """``batch`` shown at ``side`` x ``side`` pixels (a canvas larger than the network's input
    shrunk, antialiased) so that every variant fits one grid."""
    if batch.shape[-1] == side and batch.shape[-2] == side:
        return batch
    return torch.nn.functional.interpolate(batch, size=(side, side), mode="bilinear", antialias=True,
                                           align_corners=False).clamp(0, 1)


def classes_figure(images: dict[str, torch.Tensor], summary: pd.DataFrame, class_means: np.ndarray | None,
                   class_names, cfg: dict, reference: dict | None, verdicts: pd.DataFrame | None = None):
    """Rows: the variants, then (with a pixel classifier) the class's mean training image;
    columns: the classes. Under each image: the CNN's probability, then the pixel classifier's
    prediction and r with the class mean where there is one, or the ImageNet judges' verdicts
    (``verdicts``, :func:`judges_table`): one judge's prediction, or how many of several judges
    put the class first; the title counts each judge's top-1 and top-5 and their mean."""
    names = [] if verdicts is None or reference is not None else list(dict.fromkeys(verdicts["judge"]))
    k = len(class_names)
    shape = next(iter(images.values())).shape[1:]
    judged = reference is not None
    panels = [same_side(batch, shape[-1]) for batch in images.values()]
    if judged:
        panels.append(torch.from_numpy(class_means.reshape(k, *shape)).float())
    labels, sublabels = [], []
    by_key = summary.set_index(["variant", "class"])
    for variant in images:
        for name in class_names:
            row = by_key.loc[(variant, str(name))]
            labels.append(f"{VARIANT_LABELS.get(variant, variant)}: {name}")
            under = f"p {row['probability']:.3f}"
            if judged:
                under += f" | {row['independent_prediction']} | r {row['mean_image_correlation']:.2f}"
            elif names:
                under += _judged_under(verdicts, names, variant, str(name), row["independent_prediction"])
            sublabels.append(under)
    if judged:
        labels += [f"mean: {name}" for name in class_names]
        sublabels += ["training mean"] * k
    rows = f"rows: plain | L1: y^i - {cfg['l1_weight']:g} \u03a3|x_ij| (pixels in [0, 1]) | reg.: " + ", ".join(
        regularization_words(cfg))
    lines = [f"Can we see the classes? x* = argmax_x y^i for each class i, {cfg['steps']} Adam steps from noise"]
    if judged:
        tally = " | ".join(
            f"{VARIANT_LABELS.get(v, v)} {int((g['independent_prediction'] == g['class']).sum())}/{k} "
            f"(mean r {g['mean_image_correlation'].mean():.2f})"
            for v, g in summary.groupby("variant", sort=False)
        )
        lines += [
            rows + " | mean training image",
            f"under each: CNN probability | {reference['independent_classifier']} pixel classifier's prediction | "
            f"r: correlation with the class's mean image (test images: median "
            f"{reference['test_images_mean_image_correlation_median']:.2f})",
            f"pixel classifier agrees: {tally}",
        ]
    else:
        tally = " | ".join(
            f"{VARIANT_LABELS.get(v, v)} {int((g['cnn_prediction'] == g['class']).sum())}/{k}"
            for v, g in summary.groupby("variant", sort=False)
        )
        lines += [rows, f"under each: the network's probability of the class; its top class agrees: {tally}"]
        if names:
            lines += _judges_lines(verdicts, names, k)
    return image_grid(torch.cat(panels), labels, "\n".join(lines), ncols=k, sublabels=sublabels)


def _judged_under(verdicts: pd.DataFrame, names: list[str], variant: str, name: str, prediction: str) -> str:
    """Under an image: the one judge's prediction, or how many of several put the class first."""
    if len(names) == 1:
        return f" | judge: {prediction}"
    mine = verdicts[(verdicts["variant"] == variant) & (verdicts["class"] == name)]
    return f" | judges: {int(mine['top1'].sum())}/{len(names)} top-1"


def _judges_lines(verdicts: pd.DataFrame, names: list[str], k: int) -> list[str]:
    """The title's verdicts: per variant each judge's top-1 and top-5 counts, and their mean."""
    groups = verdicts.groupby("variant", sort=False)
    if len(names) == 1:
        verdict = " | ".join(f"{VARIANT_LABELS.get(v, v)} {int(g['top1'].sum())}/{k} top-1, {int(g['top5'].sum())}/{k} "
                             "top-5" for v, g in groups)
        return [f"and the judge's prediction: {names[0]}, trained separately, names the class: {verdict}"]
    return [f"and the judges, trained separately ({', '.join(names)}), name the class:",
            *(f"{VARIANT_LABELS.get(v, v)}: {count_text(judge_counts(g), k)}" for v, g in groups)]


def saved_as_files(images: dict[str, torch.Tensor], folder: Path, names) -> dict[str, torch.Tensor]:
    """Each variant's images saved as ``folder/<variant>/<name>.png`` and read back from the files."""
    mode = "L" if next(iter(images.values())).shape[1] == 1 else "RGB"
    return {variant: read_images(write_image_folder(batch, names, folder / variant), mode)
            for variant, batch in images.items()}


def run_classes(
    settings: dict,
    *,
    seed: int,
    device_name: str,
    summary_csv,
    attainment_json,
    grid_png,
    image_dir,
    judges_csv=None,
    model_path=None,
    data_path=None,
    cache_dir=None,
) -> pd.DataFrame:
    """Rule `classes`: the images of all variants (``image_dir/<variant>/<class>.png``), their
    summary, every judge's verdicts (``judges_csv``, where given), counts and the grid; the
    numbers and the grid come from those files, read back."""
    check_config(settings)
    seed_everything(seed)
    device = select_device(device_name)
    net = load_classifier(settings, key="classes", model_path=model_path, data_path=data_path,
                          cache_dir=cache_dir)
    model = net.model.to(device)
    log.info("classes: %s, %d classes on %s images", net.backbone, len(net.targets), "x".join(map(str, net.image_shape)))
    images = visualize_classes(model, net.image_shape, settings, layer=net.layer, targets=net.targets, seed=seed)
    images = saved_as_files(images, Path(image_dir), net.target_names)
    independent = net.independent(settings["independent_classifier"], seed)
    reference = None if not independent or net.data is None else reference_measures(independent[0], net.data)
    summary = summarize(model, images, independent, net.class_names, net.targets)
    verdicts = judges_table(images, independent, net.class_names, net.targets)
    counts = attainment(summary, reference, verdicts)
    if independent and reference is None:
        counts["judge"] = independent[0].kind
        counts["judges"] = [judge_name(judge) for judge in independent]
    _log_counts(counts)
    log.info("reference: %s", reference)
    write_csv(summary_csv, summary)
    if judges_csv is not None:
        write_csv(judges_csv, verdicts)
    write_json(attainment_json, counts)
    means = None if reference is None else independent[0].class_means[net.targets]
    save_figure(classes_figure(images, summary, means, net.target_names, settings, reference,
                               None if reference is not None else verdicts), grid_png)
    return summary


def _log_counts(counts: dict) -> None:
    """Per variant: the network's count, and each judge's top-1 and top-5 and their mean."""
    for variant, numbers in counts["variants"].items():
        total = numbers["classes"]
        judged = ""
        if "judges" in numbers:
            judged = ", judges " + count_text({"judges": numbers["judges"], "mean": numbers["judges_mean"]}, total)
        elif "independent_correct" in numbers:
            judged = f", judge {numbers['independent_correct']}/{total} top-1 {numbers['independent_top5']}/{total} top-5"
        if "mean_image_correlation_mean" in numbers:
            judged += f", mean r with class mean {numbers['mean_image_correlation_mean']:.3f}"
        log.info("%s: network %d/%d%s", variant, numbers["cnn_correct"], total, judged)
