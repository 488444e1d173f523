"""The key numbers of each figure's report caption, read back from the stage's own outputs.

A caption in ``workflow/report/`` explains what the lecture says a figure shows; the numbers
of *this* run (accuracy, attainment, confidence, losses) come from here. Each stage's script
writes a short reStructuredText bullet list to ``results/captions/...`` after its results,
and the caption pulls it in with ``.. include::`` (Snakemake renders captions with docutils
from the working directory). The numbers are formatted from the CSV and JSON files the stage
wrote, so the caption can never disagree with them."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

from cnnpipe.io.files import atomic_write_text, is_missing
from cnnpipe.report.formatting import format_percent, format_percent_down


def write_caption(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """One RST bullet per line."""
    lines = list(lines)
    if not lines:
        raise ValueError(f"no key numbers for caption {path}")
    return atomic_write_text(path, "".join(f"* {line}\n" for line in lines))


def rst_text(value) -> str:
    """``value`` as reStructuredText that shows exactly its characters and means nothing else:
    every character but letters, digits and spaces (underscores too) is backslash-escaped (so no link, role,
    emphasis or substitution can start), and control characters such as a newline, which
    cannot be written so, are shown as escapes (``\\n``). Docutils escapes ``<`` and ``&`` in
    the HTML it writes, so no tag gets through either."""
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(value))
    return re.sub(r"([^\w ]|_)", r"\\\1", text)


def _read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def _read_csv(path, **options):
    """A stage's table as a pandas DataFrame. pandas is imported here, not at the top: the
    DeepDream chunk jobs write captions too, and should not pay its import (0.6 s)."""
    import pandas as pd

    return pd.read_csv(path, **options)


def _num(value: float) -> str:
    """Three significant digits, thousands separated; never scientific for ordinary sizes."""
    if not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def training_key_numbers(eval_json, metrics_csv) -> list[str]:
    """Test and training accuracy, test loss, the best epoch."""
    result = _read_json(eval_json)
    metrics = _read_csv(metrics_csv)
    best = metrics.loc[metrics["test_accuracy"].idxmax()]
    return [
        f"Test accuracy **{format_percent(result['test_accuracy'])}** (test loss {result['test_loss']:.4f}) on "
        f"{rst_text(result['dataset'])} after {result['epochs']} epochs; training accuracy "
        f"{format_percent(result['train_accuracy'])}.",
        f"Best test accuracy during training: {format_percent(best['test_accuracy'])} at epoch {int(best['epoch'])}.",
        f"{result['parameters']:,} trainable parameters; {len(result['classes'])} classes.",
    ]


def conv_example_key_numbers(example_json) -> list[str]:
    """The worked example's feature maps and pooled maps, row by row."""
    example = _read_json(example_json)
    lines = []
    for key, label in (("stride1", "stride 1"), ("stride2", "stride 2"),
                       ("maxpool", "2x2 max pooling of its stride-1 map")):
        for k, fmap in enumerate(example[key]):
            rows = " / ".join(" ".join(f"{v:g}" for v in row) for row in fmap)
            lines.append(f"Filter {k + 1}, {label}: ``{rows}``")
    return lines


def parameters_key_numbers(parameters_json) -> list[str]:
    """Each convolution's parameters against a dense layer with the same input and output."""
    return [
        f"{layer['name']}: {layer['conv_parameters']:,} parameters as a convolution, "
        f"{layer['fully_connected_parameters']:,} as a fully connected layer (**{_num(layer['ratio'])}x** more)."
        for layer in _read_json(parameters_json)["layers"]
    ]


def filters_key_numbers(table_csv, layer: str) -> list[str]:
    """How many filters' (or a fully connected layer's neurons') x* beat the reference images,
    and the spread of the ratios."""
    table = _read_csv(table_csv)
    units = "unit" in table
    what, a = ("neurons", "a^j") if units else ("filters", "a^k")
    won = int((table["activation"] > table["dataset_max"]).sum())
    ratio = table["ratio"].dropna()
    lines = [f"{rst_text(layer)}: **{won} of {len(table)}** {what}' x* activate them more than any reference "
             "image does."]
    if len(ratio):
        lines.append(f"{a}(x*) / largest {a} of the reference images: min {_num(ratio.min())}, median "
                     f"{_num(ratio.median())}, max {_num(ratio.max())}.")
    dead = table.loc[(table["dataset_max"] <= 0) & (table["activation"] <= 0), table.columns[0]].tolist()
    if dead:
        lines.append(f"Dead {what} (no reference image and no x* turns them on): {', '.join(map(str, dead))}.")
    if "start" in table:
        from_data = table.loc[table["start"] == "data", table.columns[0]].tolist()
        lines.append(f"x* ascended from a reference image (data start) for {len(from_data)} of {len(table)} {what}"
                     + (f": {', '.join(map(str, from_data))}." if from_data else "; from noise for all."))
    return lines


_VARIANTS = {"plain": "plain", "l1": "L1", "regularized": "regularized"}


def classes_key_numbers(attainment_json) -> list[str]:
    """Per variant: the network's and the pixel classifier's agreement, and r with the class mean."""
    counts = _read_json(attainment_json)
    reference = counts["reference"]
    lines = []
    known = list(_VARIANTS)
    ordered = sorted(counts["variants"].items(), key=lambda item: known.index(item[0]) if item[0] in known else 99)
    for variant, n in ordered:
        text = f"{_VARIANTS.get(variant, variant)}: the network picks the intended class for {n['cnn_correct']} of " \
               f"{n['classes']} (lowest probability {n['probability_min']:.3f})"
        if "mean_image_correlation_mean" in n:
            text += (f"; the pixel classifier for **{n['independent_correct']} of {n['classes']}**; mean r with "
                     f"the class's mean image **{n['mean_image_correlation_mean']:.2f}**")
        elif len(n.get("judges", {})) > 1:
            each = "; ".join(f"{rst_text(name)} {v['top1']} and {v['top5']}" for name, v in n["judges"].items())
            text += (f"; the independent judges put it first for **{n['judges_mean']['top1']:g} of {n['classes']}** "
                     f"and in their top 5 for **{n['judges_mean']['top5']:g} of {n['classes']}** on average "
                     f"(top-1 and top-5 counts: {each})")
        elif "independent_correct" in n:
            text += (f"; the independent judge puts it first for **{n['independent_correct']} of {n['classes']}** "
                     f"and in its top 5 for **{n['independent_top5']} of {n['classes']}**")
        lines.append(text + ".")
    lines += _correlation_trend(counts["variants"], reference)
    if reference:
        lines.append(
            f"Real test images, for comparison: the {reference['independent_classifier']} pixel classifier's "
            f"accuracy {format_percent(reference['independent_test_accuracy'])}; median r with their class's mean image "
            f"{reference['test_images_mean_image_correlation_median']:.2f}."
        )
    elif len(counts.get("judges", [])) > 1:
        lines.append(f"The judges are {', '.join(rst_text(name) for name in counts['judges'])}, each trained "
                     "separately; an image that only exploits the first network's weaknesses does not transfer to "
                     "them.")
    elif any("independent_correct" in n for n in counts["variants"].values()):
        lines.append(f"The judge is {rst_text(counts.get('judge', 'another ImageNet network'))}, trained "
                     "separately; an image that only exploits the first network's weaknesses does not transfer to it.")
    else:
        lines.append("No independent judge: the network's training set is not here, and no ImageNet judge fits it.")
    return lines


def _correlation_trend(variants: dict, reference: dict) -> list[str]:
    """Whether r with the class's mean image grows from the plain to the regularized images,
    and whether it reaches real test images' r: stated from the numbers, whichever way they go."""
    r = {name: n["mean_image_correlation_mean"] for name, n in variants.items()
         if isinstance(n.get("mean_image_correlation_mean"), (int, float))
         and math.isfinite(n["mean_image_correlation_mean"])}
    if "plain" not in r or "regularized" not in r:
        return []
    trend = "grows" if r["regularized"] > r["plain"] else "does not grow"
    line = f"Mean r {trend} from the plain ({r['plain']:.2f}) to the regularized images ({r['regularized']:.2f})"
    real = (reference or {}).get("test_images_mean_image_correlation_median")
    if real is not None:
        side = "below" if max(r.values()) < real else "at or above"
        line += f"; the best variant's mean r is {side} the median r of real test images ({real:.2f})"
    return [line + "."]


def fooling_key_numbers(table_csv, method: str, target: float, judge: str | None = None,
                        judges_csv=None) -> list[str]:
    """How many classes reached the target after PNG, the lowest confidence, and the judge; with
    several judges in ``judges_csv`` (one row per image and judge), each judge's top-1 and top-5
    counts and their mean."""
    table = _read_csv(table_csv, dtype={"class": str, "independent_prediction": str})
    reached = table["reached_target"].astype(bool)
    unit = "steps" if method == "gradient" else "generations"
    lines = [
        f"**{int(reached.sum())} of {len(table)}** classes at a confidence >= {format_percent(target, 2)} after saving as "
        f"PNG; the lowest is {format_percent_down(table['confidence_after_png'].min(), 3, geq='>=')}.",
    ]
    if reached.any():
        lines.append(f"The last class to reach it needed {int(table.loc[reached, 'iterations'].max())} {unit}.")
    judged = table["independent_prediction"].notna()
    if judged.all():
        agree = int((table["independent_prediction"] == table["class"]).sum())
        who = "The pixel classifier"
        if "independent_rank" in table and judge:
            who = f"The independent judge ({rst_text(judge)})"
        lines.append(f"{who} names the target class for {agree} of {len(table)} images"
                     + (f"; the target is in its top 5 for **{int((table['independent_rank'] < 5).sum())} of "
                        f"{len(table)}**." if judge else "."))
    verdicts = None if judges_csv is None or not judge else _read_csv(judges_csv, dtype={"judge": str})
    if verdicts is not None and verdicts["judge"].nunique() > 1:
        lines.append(_several_judges(verdicts, len(table)))
    return lines


def _several_judges(verdicts, total: int) -> str:
    """Each judge's top-1 and top-5 counts (rows: one per image and judge), and their mean."""
    counts = verdicts.groupby("judge", sort=False)[["top1", "top5"]].sum()
    each = "; ".join(f"{rst_text(name)} {int(row.top1)} and {int(row.top5)}" for name, row in counts.iterrows())
    return (f"All {len(counts)} judges, each trained separately (top-1 and top-5 counts of {total}): {each}; "
            f"mean **{counts['top1'].mean():g}** top-1 and **{counts['top5'].mean():g}** top-5.")


def dream_key_numbers(row_csv) -> list[str]:
    """Activation energy before and after, per image."""
    with open(row_csv, newline="") as f:  # the csv module: no pandas import in the chunk jobs
        rows = list(csv.DictReader(f))
    return [
        f"{rst_text(row['name'])}: energy (mean a^2 per layer, summed) at {rst_text(row['layers'])} "
        f"**{_num(float(row['energy_before']))} -> {_num(float(row['energy_after']))}** "
        f"(x{float(row['energy_ratio'] or 'nan'):.2f}), {row['octaves']} octaves at "
        f"{row['dream_width']}x{row['dream_height']} px."
        for row in rows
    ]


def _held(row) -> str:
    """How firmly the judge holds the photo's class (a CSV may predate the column)."""
    value = row.get("content_probability")
    return "" if is_missing(value) else f" at {float(value):.0%}"


def _rank(row) -> str:
    value = row.get("content_rank")
    return "" if is_missing(value) else f" (rank {int(value) + 1})"


def style_key_numbers(losses_csv) -> list[str]:
    """Initial and final style, content and total losses; the judge's content retention, style
    distance and whether the content was kept, where there is a judge; with several judges
    their means first, then each judge's."""
    row = _read_csv(losses_csv).iloc[0]
    smoothing = row.get("smoothing", "none")
    smoothed = "" if is_missing(smoothing) or smoothing == "none" else f", features smoothed by {rst_text(smoothing)}"
    # multiscale: scale<k>_size and scale<k>_evaluations per scale, smallest first
    scales = sorted({int(key[5:].split("_")[0]) for key in row.index if key.startswith("scale") and key.endswith("_size")})
    at_sizes = "" if len(scales) < 2 else (
        " (" + " + ".join(str(int(row[f"scale{k}_evaluations"])) for k in scales) + " at sizes "
        + " -> ".join(f"{int(row[f'scale{k}_size'])}" for k in scales) + " px, each from the previous result)")
    lines = [
        f"{rst_text(row['content'])} in the style of {rst_text(row['style'])}, {int(row['evaluations'])} "
        f"{row['optimizer']} evaluations{at_sizes} on {rst_text(row['backbone'])}; content layer(s) "
        f"{rst_text(row['content_layers'])}, style layers {rst_text(row['style_layers'])}{smoothed}:",
        f"style loss **{_num(row['style_loss_initial'])} -> {_num(row['style_loss_final'])}**, content loss "
        f"{_num(row['content_loss_initial'])} -> {_num(row['content_loss_final'])}, total "
        f"{_num(row['total_loss_initial'])} -> **{_num(row['total_loss_final'])}**.",
    ]
    several = _style_judges(row)
    if several:
        lines.append(
            f"The {len(several)} judges, {', '.join(rst_text(one['judge']) for one in several)}, each trained "
            f"separately and never optimized against, on average: content retention "
            f"**{row['content_retention']:.2f}**, style distance **{row['style_distance']:.2f}**; content kept by "
            f"**{int(row['content_kept_judges'])} of {len(several)}** (the scales as below).")
        lines += [_style_verdict(one, f"{rst_text(one['judge'])}:") for one in several]
    elif not is_missing(row.get("judge")) and not is_missing(row.get("style_distance")):
        lines.append(_style_verdict(row, f"The judge, {rst_text(row['judge'])}, trained separately and never "
                                         "optimized against:"))
    return lines


def _style_judges(row) -> list[dict]:
    """A row's per-judge measures, where several judges measured it (columns ``<name>__<slug>``)."""
    if is_missing(row.get("judges")):
        return []
    slugs = [key[len("judge__"):] for key in row.index if key.startswith("judge__")]
    return [{key[:-len(f"__{slug}")]: row[key] for key in row.index if key.endswith(f"__{slug}")} for slug in slugs]


def _style_verdict(row, who: str) -> str:
    """One judge's content retention (where the table has it: older ones do not), style
    distance and whether the photo's class was kept."""
    kept = str(row["content_kept"]).lower() == "true"
    retention = row.get("content_retention")
    retained = "" if is_missing(retention) else (
        f" content retention **{float(retention):.2f}** (the cosine of its pooled embeddings of the result and the "
        "photo, rescaled: 1 = the photo's, 0 = the style image's);")
    return (
        f"{who}{retained} style distance **{row['style_distance']:.2f}** (its Gram matrices; 1 = as far from the "
        f"style image as the content photo, 0 = the style image's); content kept: **{'yes' if kept else 'no'}** "
        f"(its top-1 for the photo, {rst_text(row['content_class'])}{_held(row)}, is {'' if kept else 'not '}in its "
        f"top 5 for the result{_rank(row)}; its top-1 for the result: {rst_text(row['result_class'])})."
    )
