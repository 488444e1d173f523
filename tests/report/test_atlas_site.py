"""The atlas's static site: its pages say what the CSVs say, links are relative and resolve,
and names from files are shown as text."""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from cnnpipe.io.names import file_slug as slug
from cnnpipe.report.atlas_site import build_site

HOSTILE = ['<script>alert(1)</script>.png', 'a"b\'c&d.png', "x</td><td>y.png"]


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), "gray").save(path)


def synthetic_atlas(root: Path, layer: str = "blocks.4", units: int = 3) -> tuple[dict, list[Path]]:
    """A dataset pass folder and one chunk folder as the jobs write them, with hostile image names."""
    dataset, chunk = root / "dataset" / layer, root / "chunks" / "0"
    _write_csv(dataset / "units.csv", [{"unit": u, "maximum": 2.0 + u, "minimum": -1.0, "mean": 0.5}
                                       for u in range(units)])
    _write_csv(dataset / "examples.csv", [
        {"unit": u, "kind": kind, "rank": r, "image": r, "name": HOSTILE[r], "value": (3 - r) * (1 if kind == "top"
                                                                                              else -1),
         "top": 0, "left": 1, "bottom": 5, "right": 6}
        for u in range(units) for kind in ("top", "bottom") for r in range(3)])
    np.savez(dataset / "activations.npz", hist_counts=np.ones((units, 4), dtype=np.int64),
             hist_edges=np.tile(np.linspace(-1, 3, 5), (units, 1)))
    members = []
    for u in range(units):
        _png(dataset / "examples" / f"{u}.png")
        _png(chunk / slug(layer) / f"{u}.png")
        # member 1 of unit 0 stays below the dataset maximum (2.0)
        members += [{"layer": layer, "unit": u, "member": m, "activation": 10.0 - 9 * (u == 0 and m == 1)}
                    for m in range(2)]
    _write_csv(chunk / "members.csv", members)
    return {layer: dataset}, [chunk]


def _site(tmp_path: Path, **kwargs) -> Path:
    root = tmp_path / "atlas" / "net"
    layers, chunks = synthetic_atlas(root, **kwargs)
    pages = build_site("net <b>", layers, chunks, root / "index.html", root / "site", "a folder & more")
    assert pages == 3
    return root


def _links(page: Path) -> list[str]:
    return [unquote(link) for link in re.findall(r'(?:href|src)="([^"]+)"', page.read_text())]


def test_every_link_and_image_of_the_site_is_relative_and_resolves(tmp_path):
    root = _site(tmp_path)
    pages = sorted(root.rglob("*.html"))
    assert len(pages) == 1 + 1 + 3  # index, the layer, its units
    for page in pages:
        for link in _links(page):
            assert not link.startswith(("/", "http", "file:")), (page, link)
            assert (page.parent / link).resolve().is_file(), (page, link)


def test_names_from_files_are_escaped_and_members_below_the_data_are_marked(tmp_path):
    root = _site(tmp_path)
    text = (root / "site" / "blocks.4" / "0.html").read_text()
    assert "<script>" not in text and "</td><td>y" not in text
    for name in HOSTILE:
        assert html.escape(name) in text
    assert "net &lt;b&gt;" in text
    assert text.count("below the dataset maximum") == 1
    assert "below the dataset maximum" not in (root / "site" / "blocks.4" / "1.html").read_text()


def _table_rows(text: str, heading: str) -> list[list[str]]:
    part = text.split(f"<h3>{heading}</h3>")[1].split("</table>")[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in part.split("<tr>")[2:]]


def test_the_tiny_runs_unit_pages_match_its_csvs(tiny_run):
    root = tiny_run / "results" / "atlas" / "trained"
    members = list(csv.DictReader(open(next(iter(sorted((root / "chunks").iterdir()))) / "members.csv")))
    assert members
    checked = 0
    for layer in ("conv1", "conv2", "fc1"):
        examples = list(csv.DictReader(open(root / "dataset" / layer / "examples.csv")))
        summaries = list(csv.DictReader(open(root / "dataset" / layer / "units.csv")))
        assert len(list((root / "site" / layer).glob("*.html"))) == len(summaries)
        for summary in summaries:
            unit = summary["unit"]
            text = (root / "site" / layer / f"{unit}.html").read_text()
            tops = [r for r in examples if r["unit"] == unit and r["kind"] == "top"]
            rows = _table_rows(text, "Top")
            assert [(row[1], row[2]) for row in rows] == [(html.escape(r["name"]), r["value"]) for r in tops]
            assert f"largest {summary['maximum']}" in text
            checked += 1
    assert checked == 4 + 8 + 16


@pytest.mark.parametrize("layer", ["conv1", "fc1"])
def test_the_tiny_runs_member_values_are_on_the_pages(tiny_run, layer):
    root = tiny_run / "results" / "atlas" / "trained"
    for chunk in sorted((root / "chunks").iterdir()):
        for row in csv.DictReader(open(chunk / "members.csv")):
            if row["layer"] == layer:
                text = (root / "site" / layer / f"{row['unit']}.html").read_text()
                assert f"<td>{float(row['activation']):.4g}</td>" in text


def test_a_class_units_page_shows_its_verdicts_and_what_they_do_not_show(tmp_path):
    layers, chunks = synthetic_atlas(tmp_path, layer="logits", units=2)
    _write_csv(chunks[0] / "verdicts.csv", [
        {"layer": "logits", "unit": 0, "member": m, "judge": "judge <lite1>", "top1": 5, "top1_name": HOSTILE[0],
         "top1_probability": 0.61, "unit_rank": 3, "unit_probability": 0.02} for m in range(2)])
    build_site("net", layers, chunks, tmp_path / "index.html", tmp_path / "site", "photos")
    text = (tmp_path / "site" / "logits" / "0.html").read_text()
    rows = re.findall(r"<tr><td style='text-align:left'>(.*?)</td><td>(.*?)</td><td style='text-align:left'>(.*?)"
                      r"</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", text)
    assert rows == [("judge &lt;lite1&gt;", member, html.escape(HOSTILE[0]), "0.61", "3", "0.02")
                    for member in ("x*", "1")]
    assert "What it does not show" in text
    assert "Verdicts" not in (tmp_path / "site" / "logits" / "1.html").read_text()
