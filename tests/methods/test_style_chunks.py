"""Style transfer in chunks of ``style.per_job`` pairs (issue 13): one process per chunk with the
backbone and the judge loaded once, results byte-identical whatever the chunk size, adding a
pair or editing an image reruns one chunk, and a bad image fails its own pair only."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml
from pipeline import TINY, planned_jobs, planned_resources, snakemake
from probes import visible_files
from test_style import write_png

from cnnpipe.runtime.chunks import ERROR_SUFFIX
from cnnpipe.stages import style
from cnnpipe.workflow.chunks import assign_chunks

# Small and quick, but the real path: EfficientNet-Lite0 with the Lite1 judge.
SETTINGS = {"backbone": "efficientnet_lite0", "content_layers": [], "style_layers": [], "content_weight": 1.0,
            "style_weight": 20.0, "tv_weight": 1.0, "optimizer": "lbfgs", "steps": 4, "lr": None, "init": "noise",
            "preserve_color": False, "smoothing": "none", "smoothing_temperature": 1.0,
            "judge": "efficientnet_lite1", "image_size": 32, "style_scale": 1.0}
# What a pair leaves in its chunk's folder, by the extension the publishing rule reads.
PAIR_FILES = ("png", "figure.png", "csv", "rst", "log")


def test_a_chunk_gives_each_pair_what_a_job_of_its_own_gives(tmp_path, caplog):
    """run_style_chunk (networks loaded once, reseeded per pair) against run_pair (a process's
    worth of loading per pair): the same bytes, the chunk order does not matter, and a corrupt
    image costs only its own pair, with an .error that names the file."""
    torch.set_num_threads(1)
    caplog.set_level(logging.INFO)  # as a job's log has it (cnnpipe.runtime.logs.job_logging)
    contents = [write_png(tmp_path / "in" / f"content {i}.png", 24 + 4 * i, 32, seed=i) for i in range(2)]
    style_png = write_png(tmp_path / "in" / "stil ü.png", 40, 28, seed=7)
    broken = tmp_path / "in" / "kaputt.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    pairs = {f"content {i}__stil ü": (str(path), str(style_png)) for i, path in enumerate(contents)}
    # the broken pair in the middle: the pair after it must not notice
    order = ["content 1__stil ü", "kaputt__stil ü", "content 0__stil ü"]
    pairs["kaputt__stil ü"] = (str(broken), str(style_png))
    folder = tmp_path / "chunk"
    results = style.run_style_chunk({name: pairs[name] for name in order}, folder, SETTINGS, seed=3, device="cpu")
    assert sorted(results) == ["content 0__stil ü", "content 1__stil ü"]
    assert (folder / f"kaputt__stil ü{ERROR_SUFFIX}").read_text().count("kaputt.png") >= 1
    assert "kaputt.png" in (folder / "kaputt__stil ü.log").read_text()  # the traceback, in its own log
    assert not (folder / "kaputt__stil ü.png").exists() and not (folder / "kaputt__stil ü.csv").exists()
    for index, path in enumerate(contents):
        name = f"content {index}__stil ü"
        assert all((folder / f"{name}.{ext}").is_file() for ext in PAIR_FILES), name
        assert not (folder / f"{name}{ERROR_SUFFIX}").exists()
        log = (folder / f"{name}.log").read_text()
        assert f"{name}: done" in log and "kaputt" not in log  # only its own lines
        alone = tmp_path / "alone" / name
        style.run_pair(path, style_png, SETTINGS, seed=3, device="cpu", progress=False,
                       output_image=alone / "x.png", output_figure=alone / "fig.png", output_csv=alone / "x.csv")
        assert (folder / f"{name}.png").read_bytes() == (alone / "x.png").read_bytes(), name
        assert (folder / f"{name}.figure.png").read_bytes() == (alone / "fig.png").read_bytes(), name
        assert (folder / f"{name}.csv").read_bytes() == (alone / "x.csv").read_bytes(), name
        assert "style loss" in (folder / f"{name}.rst").read_text()


# --------------------------------------------------------------------------- the workflow

# The tiny config's style section, smaller still: one pair takes about a second.
FAST = {"image_size": 24, "steps": 3}


def pair_images(folder: Path, contents: int, styles: int = 1) -> tuple[list[Path], list[Path]]:
    return ([write_png(folder / f"c{i}.png", 24, 20 + 2 * i, seed=i) for i in range(contents)],
            [write_png(folder / f"s{i}.png", 30, 30, seed=100 + i) for i in range(styles)])


def style_config(tmp_path: Path, pairs: list[tuple[Path, Path]], per_job: int, tag: str = "") -> tuple[Path, Path]:
    tiny = yaml.safe_load(TINY.read_text())["style"]
    override = tmp_path / f"style_{per_job}{tag}.yaml"
    override.write_text(yaml.safe_dump({"style": {
        **tiny, **FAST, "per_job": per_job,
        "pairs": [{"content": str(content), "style": str(style_image)} for content, style_image in pairs]}},
        allow_unicode=True))
    return (TINY, override)


def pair_name(content: Path, style_image: Path) -> str:
    return f"{content.stem}__{style_image.stem}"


def published(work: Path, names) -> dict[str, bytes]:
    """Every published file of the pairs ``names``, by path under results/."""
    results = work / "results"
    paths = [path for name in names for path in (f"style/{name}.png", f"style/figures/{name}.png",
                                                 f"style/losses/{name}.csv", f"captions/style/{name}.rst")]
    return {path: (results / path).read_bytes() for path in paths}


@pytest.mark.e2e
@pytest.mark.slow
def test_style_results_are_byte_identical_whatever_the_chunk_size_and_one_pair_reruns_one_chunk(tmp_path):
    contents, styles = pair_images(tmp_path / "images", 5, 2)
    pairs = [(content, styles[0]) for content in contents]
    names = [pair_name(*pair) for pair in pairs]
    targets = [f"results/style/{name}.png" for name in names]
    outputs = {}
    for per_job in (1, 3):
        work = tmp_path / f"work{per_job}"
        configs = style_config(tmp_path, pairs, per_job)
        run = snakemake(work, "--cores", "2", *targets, configfiles=configs)
        chunks = assign_chunks(names, per_job)
        assert len(chunks) == (5 if per_job == 1 else 2)
        assert planned_jobs(run) == {"style_chunk": len(chunks), "style_pair": 5}
        assert not (work / "results" / "style" / "chunks").exists()  # the chunks' folders are temporary
        outputs[per_job] = published(work, names)
        logs = work / "results" / "logs" / "style"
        assert len(visible_files(logs / "chunks")) == len(chunks)
        for name in names:
            log = (logs / f"{name}.log").read_text()
            assert f"{name}: done" in log and all(f"{other}: done" not in log for other in names if other != name)
        for chunk, members in chunks.items():
            log = (logs / "chunks" / f"{chunk}.log").read_text()
            # where the start-up went, once per chunk, and every pair of the chunk done
            for step in ("importing torch and cnnpipe", "network efficientnet_lite0 loaded",
                         "judge efficientnet_lite1 loaded"):
                assert log.count(step) == 1, (step, log)
            assert all(f"{name}: done" in log for name in members)
            assert f"chunk: {len(members)} pair(s) in" in log
    assert outputs[1] == outputs[3]

    # One pair more: the chunk that holds it runs again, with its pairs' publishing; no other.
    work = tmp_path / "work3"
    grown = [*pairs, (contents[0], styles[1])]
    grown_names = [pair_name(*pair) for pair in grown]
    chunks = assign_chunks(grown_names, 3)
    assert len(chunks) == 2  # as before: one more pair, not one more chunk
    chunk = next(members for members in chunks.values() if grown_names[-1] in members)
    plan = snakemake(work, "--dry-run", *targets, f"results/style/{grown_names[-1]}.png",
                     configfiles=style_config(tmp_path, grown, 3, "grown"))
    assert planned_jobs(plan) == {"style_chunk": 1, "style_pair": len(chunk)}
    # the chunk's time limit follows its size: 10 + 20 minutes per pair
    assert [job["runtime"] for job in planned_resources(plan)["style_chunk"]] == [str(10 + 20 * len(chunk))]

    # An edited image that one pair uses: only that pair's chunk.
    configs = style_config(tmp_path, pairs, 3)
    write_png(contents[2], 24, 24, seed=42)
    chunk = next(members for members in assign_chunks(names, 3).values() if names[2] in members)
    plan = planned_jobs(snakemake(work, "--dry-run", *targets, configfiles=configs))
    assert plan == {"style_chunk": 1, "style_pair": len(chunk)}
    # A setting that every result depends on: every chunk and every pair.
    configs[1].write_text(configs[1].read_text().replace("steps: 3", "steps: 2"))
    assert planned_jobs(snakemake(work, "--dry-run", *targets, configfiles=configs)) == {"style_chunk": 2, "style_pair": 5}


@pytest.mark.e2e
def test_a_bad_image_fails_its_pair_naming_the_file_and_its_chunk_mates_are_published(tmp_path):
    contents, styles = pair_images(tmp_path / "images", 2)
    broken = tmp_path / "images" / "kaputt ü.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    pairs = [(contents[0], styles[0]), (broken, styles[0]), (contents[1], styles[0])]
    names = [pair_name(*pair) for pair in pairs]
    assert len(assign_chunks(names, 8)) == 1  # all three in one job
    work = tmp_path / "work"
    run = snakemake(work, "--cores", "2", "--keep-going", *[f"results/style/{name}.png" for name in names],
                    configfiles=style_config(tmp_path, pairs, 8), check=False)
    assert run.returncode != 0
    # Snakemake names the file, and the failed pair's own log has the traceback.
    assert "kaputt ü.png" in run.stdout + run.stderr
    assert "kaputt ü.png" in (work / "results" / "logs" / "style" / "kaputt ü__s0.log").read_text()
    assert not (work / "results" / "style" / "kaputt ü__s0.png").exists()
    assert not (work / "results" / "captions" / "style" / "kaputt ü__s0.rst").exists()
    good = [name for name in names if not name.startswith("kaputt")]
    for path, data in published(work, good).items():
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if path.endswith(".png") else len(data) > 20, path
