"""DeepDream's summary: every photo's row in one CSV, and a figure of the first photos before
and after. Torch-free (PIL, numpy, pandas, matplotlib), so the summary job starts fast."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from cnnpipe.io.files import save_figure, write_csv
from cnnpipe.io.images import load_image


def letterbox(image: Image.Image, box: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``box`` (H, W) and centred on white, as [3, H, W] in [0, 1]."""
    height, width = box
    padded = ImageOps.pad(image.convert("RGB"), (width, height), method=Image.Resampling.BILINEAR, color="white")
    return np.asarray(padded, dtype=np.float32).transpose(2, 0, 1) / 255


def write_summary(
    csv_paths: Sequence[str | os.PathLike],
    originals: Sequence[str | os.PathLike],
    dreams: Sequence[str | os.PathLike],
    output_csv: str | os.PathLike,
    output_png: str | os.PathLike,
    *,
    max_images: int = 6,
    thumb: int = 480,
) -> pd.DataFrame:
    """All per-image rows in one CSV (sorted by name), and a figure of the first
    ``max_images`` photos: original and dreamed side by side, with their energies."""
    if not csv_paths:
        raise ValueError("write_summary: no DeepDream results to summarize")
    if not len(csv_paths) == len(originals) == len(dreams):
        raise ValueError("write_summary: one CSV, original and dream per image")
    frames = [pd.read_csv(path) for path in csv_paths]
    table = pd.concat(frames, ignore_index=True)
    order = np.argsort(table["name"].astype(str).to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    write_csv(output_csv, table)

    shown = [int(i) for i in order[:max_images]]
    pairs = [(load_image(originals[i]), load_image(dreams[i])) for i in shown]
    aspect = min(2.0, max(original.width / original.height for original, _ in pairs))
    box = (round(thumb / aspect), thumb)
    panels, labels, sublabels = [], [], []
    for (original, dreamed), i in zip(pairs, shown):
        row = frames[i].iloc[0]
        panels += [letterbox(original, box), letterbox(dreamed, box)]
        labels += [f"{row['name']}: photo", f"{row['name']}: DeepDream"]
        sublabels += [f"energy {row['energy_before']:.3g}",
                      f"energy {row['energy_after']:.3g} (x{row['energy_after'] / row['energy_before']:.2f})"]
    first = frames[shown[0]].iloc[0]
    octaves = int(first["octaves"])
    title = (f"DeepDream with {first['backbone']} at {first['layers']}\n"
             f"{octaves} octave{'s' if octaves != 1 else ''} x {first['steps']} steps; energy = mean a\u00b2")
    if len(table) > len(shown):
        title += f"; first {len(shown)} of {len(table)} images"
    from cnnpipe.report.plots import image_grid  # matplotlib: only when drawing

    fig = image_grid(np.stack(panels), labels, title, ncols=2, sublabels=sublabels)
    save_figure(fig, output_png, dpi=240)
    return table
