"""Verdicts on the x* of class units: for a layer that is the network's class scores, which
class other classifiers (and the network itself) see in each member of a unit's set.

Judges, each a name and a function from images [N, C, H, W] in [0, 1] to probabilities:
the network itself (softmax of its scores: it agrees with its own ascent almost by
construction, so this says only that the ascent worked); for an ImageNet network an
independent ImageNet judge (``atlas.judge``, :class:`cnnpipe.judges.imagenet.ImageNetJudge`);
for the trained CNN a pixel classifier fitted on its training images
(:mod:`cnnpipe.judges.pixels`). The images are judged as the site shows them, rounded to 8
bits. Written by each chunk as ``verdicts.csv``; the pages show them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from cnnpipe.judges.verdicts import judge_verdicts

VERDICT_COLUMNS = ("layer", "unit", "member", "judge", "top1", "top1_name", "top1_probability", "unit_rank",
                   "unit_probability")
# A judge: (name shown on the page, images [N, C, H, W] in [0, 1] -> probabilities [N, classes]).
Judge = tuple[str, Callable[[Tensor], np.ndarray]]


def is_class_layer(model: nn.Module, target: str) -> bool:
    """Whether the module ``target`` (a resolved name) gives the network's class scores: the
    trained CNN's ``logits``, a backbone's ``logits`` alias (its last linear layer)."""
    aliases = getattr(model, "layer_aliases", None)
    scores = aliases.get("logits") if aliases is not None else "logits"
    return scores is not None and target == scores


def own_judge(model: nn.Module, name: str = "the network itself") -> Judge:
    """The network's own softmax over its class scores."""
    from cnnpipe.runtime.device import model_device

    @torch.no_grad()
    def predict(images: Tensor) -> np.ndarray:
        return torch.softmax(model(images.to(model_device(model))).float(), dim=1).cpu().numpy()

    return name, predict


class _Named:
    """A (name, predict) judge as :func:`cnnpipe.judges.verdicts.judge_verdicts` takes one."""

    def __init__(self, judge: Judge):
        self.name, self.predict_proba = judge


class _IndexNames:
    """Class "names" that are the indices themselves, so a verdict's prediction is its index."""

    def __getitem__(self, index: int) -> str:
        return str(index)


def class_verdicts(layer: str, units: Sequence[int], images: Tensor, judges: Sequence[Judge],
                   class_names: Sequence[str] | None = None) -> list[dict]:
    """One row per unit, member and judge: the judge's top-1 class and probability for the
    member (images [U, k, C, H, W] in [0, 1], rounded to 8 bits first, as the PNG) and the
    rank (0 = top-1) and probability of the unit's own class (the judges' shared verdicts,
    :func:`cnnpipe.judges.verdicts.judge_verdicts`)."""
    k = images.shape[1]
    shown = (images.flatten(0, 1).clamp(0, 1) * 255).round() / 255
    targets = np.repeat(np.asarray(units, dtype=np.int64), k)
    table = judge_verdicts([_Named(judge) for judge in judges], shown, targets, _IndexNames())
    rows = []
    for row in table.itertuples(index=False):
        top = int(row.prediction)
        rows.append({"layer": layer, "unit": int(targets[row.image]), "member": int(row.image) % k,
                     "judge": row.judge, "top1": top, "top1_name": class_names[top] if class_names else str(top),
                     "top1_probability": round(float(row.prediction_probability), 4), "unit_rank": int(row.rank),
                     "unit_probability": round(float(row.probability), 4)})
    return rows


def chunk_judges(model: nn.Module, settings: Mapping, *, data_path=None, cache_dir=None) -> list[Judge]:
    """The judges of a chunk's class units: the network itself; the ImageNet judge
    (``settings["judge"]``: a spec or a list of specs) where one is set; for the trained CNN with its training data given,
    a logistic-regression pixel classifier fitted on it."""
    judges = [own_judge(model)]
    specs = settings.get("judge") or []
    for spec in specs if isinstance(specs, list) else [specs]:  # one spec, or a list of them
        from cnnpipe.judges.imagenet import ImageNetJudge

        judge = ImageNetJudge(spec, cache_dir=cache_dir)
        judges.append((f"judge {judge.kind}", judge.predict_proba))
    if settings["backbone"] == "trained" and data_path is not None:
        from cnnpipe.data.prepare import load_prepared
        from cnnpipe.judges.pixels import fit_on_prepared

        pixels = fit_on_prepared(load_prepared(data_path), "logistic", num_classes=model.logits.out_features)
        judges.append(("pixel classifier (logistic)", pixels.predict_proba))
    return judges


def class_names_of(model: nn.Module, settings: Mapping) -> list[str] | None:
    """ImageNet's class names for a network with its 1000 classes; None (indices) otherwise."""
    if settings["backbone"] == "trained" or getattr(model, "layer_aliases", None) is None:
        return None
    from cnnpipe.networks.build import imagenet_class_names

    scores = model.get_submodule(model.layer_aliases["logits"])
    return imagenet_class_names() if getattr(scores, "out_features", None) == 1000 else None
