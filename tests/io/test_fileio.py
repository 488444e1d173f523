import os

import pandas as pd
import pytest
import torch

from cnnpipe.io import files as fileio


def test_atomic_write_leaves_no_temporary_file_and_honours_the_umask(tmp_path):
    path = fileio.atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    assert path.read_text() == "hello"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = fileio.atomic_write_text(tmp_path / "a.json", "old")

    with pytest.raises(TypeError):
        fileio.atomic_write_bytes(path, object())  # not bytes: the write fails midway
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_json_and_csv_are_canonical(tmp_path):
    a = fileio.write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]}).read_bytes()
    b = fileio.write_json(tmp_path / "b.json", {"a": [1, 2], "b": 1}).read_bytes()
    assert a == b and a.endswith(b"\n")
    frame = pd.DataFrame({"x": [1, 2], "y": [0.5, 0.25]})
    assert fileio.write_csv(tmp_path / "f.csv", frame).read_text() == "x,y\n1,0.5\n2,0.25\n"



def test_write_rows_gives_write_csvs_bytes_without_pandas(tmp_path):
    rows = [{"image": 'a, "quoted"\nname', "steps": 10, "ratio": 0.1 + 0.2, "tiny": 1e-7, "big": 123456789.125,
             "missing": float("nan"), "none": None, "flag": True},
            {"image": "b", "steps": 3, "ratio": 2.0, "tiny": -0.5, "big": 1.0, "missing": float("nan"),
             "none": None, "flag": False}]
    columns = ["image", "steps", "ratio", "tiny", "big", "missing", "none", "flag"]
    expected = fileio.write_csv(tmp_path / "pandas.csv", pd.DataFrame(rows, columns=columns)).read_bytes()
    assert fileio.write_rows(tmp_path / "rows.csv", rows, columns).read_bytes() == expected
    assert fileio.write_rows(tmp_path / "one.csv", rows[:1], columns).read_bytes() == \
        fileio.write_csv(tmp_path / "one_pandas.csv", pd.DataFrame(rows[:1], columns=columns)).read_bytes()

def test_torch_save_bytes_do_not_depend_on_where_strings_came_from(tmp_path):
    key = "".join(["ep", "och"])  # an equal string that is a different object
    first = fileio.torch_save({"epoch": 1, "rows": [{"epoch": 1}], "w": torch.ones(2)}, tmp_path / "a.pt")
    second = fileio.torch_save({"epoch": 1, "rows": [{key: 1}], "w": torch.ones(2)}, tmp_path / "b.pt")
    assert first.read_bytes() == second.read_bytes()
    assert torch.load(first, weights_only=True)["rows"] == [{"epoch": 1}]


def test_save_figure_is_deterministic(tmp_path):
    from matplotlib.figure import Figure

    def draw():
        fig = Figure()
        fig.add_subplot().plot([1, 2, 3])
        return fig

    assert fileio.save_figure(draw(), tmp_path / "a.png").read_bytes() == \
        fileio.save_figure(draw(), tmp_path / "b.png").read_bytes()
