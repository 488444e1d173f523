"""DeepDream jobs per photo or per chunk of photos: wall time against DeepDream time.

Makes a folder of 48 photos of 256 px (crops and mirror images of the bundled scikit-image
photos), then runs the real workflow (`snakemake results/dream/summary.csv`, the default
dream settings) twice in fresh folders: with ``dream.per_job: 1`` and with ``per_job: 16``.
Both runs use the same cores (``--cores``, 1 by default, so that wall time and the summed
compute time are comparable). Printed per setting: the wall time of the whole run and per
photo, the pure DeepDream time summed from the chunk logs ("chunk: N image(s) in X s"), their
ratio, the start-up breakdown that the chunk logs give (Python and Snakemake's preamble,
imports, network), and where the whole wall time went (``breakdown``). The goal: wall time
within 1.15x of the compute time with chunking.

Run: .venv/bin/python benchmarks/dream_chunks.py [--photos 48] [--per-job 1 16] [--cores 1]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageOps
from record import add_option, record

from cnnpipe.io.photos import SAMPLE_PHOTOS, sample_photo

ROOT = Path(__file__).resolve().parents[1]
SIDE = 256


def make_photos(folder: Path, count: int) -> None:
    """``count`` different 256 px photos: seeded random crops (a third to all of the shorter
    side) of the bundled photos, every other one mirrored."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sources = [sample_photo(name).convert("RGB") for name in sorted(SAMPLE_PHOTOS)]
    for i in range(count):
        photo = sources[i % len(sources)]
        width, height = photo.size
        side = int(rng.integers(min(width, height) // 3, min(width, height) + 1))
        left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        crop = photo.crop((left, top, left + side, top + side)).resize((SIDE, SIDE), Image.Resampling.LANCZOS)
        (ImageOps.mirror(crop) if i % 2 else crop).save(folder / f"photo_{i:03d}.png")


def seconds(pattern: str, text: str) -> list[float]:
    return [float(value) for value in re.findall(pattern, text)]


def job_seconds(snakemake_log: str) -> dict[str, float]:
    """Seconds per rule, summed over its jobs, from Snakemake's log: a job runs from the time
    stamp above its "rule NAME:" block to the one above "Finished jobid: N" (1 s resolution;
    with --cores 1 the jobs do not overlap, so the sums add up to the time spent in jobs)."""
    stamp, started, spent = None, {}, {}
    lines = snakemake_log.splitlines()
    for i, line in enumerate(lines):
        if m := re.fullmatch(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", line.strip()):
            stamp = time.mktime(time.strptime(m.group(1), "%a %b %d %H:%M:%S %Y"))
        elif m := re.fullmatch(r"(?:local)?rule (\w+):", line.strip()):
            job = next(re.search(r"jobid: (\d+)", later).group(1) for later in lines[i + 1:] if "jobid:" in later)
            started[job] = (m.group(1), stamp)
        elif m := re.search(r"Finished jobid: (\d+)", line):
            rule, began = started.pop(m.group(1))
            spent[rule] = spent.get(rule, 0.0) + stamp - began
    return spent


def run(folder: Path, work: Path, per_job: int, cores: int) -> dict:
    override = work / "per_job.yaml"
    work.mkdir(parents=True)
    override.write_text(yaml.safe_dump({"dream": {"folder": str(folder), "per_job": per_job}}))
    command = [sys.executable, "-m", "snakemake", "results/dream/summary.csv", "--snakefile", str(ROOT / "Snakefile"),
               "--directory", str(work), "--configfile", str(override), "--cores", str(cores)]
    began = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - began
    logs = "".join(path.read_text() for path in sorted((work / "results/logs/dream/chunks").glob("*.log")))
    return {
        "jobs": len(list((work / "results/logs/dream/chunks").glob("*.log"))),
        "wall": wall,
        "compute": sum(seconds(r"chunk: \d+ image\(s\) in ([\d.]+) s of DeepDream", logs)),
        "python": seconds(r"start-up: ([\d.]+) s for Python", logs),
        "imports": seconds(r"start-up: ([\d.]+) s importing", logs),
        "network": seconds(r"loaded in ([\d.]+) s", logs),
        "rules": job_seconds(done.stderr),
    }


def parts(r: dict) -> dict[str, float]:
    """Where the wall time went: DeepDream itself, the chunk jobs' start-up (Python, imports,
    network), the rest of the chunk jobs (their exit, Snakemake's handling of the job), the
    publishing jobs, the summary job, and Snakemake outside jobs (parsing, the DAG, gaps)."""
    rules = r["rules"]
    start_up = sum(r["python"]) + sum(r["imports"]) + sum(r["network"])
    return {
        "DeepDream": r["compute"],
        "chunk start-up": start_up,
        "rest of chunk jobs": rules.get("dream_chunk", 0.0) - start_up - r["compute"],
        "publishing jobs": rules.get("dream_photo", 0.0),
        "summary job": rules.get("dream_summary", 0.0),
        "outside jobs": r["wall"] - sum(rules.values()),
    }


def breakdown(r: dict) -> str:
    return ", ".join(f"{name} {value:.1f} s" for name, value in parts(r).items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--per-job", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--cores", type=int, default=1)
    add_option(parser)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnpipe-chunks-") as scratch:
        folder = Path(scratch) / "photos"
        make_photos(folder, args.photos)
        print(f"{args.photos} photos of {SIDE} px, default dream settings, --cores {args.cores}")
        print(f"{'per_job':>7} {'jobs':>5} {'wall s':>8} {'wall/photo':>10} {'compute s':>9} {'wall/compute':>12}"
              f"  start-up per job (median): python+preamble, imports, network")
        for per_job in args.per_job:
            r = run(folder, Path(scratch) / f"work{per_job}", per_job, args.cores)
            median = [statistics.median(r[key]) if r[key] else float("nan") for key in ("python", "imports", "network")]
            print(f"{per_job:>7} {r['jobs']:>5} {r['wall']:>8.1f} {r['wall'] / args.photos:>10.2f} "
                  f"{r['compute']:>9.1f} {r['wall'] / r['compute']:>12.2f}  "
                  f"{median[0]:.2f} s, {median[1]:.2f} s, {median[2]:.2f} s")
            print(f"{'':>7} wall = {breakdown(r)}")
            where = parts(r)
            rows.append({"photos": args.photos, "side": SIDE, "snakemake_cores": args.cores, "per_job": per_job,
                         "jobs": r["jobs"], "wall_s": round(r["wall"], 1), "compute_s": round(r["compute"], 1),
                         "wall_per_compute": round(r["wall"] / r["compute"], 2),
                         "python_s": round(median[0], 2), "imports_s": round(median[1], 2),
                         "network_s": round(median[2], 2), "startup_s": round(where["chunk start-up"], 1),
                         "rest_of_chunk_jobs_s": round(where["rest of chunk jobs"], 1),
                         "publishing_s": round(where["publishing jobs"], 1),
                         "summary_s": round(where["summary job"], 1), "outside_s": round(where["outside jobs"], 1)})
    if rows and not args.no_record:
        record("dream_chunks", rows)


if __name__ == "__main__":
    main()
