"""Chunked jobs (cnnpipe.runtime.chunks): stable assignment of images to chunks, publishing one image's
files from its chunk, and the dream stage run in chunks end to end."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image
from pipeline import TINY, planned_jobs, snakemake
from probes import visible_files

from cnnpipe.runtime.chunks import ERROR_SUFFIX, publish, publish_item
from cnnpipe.workflow.chunks import assign_chunks, chunk_count, jump_hash, name_key


def test_jump_hash_moves_only_the_keys_that_land_in_a_new_bucket():
    keys = [name_key(f"photo {i}.jpg") for i in range(2000)]
    for buckets in (1, 2, 3, 7, 10):
        before = [jump_hash(key, buckets) for key in keys]
        after = [jump_hash(key, buckets + 1) for key in keys]
        moved = [(b, a) for b, a in zip(before, after) if b != a]
        assert all(a == buckets for _, a in moved)  # only ever into the new bucket
        # about 1/(n + 1) of the keys move (binomial: well within 4 standard deviations)
        share = len(moved) / len(keys)
        assert abs(share - 1 / (buckets + 1)) < 4 * (share * (1 - share) / len(keys)) ** 0.5 + 0.01
        counts = np.bincount(after, minlength=buckets + 1)
        assert counts.min() > 0.7 * len(keys) / (buckets + 1)  # no bucket starved
    with pytest.raises(ValueError, match="at least one bucket"):
        jump_hash(1, 0)


def test_name_key_is_the_same_everywhere():
    # the first 8 bytes of sha256("chelsea"): fixed across machines and runs, unlike Python's
    # salted hash(), so a chunk holds the same images on a cluster's every node
    assert name_key("chelsea") == 0x1ECD41C03EF78BD6
    assert name_key("Größe ü") != name_key("Grosse u")


def test_adding_or_removing_one_image_changes_one_chunk():
    names = [f"IMG_{i:04d}" for i in range(20)]
    chunks = assign_chunks(names, 8)
    assert len(chunks) == chunk_count(20, 8) == 3
    assert sorted(n for group in chunks.values() for n in group) == sorted(names)
    rng = random.Random(0)
    for _ in range(50):
        extra = f"new photo {rng.random()}.jpg"
        grown = assign_chunks([*names, extra], 8)
        changed = [c for c in set(chunks) | set(grown) if chunks.get(c) != grown.get(c)]
        assert changed == [next(c for c, group in grown.items() if extra in group)]
        removed = names[rng.randrange(20)]
        shrunk = assign_chunks([n for n in names if n != removed], 8)
        assert [c for c in set(chunks) | set(shrunk) if chunks.get(c) != shrunk.get(c)] == [
            next(c for c, group in chunks.items() if removed in group)]


def test_one_image_per_job_gives_every_image_its_own_chunk():
    chunks = assign_chunks(["b", "a", "c", "a"], 1)
    assert sorted(chunks.values()) == [["a"], ["b"], ["c"]]
    assert all(chunk == f"{name_key(group[0]):016x}" for chunk, group in chunks.items())
    with pytest.raises(ValueError, match="per_job must be a positive integer, got 0"):
        assign_chunks(["a"], 0)


def test_publish_links_whole_files_and_keeps_the_source(tmp_path):
    chunk = tmp_path / "chunk"
    chunk.mkdir()
    (chunk / "cat.png").write_bytes(b"png bytes")
    (chunk / "cat.log").write_text("cat's log\n")
    publish_item(chunk, "cat", {"png": tmp_path / "out" / "cat.png"}, tmp_path / "logs" / "cat.log")
    assert (tmp_path / "out" / "cat.png").read_bytes() == b"png bytes"
    assert (tmp_path / "logs" / "cat.log").read_text() == "cat's log\n"
    assert (chunk / "cat.png").exists()  # a repeated publish (after an interruption) still works
    publish({chunk / "cat.png": tmp_path / "out" / "cat.png"})
    assert visible_files(tmp_path / "out") == ["cat.png"]
    with pytest.raises(FileNotFoundError, match="the chunk did not produce this file"):
        publish({chunk / "dog.png": tmp_path / "out" / "dog.png"})


def test_an_image_the_chunk_could_not_process_fails_in_its_own_job_with_its_log(tmp_path):
    chunk = tmp_path / "chunk"
    chunk.mkdir()
    (chunk / "broken.log").write_text("Traceback ... cannot read image\n")
    (chunk / f"broken{ERROR_SUFFIX}").write_text("photos/broken.png: cannot read image\n")
    with pytest.raises(RuntimeError, match=r"broken: photos/broken.png: cannot read image \(log: .*broken.log\)"):
        publish_item(chunk, "broken", {"png": tmp_path / "broken.png"}, tmp_path / "broken.log")
    assert "cannot read image" in (tmp_path / "broken.log").read_text()
    assert not (tmp_path / "broken.png").exists()


def test_the_publish_command_starts_without_torch_and_reports_a_failed_image(tmp_path):
    chunk = tmp_path / "chunk"
    chunk.mkdir()
    name = "-it's a $(dream) [1]"  # a hostile file name, as the shell rule passes it (after --)
    (chunk / f"{name}.png").write_bytes(b"png bytes")
    (chunk / f"{name}.log").write_text("log\n")
    target = tmp_path / "out" / f"{name}.png"
    code = (
        "import sys; from cnnpipe.__main__ import main; status = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'the publish command imported torch'; sys.exit(status)"
    )
    args = ["publish", "--", str(chunk), name, str(tmp_path / "logs" / f"{name}.log"), f"png={target}"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == b"png bytes"

    def publish_command(*args):
        return subprocess.run([sys.executable, "-m", "cnnpipe", "publish", *map(str, args)], capture_output=True,
                              text=True)

    (chunk / f"broken{ERROR_SUFFIX}").write_text("photos/broken.png: cannot read image\n")
    (chunk / "broken.log").write_text("log\n")
    done = publish_command(chunk, "broken", tmp_path / "b.log", f"png={tmp_path / 'b.png'}")
    assert done.returncode == 1 and "broken: photos/broken.png: cannot read image" in done.stderr
    assert not (tmp_path / "b.png").exists()
    done = publish_command(chunk, "broken", tmp_path / "b.log", "png")
    assert done.returncode == 2 and "'png' is not EXT=TARGET" in done.stderr
    assert publish_command(chunk, "broken").returncode == 2  # usage


# --------------------------------------------------------------------------- end to end

FAST_DREAM = {"max_side": None, "octaves": 1, "steps": 1, "jitter": 4}


def photo_folder(folder, count: int, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / f"photo {i:02d}.png")
    return folder


def dream_config(tmp_path, folder, per_job: int):
    override = tmp_path / f"per_job_{per_job}.yaml"
    override.write_text(yaml.safe_dump({"dream": {**FAST_DREAM, "folder": str(folder), "per_job": per_job}}))
    return (TINY, override)


@pytest.mark.e2e
@pytest.mark.slow
def test_results_are_byte_identical_whatever_the_chunk_size(tmp_path):
    folder = photo_folder(tmp_path / "photos", 5)
    outputs = {}
    for per_job in (1, 5):
        work = tmp_path / f"work{per_job}"
        run = snakemake(work, "--cores", "2", "results/dream/summary.csv",
                        configfiles=dream_config(tmp_path, folder, per_job))
        assert planned_jobs(run)["dream_chunk"] == (5 if per_job == 1 else 1)
        results = work / "results" / "dream"
        assert not (results / "chunks").exists()  # the chunks' folders are temporary
        outputs[per_job] = {name: (results / name).read_bytes() for name in visible_files(results)}
        assert len(outputs[per_job]) == 5 * 2 + 2  # each photo's PNG and CSV, the summary CSV and figure
        for i in range(5):
            log = (work / "results" / "logs" / "dream" / f"photo {i:02d}.log").read_text()
            assert f"photo {i:02d}: done" in log and f"photo {(i + 1) % 5:02d}: done" not in log
    assert outputs[1] == outputs[5]


@pytest.mark.e2e
@pytest.mark.slow
def test_adding_a_photo_to_a_folder_of_20_reruns_one_chunk(tmp_path):
    folder = photo_folder(tmp_path / "photos", 20)
    configs = dream_config(tmp_path, folder, 8)
    work = tmp_path / "work"
    first = snakemake(work, "--cores", "2", "results/dream/summary.csv", configfiles=configs)
    assert planned_jobs(first)["dream_chunk"] == 3 and planned_jobs(first)["dream_photo"] == 20
    chunk_log = (work / "results" / "logs" / "dream" / "chunks")
    assert len(visible_files(chunk_log)) == 3
    shutil.copy(folder / "photo 00.png", folder / "photo 20.png")
    plan = planned_jobs(snakemake(work, "--dry-run", "results/dream/summary.csv", configfiles=configs))
    grown = assign_chunks([f"photo {i:02d}" for i in range(21)], 8)
    chunk = next(group for group in grown.values() if "photo 20" in group)
    assert plan == {"dream_chunk": 1, "dream_photo": len(chunk), "dream_summary": 1}
