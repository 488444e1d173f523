"""Dated benchmark numbers: ``record(benchmark, rows)`` appends one run's rows to
``benchmarks/results/<benchmark>.csv``, with the conditions they were measured under.

Columns added to every row, before the measured ones (a row's own value wins, e.g. the
``threads`` of a worker process):

- ``date``, ``time``: local ISO date and time of the call; the rows of one call are one run.
- ``commit``: ``git rev-parse --short HEAD``, plus ``+dirty`` when ``git status`` lists changes
  (untracked files included) outside ``benchmarks/results``, the CSVs themselves;
  ``$BENCHMARK_COMMIT`` when set, else ``unknown`` outside a git checkout.
- ``machine``: the CPU model (``/proc/cpuinfo``, else ``platform``), and ``; GPU <name>`` when
  this process used CUDA.
- ``cores``: ``os.cpu_count()``; ``threads``: ``torch.get_num_threads()`` if torch is imported.
- ``load``: the 1-minute load average when this module was imported, i.e. when the benchmark
  started (with its other imports, before any of its own work); ``conditions``: ``quiet`` when
  that load was below a quarter of the cores (0.5 on two cores: other work used less than
  half a core), else ``shared``. ``record(..., quiet=True/False)`` overrides it.

The header is the union of all rows' keys in first-seen order. Rows with a key the file lacks
rewrite it with the extended header (old rows keep their values; new columns stay empty).
Floats are written with at most 6 significant digits, ``None`` as an empty cell.

Scripts add ``--no-record`` with :func:`add_option` for smoke runs; ``BENCHMARK_RESULTS=<folder>``
sends the rows to another folder (to try a script's recording without touching the real CSVs).
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUIET_PER_CORE = 0.25
META = ("date", "time", "commit", "machine", "cores", "threads", "load", "conditions")


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


START_LOAD = _load_average()


def add_option(parser) -> None:
    """``--no-record``: print only, append nothing to benchmarks/results (for smoke runs)."""
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results/*.csv")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def commit() -> str:
    if os.environ.get("BENCHMARK_COMMIT"):  # a copy without .git (benchmarks/gpu.sh on a device)
        return os.environ["BENCHMARK_COMMIT"]
    head = _git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    changes = _git("status", "--porcelain", "--", ".", ":(exclude)benchmarks/results")
    return head + ("+dirty" if changes else "")


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine() or "unknown"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        cpu += f"; GPU {torch.cuda.get_device_name()}"
    return cpu


def conditions(quiet: bool | None = None, load: float | None = START_LOAD) -> dict:
    """The ``cores``, ``threads``, ``load`` and ``conditions`` columns."""
    cores = os.cpu_count() or 1
    if quiet is None and load is not None:
        quiet = load < QUIET_PER_CORE * cores
    torch = sys.modules.get("torch")
    return {"cores": cores, "threads": torch.get_num_threads() if torch is not None else None,
            "load": None if load is None else round(load, 2),
            "conditions": "unknown" if quiet is None else "quiet" if quiet else "shared"}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_rows(path: Path, rows: list[dict]) -> None:
    """Append ``rows`` to the CSV at ``path``, extending its header (by a rewrite) if needed."""
    old_rows: list[dict] = []
    header: list[str] = []
    if path.is_file() and path.stat().st_size:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            old_rows = list(reader)
    new_keys = [key for row in rows for key in row]
    extended = header + [key for key in dict.fromkeys(new_keys) if key not in header]
    cells = [{key: _cell(value) for key, value in row.items()} for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    if header and extended == header:
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=header, restval="", lineterminator="\n").writerows(cells)
        return
    temporary = path.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=extended, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(old_rows + cells)
    temporary.replace(path)


def record(benchmark: str, rows: list[dict], *, quiet: bool | None = None, folder: Path | None = None) -> Path:
    """Append ``rows`` (one dict of measured numbers per case) to ``<folder>/<benchmark>.csv``
    (default folder: benchmarks/results) with the date and conditions; returns the path."""
    if not rows:
        raise ValueError(f"{benchmark}: no rows to record")
    now = datetime.datetime.now()
    meta = {"date": now.date().isoformat(), "time": now.strftime("%H:%M:%S"), "commit": commit(),
            "machine": machine(), **conditions(quiet)}
    path = Path(folder or os.environ.get("BENCHMARK_RESULTS") or RESULTS) / f"{benchmark}.csv"
    write_rows(path, [{**meta, **row} for row in rows])
    print(f"recorded {len(rows)} row(s) in {path}")
    return path
