"""The fooling stage: one image per class by each method of :mod:`cnnpipe.methods.fooling`,
saved as files, measured on those files (the CNN, and the independent judges or pixel
classifier), tabled and drawn.

The method's CSV has one row per class; its ``independent_*`` columns are the first judge's
verdict (the pixel classifier, or the first ImageNet judge of ``fooling.judge``). The judges'
CSV has one row per image and judge, every judge's verdict: ``class``, ``class_index``,
``judge``, ``prediction`` and ``prediction_probability`` (its top class and that class's
probability), ``probability`` (of the target class), ``rank`` (the target's, 0 = top-1),
``top1`` and ``top5``."""

from __future__ import annotations

import logging

import pandas as pd

from cnnpipe.io.files import save_figure, write_csv
from cnnpipe.judges.classifier import load_classifier
from cnnpipe.judges.imagenet import target_ranks
from cnnpipe.judges.verdicts import count_text, judge_counts, judge_name, judge_verdicts
from cnnpipe.methods.fooling import FoolingResult, evolve_fooling, gradient_fooling, saved_as_files
from cnnpipe.report.formatting import format_percent_down
from cnnpipe.report.plots import image_grid
from cnnpipe.runtime.device import seed_everything, select_device

log = logging.getLogger(__name__)

METHODS = ("gradient", "evolution")
CSV_COLUMNS = [
    "class",
    "confidence",
    "confidence_after_png",
    "independent_prediction",
    "independent_probability",
    "independent_rank",
    "predicted_after_png",
    "reached_target",
    "iterations",
    "class_index",
]


def fooling_table(result: FoolingResult, class_names, independent) -> pd.DataFrame:
    """One row per target class; the independent judge (pixel classifier or ImageNet judge, if
    any) judges the images read back from PNG: its prediction, that prediction's probability,
    and the target class's rank among its predictions (0 = top-1). ``class_names`` names every
    class of the network. Of a list of judges, the first judges here (:func:`fooling_verdicts`:
    every judge)."""
    if isinstance(independent, (list, tuple)):
        independent = independent[0] if independent else None
    columns = {
        "class": [str(class_names[c]) for c in result.targets],
        "confidence": [round(float(v), 6) for v in result.confidence],
        "confidence_after_png": [round(float(v), 6) for v in result.confidence_after_png],
        "predicted_after_png": [str(class_names[int(i)]) for i in result.predicted_after_png],
        "reached_target": [bool(v) for v in result.reached],
        "iterations": [int(v) for v in result.iterations],
        "class_index": list(result.targets),
    }
    if independent is not None:
        proba = independent.predict_proba(result.loaded)
        picks = proba.argmax(axis=1)
        columns["independent_prediction"] = [str(class_names[int(i)]) for i in picks]
        columns["independent_probability"] = [round(float(proba[j, i]), 6) for j, i in enumerate(picks)]
        columns["independent_rank"] = [int(r) for r in target_ranks(proba, result.targets)]
    return pd.DataFrame(columns, columns=CSV_COLUMNS)


def fooling_verdicts(result: FoolingResult, class_names, judges) -> pd.DataFrame:
    """Every judge's verdict on the images read back from PNG, one row per (class, judge)."""
    verdicts = judge_verdicts(judges, result.loaded, result.targets, class_names)
    image = verdicts.pop("image").to_numpy()
    targets = [int(result.targets[j]) for j in image]
    verdicts.insert(0, "class_index", targets)
    verdicts.insert(0, "class", [str(class_names[c]) for c in targets])
    return verdicts


def fooling_figure(result: FoolingResult, table: pd.DataFrame, independent_kind: str | None, judge: bool = False,
                   verdicts: pd.DataFrame | None = None):
    """The PNG-loaded images, labelled with the target class; under each: the network's
    predicted class and its confidence in the target class (after PNG), and the pixel
    classifier's (or, with ``judge``, the first ImageNet judge's) prediction where there is
    one. Several judges' ``verdicts`` (:func:`fooling_verdicts`): each one's top-5 count and
    their mean in the title."""
    names = table["class"].tolist()
    k = len(names)
    labels = [f"target {name}" for name in names]
    sublabels = []
    for name, row in zip(names, table.itertuples()):
        # The confidence is always that of the target class; name it when the CNN picks another.
        cnn = f"CNN {row.predicted_after_png}" + ("" if row.predicted_after_png == name else f"; {name}:")
        judged = f" | {'judge' if judge else 'pix'} {row.independent_prediction}" if independent_kind else ""
        sublabels.append(f"{cnn} {format_percent_down(row.confidence_after_png)}{judged}")
    reached = int(table["reached_target"].sum())
    how = {
        "gradient": "gradient ascent from uniform noise",
        "evolution": "evolving CPPN images (MAP-Elites over the classes)",
    }[result.method]
    unit = "steps" if result.method == "gradient" else "generations"
    budget = result.extra.get("budget", "?")
    hits = [n for n, ok in zip(result.iterations, result.reached.tolist()) if ok]
    when = f", reached within {max(hits)} {unit}" if hits else ""
    under = "under each image: the network's prediction and confidence"
    several = verdicts is not None and verdicts["judge"].nunique() > 1
    if independent_kind and judge and several:
        under += (f" | the first judge's prediction ({independent_kind}); the target is in the top 5 of the judges, "
                  f"trained separately, for {count_text(judge_counts(verdicts), k, top1=False)}")
    elif independent_kind and judge:
        top5 = int((table["independent_rank"] < 5).sum())
        under += (f" | the judge's prediction ({independent_kind}, trained separately; the target is in its "
                  f"top 5 for {top5}/{k})")
    elif independent_kind:
        under += f" | the {independent_kind} pixel classifier's prediction"
    title = (
        f"Fooling images by {how}\n"
        f"{reached}/{k} classes at \u2265 {format_percent_down(result.target)} confidence after saving as PNG"
        f"{when} (budget {budget} {unit})\n{under}"
    )
    return image_grid(result.loaded, labels, title, ncols=5 if k > 5 else k, sublabels=sublabels)


def target_confidence(method: str, cfg: dict) -> float:
    """The configured confidence each method aims for (``fooling`` config section)."""
    if method not in METHODS:
        raise ValueError(f"fooling method must be one of {list(METHODS)}, got {method!r}")
    return cfg["target_confidence"] if method == "gradient" else cfg["evolution_target"]


def _log_results(method: str, result: FoolingResult, table: pd.DataFrame, verdicts: pd.DataFrame) -> None:
    judged = not verdicts.empty
    log.info("%s fooling: %d/%d classes at the target %.4g after PNG; min confidence %.6f",
             method, int(table["reached_target"].sum()), len(table), result.target,
             float(table["confidence_after_png"].min()))
    for row in table.to_dict("records"):
        verdict = (f"; independent judge says {row['independent_prediction']} (target at rank "
                   f"{row['independent_rank']})") if judged else ""
        log.info("  class %s: confidence %.6f (after PNG %.6f), target reached: %s after %d iterations%s",
                 row["class"], row["confidence"], row["confidence_after_png"], row["reached_target"],
                 row["iterations"], verdict)
    if judged:
        log.info("  judges: %s", count_text(judge_counts(verdicts), len(table)))
    if "nodes" in result.extra:
        log.info("  CPPN sizes: nodes %s, connections %s", result.extra["nodes"], result.extra["connections"])


def run_fooling(
    method: str,
    cfg: dict,
    *,
    seed: int,
    device_name: str,
    csv_path,
    png_path,
    image_dir,
    judges_csv=None,
    model_path=None,
    data_path=None,
    cache_dir=None,
) -> pd.DataFrame:
    """Rule `fooling`: one method's images (``image_dir/<class>.png``), its CSV, every judge's
    verdicts (``judges_csv``, where given) and its grid; every number after the PNG trip is
    measured on those files."""
    target = target_confidence(method, cfg)
    seed_everything(seed)
    device = select_device(device_name)
    net = load_classifier(cfg, key="fooling", model_path=model_path, data_path=data_path, cache_dir=cache_dir)
    model = net.model.to(device)
    log.info("%s fooling: %s, %d classes on %s images", method, net.backbone, len(net.targets),
             "x".join(map(str, net.image_shape)))
    if method == "gradient":
        result = gradient_fooling(
            model, net.image_shape, target=target, steps=cfg["gradient_steps"],
            lr=cfg["gradient_lr"], layer=net.layer, targets=net.targets, seed=seed,
        )
    else:
        result = evolve_fooling(
            model, net.image_shape, target=target, generations=cfg["generations"],
            offspring=cfg["offspring"], hidden=cfg["cppn_nodes"], span=cfg["cppn_span"],
            sigma=cfg["mutation_sigma"], adapt=cfg["adapt_sigma"], targets=net.targets, seed=seed,
        )
    result = saved_as_files(model, result, image_dir, net.class_names)
    independent = net.independent(cfg["independent_classifier"], seed)
    table = fooling_table(result, net.class_names, independent)
    verdicts = fooling_verdicts(result, net.class_names, independent)
    _log_results(method, result, table, verdicts)
    write_csv(csv_path, table)
    if judges_csv is not None:
        write_csv(judges_csv, verdicts)
    judge = bool(independent) and net.data is None
    kind = None if not independent else judge_name(independent[0]) if judge else cfg["independent_classifier"]
    save_figure(fooling_figure(result, table, kind, judge, verdicts), png_path)
    return table
