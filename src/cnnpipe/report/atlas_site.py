"""The atlas's static site: ``index.html`` (the layers) -> a page per layer (a grid of its
units' x*) -> a page per unit (x*, the diverse set, top and bottom dataset examples with their
values and receptive-field boxes, the histogram).

Plain HTML with relative links (a copied folder or a cluster's web space serves it), no
JavaScript; every name that comes from a file or a layer is escaped (``html.escape``) and
every link is percent-encoded. Images are the files the atlas jobs wrote (one strip per unit
for the diverse set, one for the examples); the histogram is inline SVG, so no file at all.
Reads CSV and ``.npz`` only: no torch."""

from __future__ import annotations

import csv
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np

from cnnpipe.io.files import atomic_write_text
from cnnpipe.io.names import file_slug as slug

_STYLE = ("body{font-family:sans-serif;margin:1.5em;max-width:70em}img{image-rendering:pixelated}"
          "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
          ".grid a{display:inline-block;margin:3px;text-align:center;font-size:small;color:#333}"
          ".grid img{width:72px;height:72px;object-fit:cover;object-position:left}.note{color:#a33}")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _page(title: str, body: str, up: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n{up}<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def _link(href: str, text: str) -> str:
    return f'<a href="{quote(href)}">{html.escape(text)}</a>'


def _number(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.4g}"


def histogram_svg(counts: Sequence[int], edges: Sequence[float], width: int = 360, height: int = 120) -> str:
    """The unit's histogram as inline SVG bars, with its range below."""
    top = max(max(counts), 1)
    bar = width / len(counts)
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - height * c / top:.1f}" width="{bar - 1:.1f}" '
        f'height="{height * c / top:.1f}" fill="#4a7"><title>{int(c)} images in [{_number(edges[i])}, '
        f'{_number(edges[i + 1])}]</title></rect>' for i, c in enumerate(counts))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="histogram">{bars}</svg>'
            f"<br><small>{_number(edges[0])} … {_number(edges[-1])} ({int(sum(counts))} images)</small>")


def _examples_table(rows: Sequence[Mapping[str, str]]) -> str:
    lines = "".join(
        f"<tr><td>{int(r['rank']) + 1}</td><td style='text-align:left'>{html.escape(r['name'])}</td>"
        f"<td>{html.escape(r['value'])}</td><td>{html.escape(r['top'])}, {html.escape(r['left'])} – "
        f"{html.escape(r['bottom'])}, {html.escape(r['right'])}</td></tr>" for r in rows)
    return (f"<table><tr><th>rank</th><th>image</th><th>a<sup>k</sup></th><th>box (top, left – bottom, right)</th>"
            f"</tr>{lines}</table>")


def _members_table(values: Sequence[float], maximum: float) -> str:
    cells = []
    for m, value in enumerate(values):
        ratio = value / maximum if maximum > 0 else math.nan
        mark = "" if value > maximum else " <span class='note'>below the dataset maximum</span>"
        cells.append(f"<tr><td>{'x*' if m == 0 else m}</td><td>{_number(value)}</td><td>{_number(ratio)}</td>"
                     f"<td style='text-align:left'>{mark}</td></tr>")
    return ("<table><tr><th>member</th><th>a<sup>k</sup></th><th>÷ dataset max</th><th></th></tr>"
            + "".join(cells) + "</table>")


_VERDICT_NOTE = (
    "<p>This unit is a class score, so classifiers can say which class they see in its images. "
    "<b>What it shows:</b> whether another network (or a pixel classifier of another model family) finds the "
    "unit's class in x*, as an image made to fool only this network would not. <b>What it does not show:</b> that "
    "a person would see the class. Images can transfer between networks for reasons a person does not see, "
    "and a judge's error is not the image's fault. The network's own verdict only confirms that the ascent "
    "worked. Rank 0 means the judge's top-1 class is the unit's class.</p>")


def verdict_table(rows: Sequence[Mapping[str, str]]) -> str:
    """The judges' verdicts on a class unit's set, one row per judge and member."""
    if not rows:
        return ""
    lines = "".join(
        f"<tr><td style='text-align:left'>{html.escape(r['judge'])}</td>"
        f"<td>{'x*' if r['member'] == '0' else html.escape(r['member'])}</td>"
        f"<td style='text-align:left'>{html.escape(r['top1_name'])}</td><td>{html.escape(r['top1_probability'])}</td>"
        f"<td>{html.escape(r['unit_rank'])}</td><td>{html.escape(r['unit_probability'])}</td></tr>" for r in rows)
    return ("<h2>Verdicts on x* and the set</h2>" + _VERDICT_NOTE
            + "<table><tr><th>judge</th><th>member</th><th>top-1 class</th><th>its probability</th>"
            "<th>rank of the unit's class</th><th>its probability</th></tr>" + lines + "</table>")


def unit_page(network: str, layer: str, unit: int, *, strip: str, examples: str, members: Sequence[float],
              summary: Mapping[str, str], rows: Sequence[Mapping[str, str]], counts, edges, neighbours,
              verdicts: Sequence[Mapping[str, str]] = ()) -> str:
    """One unit's page; ``strip`` and ``examples`` are relative image links; ``verdicts`` are
    the unit's rows of a chunk's ``verdicts.csv`` (class units only)."""
    maximum = float(summary["maximum"])
    tops = [r for r in rows if r["kind"] == "top"]
    bottoms = [r for r in rows if r["kind"] == "bottom"]
    nav = " · ".join(_link(href, text) for href, text in neighbours)
    bottom = (_examples_table(bottoms) if bottoms else
              "<p>No bottom examples: this layer never goes below zero on the folder (after a ReLU the "
              "lowest images are silent ones, a tie that says nothing).</p>")
    body = f"""<p>{nav}</p>
<h2>x* and a diverse set</h2>
<p>The first image is x* = argmax<sub>x</sub> a<sup>k</sup>; the others excite the unit too while differing in
which channels fire together (the diversity term).</p>
<img src="{quote(strip)}" alt="x* and diverse set of unit {unit}">
{_members_table(members, maximum)}
{verdict_table(verdicts)}
<h2>Dataset examples</h2>
<p>Top row: the images that excite the unit most; bottom row: least, where the layer can go below zero. The
receptive field around the unit's strongest position is outlined in red on small images, and large ones are
cropped to it.</p>
<img src="{quote(examples)}" alt="dataset examples of unit {unit}">
<h3>Top</h3>{_examples_table(tops)}
<h3>Bottom</h3>{bottom}
<h2>Histogram of a<sup>k</sup> over the folder</h2>
<p>largest {html.escape(summary['maximum'])}, smallest {html.escape(summary['minimum'])},
mean {html.escape(summary['mean'])}</p>
{histogram_svg(counts, edges)}"""
    return _page(f"{network} · {layer} · unit {unit}", body)


def build_site(network: str, layers: Mapping[str, str | os.PathLike], chunks: Sequence[str | os.PathLike],
               index_path: str | os.PathLike, site_dir: str | os.PathLike, described: str) -> int:
    """Write ``index_path`` and the pages under ``site_dir``: ``layers`` maps each layer to its
    dataset pass folder, ``chunks`` are the chunk folders. Returns the number of unit pages."""
    index_path, site_dir = Path(index_path), Path(site_dir)
    root = index_path.parent
    members: dict[tuple[str, int], dict[int, float]] = {}
    strip_of: dict[tuple[str, int], Path] = {}
    verdicts: dict[tuple[str, int], list] = {}
    for chunk in map(Path, chunks):
        if (chunk / "verdicts.csv").exists():
            for row in _read_csv(chunk / "verdicts.csv"):
                verdicts.setdefault((row["layer"], int(row["unit"])), []).append(row)
        for row in _read_csv(chunk / "members.csv"):
            key = (row["layer"], int(row["unit"]))
            members.setdefault(key, {})[int(row["member"])] = float(row["activation"])
            strip_of[key] = chunk / slug(row["layer"]) / f"{row['unit']}.png"
    items, pages = [], 0
    for layer, folder in layers.items():
        folder = Path(folder)
        summaries = _read_csv(folder / "units.csv")
        examples: dict[int, list] = {}
        for row in _read_csv(folder / "examples.csv"):
            examples.setdefault(int(row["unit"]), []).append(row)
        arrays = np.load(folder / "activations.npz")
        units = [int(s["unit"]) for s in summaries if (layer, int(s["unit"])) in members]
        layer_dir = site_dir / slug(layer)
        cells = []
        for position, unit in enumerate(units):
            page = layer_dir / f"{unit}.html"
            rel = lambda target, base=page.parent: os.path.relpath(target, base)  # noqa: E731
            neighbours = [(rel(index_path), "atlas"), (rel(site_dir / f"{slug(layer)}.html"), f"layer {layer}")]
            if position > 0:
                neighbours.append((f"{units[position - 1]}.html", f"← unit {units[position - 1]}"))
            if position + 1 < len(units):
                neighbours.append((f"{units[position + 1]}.html", f"unit {units[position + 1]} →"))
            values = [members[(layer, unit)][m] for m in sorted(members[(layer, unit)])]
            atomic_write_text(page, unit_page(
                network, layer, unit, strip=rel(strip_of[(layer, unit)]), examples=rel(folder / "examples" / f"{unit}.png"),
                members=values, summary=summaries[unit], rows=examples.get(unit, []),
                counts=arrays["hist_counts"][unit], edges=arrays["hist_edges"][unit], neighbours=neighbours,
                verdicts=verdicts.get((layer, unit), ())))
            pages += 1
            thumb = os.path.relpath(strip_of[(layer, unit)], site_dir)
            cells.append(f'<a href="{quote(f"{slug(layer)}/{unit}.html")}"><img src="{quote(thumb)}" '
                         f'alt="x* of unit {unit}"><br>{unit}</a>')
        up = f"<p>{_link(os.path.relpath(index_path, site_dir), 'atlas')}</p>"
        atomic_write_text(site_dir / f"{slug(layer)}.html", _page(
            f"{network} · {layer}", f"<p>{len(units)} units: x* of each; a unit's page has the rest.</p>"
            f"<div class='grid'>{''.join(cells)}</div>", up))
        items.append(f"<li>{_link(os.path.relpath(site_dir / f'{slug(layer)}.html', root), layer)} "
                     f"({len(units)} units)</li>")
    atomic_write_text(index_path, _page(
        f"Atlas of {network}", f"<p>Every unit of the layers below: its x*, a diverse set of x*, and the images of "
        f"{html.escape(described)} that excite it most and least.</p><ul>{''.join(items)}</ul>"))
    return pages
