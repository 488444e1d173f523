"""What the style stage's judges say about one result: style distance
(:mod:`cnnpipe.judges.style_distance`), content retention, whether the photo's class is kept,
per judge, and the mean over several judges.

**Content retention** compares the judge's pooled embeddings (:meth:`ImageNetJudge.embed`, the
features its final classifier reads): with c(a, b) their cosine,

    retention = (c(result, photo) - c(style, photo)) / (1 - c(style, photo))

so 1 = the photo's direction, 0 = no nearer the photo than the style image is (it may be
negative: farther than the style image). A blend of style images takes the weighted mean of
the style images' cosines with the photo (the blend's weights) as c(style, photo). Where the
style image already points where the photo does (1 - c(style, photo) < 1e-6) the scale has
no length, and retention is undefined (NaN). Unlike "content kept" (the photo's top-1 class
among the result's top 5), it does not flip when a weakly held class drops a few ranks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from cnnpipe.judges.imagenet import ImageNetJudge, content_kept, target_ranks, top_classes
from cnnpipe.judges.style_distance import style_distance
from cnnpipe.methods.style.names import blend_weights
from cnnpipe.networks.build import imagenet_class_names

# Below this, 1 - c(style, photo) leaves retention undefined.
DEGENERATE = 1e-6


def retention(result_cosine: float, style_cosine: float) -> float:
    """The rescaled cosine of the module docstring: 1 at the photo's, 0 at the style image's."""
    span = 1.0 - style_cosine
    return float("nan") if span < DEGENERATE else (result_cosine - style_cosine) / span


def content_retention(judge: ImageNetJudge, content: Tensor, style: Tensor | Sequence[Tensor], result: Tensor,
                      style_weights: Sequence[float] | None = None) -> float:
    """The content retention of ``result`` [3, H, W] for the photo ``content``, against
    ``style`` (one image, or a blend's list with ``style_weights``), each image embedded at the
    judge's size."""
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    shares = blend_weights(style_weights, len(styles))
    embedded = [judge.embed(torch.as_tensor(image).float()[None])[0].double() for image in (content, result, *styles)]
    photo, got, *style_embeddings = embedded

    def cosine(a: Tensor, b: Tensor) -> float:
        return float(torch.nn.functional.cosine_similarity(a, b, dim=0))

    style_cosine = sum(w * cosine(e, photo) for w, e in zip(shares, style_embeddings))
    return retention(cosine(got, photo), style_cosine)


def judge_result(judge: ImageNetJudge, content: Tensor, style: Tensor | Sequence[Tensor], result: Tensor,
                 style_weights: Sequence[float] | None = None) -> dict:
    """One judge's measures of one result [3, H, W] (best read back from its PNG): the mean
    ``style_distance`` over the judge's style layers and each layer's (``style_distance_<layer>``),
    ``content_retention``, ``content_kept``, the judge's top-1 class for the content photo
    (``content_class``) with its probability for the photo (``content_probability``: how firmly
    the judge holds it) and its rank for the result (``content_rank``, 0 = top-1; kept = rank
    below 5), and the judge's top-1 for the result. A blend's ``style`` is a list of images
    with ``style_weights``."""
    distances = style_distance(judge, result, style, content, weights=style_weights)
    proba = judge.predict_proba(torch.stack([content, result]))
    names = imagenet_class_names()
    row = {"judge": judge.name, "style_distance": distances.pop("mean")}
    row.update({f"style_distance_{layer}": value for layer, value in distances.items()})
    row["content_retention"] = content_retention(judge, content, style, result, style_weights)
    first = top_classes(proba, 1)[:, 0]
    row.update(content_kept=bool(content_kept(proba[0], proba[1])), content_class=names[first[0]],
               content_probability=float(proba[0, first[0]]),
               content_rank=int(target_ranks(proba[1:], [first[0]])[0]), result_class=names[first[1]])
    return row


def judges_result(judges: Sequence[ImageNetJudge], content: Tensor, style, result: Tensor,
                  style_weights: Sequence[float] | None = None) -> dict:
    """Every judge's :func:`judge_result`, as one CSV row. One judge: its row as it is. Several:
    the headline columns are the mean over the judges (``style_distance``,
    ``content_retention``), ``content_kept`` is whether every judge kept the class and
    ``content_kept_judges`` how many did, ``judge`` joins their names with " + ", the
    per-class columns are left empty; each judge's own columns follow as
    ``<column>__<judge's slug>`` (e.g. ``content_retention__efficientnet_lite0``)."""
    rows = [judge_result(judge, content, style, result, style_weights) for judge in judges]
    if len(rows) == 1:
        return rows[0]
    combined = {
        "judge": " + ".join(row["judge"] for row in rows),
        "judges": len(rows),
        "style_distance": float(np.mean([row["style_distance"] for row in rows])),
        "content_retention": float(np.mean([row["content_retention"] for row in rows])),
        "content_kept": all(row["content_kept"] for row in rows),
        "content_kept_judges": sum(bool(row["content_kept"]) for row in rows),
        "content_class": None, "content_probability": None, "content_rank": None, "result_class": None,
    }
    for judge, row in zip(judges, rows):
        combined.update({f"{key}__{judge.spec.slug}": value for key, value in row.items()})
    return combined


def each_judge(row) -> list[dict]:
    """A CSV row's per-judge measures (``judges_result``): [{judge, style_distance,
    content_retention, content_kept, ...}] for several judges, [] for one or none."""
    judges = row.get("judges")
    try:
        count = int(judges)
    except (TypeError, ValueError):
        return []
    slugs = [key[len("judge__"):] for key in row.keys() if str(key).startswith("judge__")]
    out = []
    for slug in slugs[:count]:
        out.append({key[:-len(f"__{slug}")]: row[key] for key in row.keys() if str(key).endswith(f"__{slug}")})
    return out
