"""Every independent judge's verdict on images made for given classes, as one long table, and
the counts per judge and their mean over the judges (MACO's transferability protocol scores
images by several separately trained networks).

A judge is anything with ``predict_proba`` and ``kind``: an ImageNet judge
(:class:`cnnpipe.judges.imagenet.ImageNetJudge`, named by its spec's label) or the pixel
classifier (:class:`cnnpipe.judges.pixels.PixelClassifier`, named by its kind)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cnnpipe.judges.imagenet import target_ranks

# One row per image and judge.
VERDICT_COLUMNS = ["judge", "prediction", "prediction_probability", "probability", "rank", "top1", "top5"]


def judge_name(judge) -> str:
    """The name a judge has in tables and captions."""
    return str(judge.name if hasattr(judge, "name") else judge.kind)


def judge_verdicts(judges: Sequence, images, targets, class_names) -> pd.DataFrame:
    """One row per image and judge (judges in their order, each over all images): the judge's
    name, its prediction (a class name) and that prediction's probability, its probability of
    the image's target class ``targets[j]``, the target's rank among its predictions
    (0 = top-1) and whether it is its top-1 / among its top 5. ``image`` numbers the images."""
    targets = np.asarray(targets, dtype=np.int64)
    frames = []
    for judge in judges:
        proba = np.asarray(judge.predict_proba(images))
        picks = proba.argmax(axis=1)
        ranks = target_ranks(proba, targets)
        frames.append(pd.DataFrame({
            "image": np.arange(len(targets)),
            "judge": judge_name(judge),
            "prediction": [str(class_names[int(i)]) for i in picks],
            "prediction_probability": [round(float(proba[j, i]), 6) for j, i in enumerate(picks)],
            "probability": [round(float(proba[j, c]), 6) for j, c in enumerate(targets)],
            "rank": ranks.astype(int),
            "top1": ranks == 0,
            "top5": ranks < 5,
        }))
    if not frames:
        return pd.DataFrame(columns=["image", *VERDICT_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def judge_counts(verdicts: pd.DataFrame) -> dict:
    """Per judge (in its order): top-1 and top-5 counts and the mean probability of the target,
    as {"judges": {name: {...}}, "mean": {"top1": ..., "top5": ...}}: the mean counts over the
    judges. Empty where there are no verdicts."""
    if verdicts.empty:
        return {}
    each = {}
    for name, group in verdicts.groupby("judge", sort=False):
        each[str(name)] = {"top1": int(group["top1"].sum()), "top5": int(group["top5"].sum()),
                           "probability_mean": round(float(group["probability"].mean()), 4)}
    mean = {key: round(float(np.mean([numbers[key] for numbers in each.values()])), 2) for key in ("top1", "top5")}
    return {"judges": each, "mean": mean}


def count_text(counts: dict, total: int, *, top1: bool = True) -> str:
    """``judge 8/10 top-1, 9/10 top-5; ...`` and, for several judges, their mean."""
    def numbers(values: dict) -> str:
        text = f"{values['top5']:g}/{total} top-5"
        return f"{values['top1']:g}/{total} top-1, {text}" if top1 else text

    parts = [f"{name} {numbers(values)}" for name, values in counts["judges"].items()]
    if len(parts) > 1:
        parts.append(f"mean {numbers(counts['mean'])}")
    return "; ".join(parts)
