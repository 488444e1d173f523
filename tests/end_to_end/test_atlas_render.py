"""The atlas's site in a real browser (headless Chromium, as the report's test), and what an
atlas of an ImageNet network reruns when its settings or its folder change."""

from __future__ import annotations

import shutil

import pytest
import yaml
from pipeline import TINY, planned_jobs, snakemake
from test_report_render import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow


def _page_state(driver) -> dict:
    return driver.execute_script(
        "return {images: [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),"
        " links: [...document.links].map(a => a.href), title: document.title};")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_the_atlas_pages_load_their_images_resolve_and_their_links_work(browser, tiny_run, tmp_path):  # noqa: F811
    # A copy elsewhere: relative links must not depend on where the folder is.
    site = shutil.copytree(tiny_run / "results" / "atlas" / "trained", tmp_path / "copied atlas")
    seen, queue = set(), [(site / "index.html").resolve().as_uri()]
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        browser.get(url)
        state = _page_state(browser)
        assert state["title"], url
        assert all(ok for _, ok in state["images"]), (url, [src for src, ok in state["images"] if not ok])
        for link in state["links"]:
            assert link.startswith(site.resolve().as_uri()), (url, link)
            queue.append(link.split("#")[0])
    # the index, three layer pages and a page per unit (4 + 8 + 16)
    assert len(seen) == 1 + 3 + 28, len(seen)
    browser.get((site / "site" / "conv2" / "3.html").resolve().as_uri())
    browser.save_screenshot(str(tmp_path / "unit.png"))
    assert "unit 3" in browser.title


LITE = {"atlas": {"backbone": "efficientnet_lite0", "layers": ["blocks.1"], "max_units": 3, "image_size": 32,
                  "steps": 3, "diverse": 2, "top_n": 2, "per_job": 2}}


def test_an_imagenet_atlas_reruns_the_dataset_pass_for_new_images_and_the_ascent_for_a_diversity(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (40, 30), colour).save(folder / f"{i}.png")
    config = tmp_path / "lite.yaml"
    config.write_text(yaml.safe_dump({"atlas": {**LITE["atlas"], "folder": str(folder)}}))
    work = tmp_path / "work"
    snakemake(work, "--cores", "2", "atlas", configfiles=(TINY, config))
    index = work / "results" / "atlas" / "efficientnet_lite0" / "index.html"
    assert "blocks.1" in index.read_text()
    assert planned_jobs(snakemake(work, "--dry-run", "atlas", configfiles=(TINY, config))) == {}
    changed = tmp_path / "diversity.yaml"
    changed.write_text(yaml.safe_dump({"atlas": {**LITE["atlas"], "folder": str(folder), "diversity": 0.5}}))
    jobs = planned_jobs(snakemake(work, "--dry-run", "atlas", configfiles=(TINY, changed)))
    assert set(jobs) == {"atlas_chunk", "atlas_site", "atlas"}, jobs
    Image.new("RGB", (30, 30), "white").save(folder / "3.png")
    assert planned_jobs(snakemake(work, "--dry-run", "atlas", configfiles=(TINY, config))) == {
        "atlas_dataset": 1, "atlas_site": 1, "atlas": 1}
