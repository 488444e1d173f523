"""benchmarks/record.py appends dated rows; benchmarks/summarize.py keeps docs/benchmarks.md in step."""

from __future__ import annotations

import csv
import datetime
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


record = _module("record")
summarize = _module("summarize")


def _read(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_record_appends_rows_with_date_commit_and_conditions(tmp_path):
    path = record.record("demo", [{"case": "a", "seconds": 1.23456789}], folder=tmp_path)
    record.record("demo", [{"case": "b", "seconds": 2}], folder=tmp_path, quiet=False)
    header, rows = _read(path)
    assert header[:len(record.META)] == list(record.META) and header[-2:] == ["case", "seconds"]
    assert [row["case"] for row in rows] == ["a", "b"]
    assert rows[0]["seconds"] == "1.23457"  # 6 significant digits
    assert rows[0]["date"] == datetime.date.today().isoformat()
    assert re.fullmatch(r"[0-9a-f]{4,}(\+dirty)?|unknown", rows[0]["commit"])
    assert rows[0]["cores"] == str(__import__("os").cpu_count())
    assert rows[0]["machine"]
    assert rows[1]["conditions"] == "shared"


def test_record_extends_the_header_without_losing_rows(tmp_path):
    path = record.record("demo", [{"case": "a", "seconds": 1}, {"case": "b", "seconds": 2}], folder=tmp_path)
    record.record("demo", [{"case": "c", "ratio": 3.5, "threads": 1}], folder=tmp_path)
    header, rows = _read(path)
    assert header[-3:] == ["case", "seconds", "ratio"]
    assert [(r["case"], r["seconds"], r["ratio"]) for r in rows] == [("a", "1", ""), ("b", "2", ""), ("c", "", "3.5")]
    assert rows[2]["threads"] == "1"  # a row's own value wins over the recorded one
    assert not list(tmp_path.glob("*.tmp"))


def test_quiet_or_shared_from_the_load_at_the_start():
    cores = __import__("os").cpu_count()
    assert record.conditions(load=0.0)["conditions"] == "quiet"
    assert record.conditions(load=cores * 1.0)["conditions"] == "shared"
    assert record.conditions(quiet=True, load=cores * 1.0)["conditions"] == "quiet"
    assert record.conditions(load=None)["conditions"] == "unknown"


@pytest.fixture
def copy(tmp_path):
    """docs/benchmarks.md, benchmarks/results and the scripts, copied."""
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks")
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "benchmarks.md", tmp_path / "docs")
    return tmp_path


def _check(root: Path) -> int:
    return summarize.main(["--check", "--docs", str(root / "docs" / "benchmarks.md"),
                           "--results", str(root / "benchmarks" / "results"), "--scripts", str(root / "benchmarks")])


def test_the_committed_docs_are_up_to_date():
    assert summarize.main(["--check"]) == 0


def test_check_fails_when_a_csv_changes_and_a_rewrite_fixes_it(copy):
    assert _check(copy) == 0
    path = copy / "benchmarks" / "results" / "filters_speed.csv"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[-1]["ratio"] = "5.1"  # the latest run, which the table shows
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert _check(copy) == 1
    summarize.main(["--docs", str(copy / "docs" / "benchmarks.md"), "--results", str(copy / "benchmarks" / "results"),
                    "--scripts", str(copy / "benchmarks")])
    assert _check(copy) == 0
    assert "**5.1x**" in (copy / "docs" / "benchmarks.md").read_text()


def test_the_table_shows_the_latest_run_of_a_fresh_record(copy):
    results = copy / "benchmarks" / "results"
    record.record("style_batch", [{"pairs": 2, "size": 64, "steps": 3, "device": "cpu", "speedup": 1.5}],
                  folder=results)
    docs = copy / "docs" / "benchmarks.md"
    summarize.main(["--docs", str(docs), "--results", str(results), "--scripts", str(copy / "benchmarks")])
    row = next(line for line in docs.read_text().splitlines() if line.startswith("| [`style_batch.py`"))
    assert "**1.5x** at 64 px (2 pairs, 3 Adam steps)" in row and "commit " in row and "1.34x" not in row


def test_every_script_records_and_offers_no_record():
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        if script.stem in summarize.HELPERS:
            continue
        text = script.read_text()
        assert f'record("{script.stem}"' in text and "add_option(parser)" in text, script.name
        assert script.stem in summarize.HEADLINES, script.name
