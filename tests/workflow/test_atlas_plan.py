"""The atlas's parse-time pieces: the units of each layer from the network on the meta device,
their chunks, the folder, and the memory a job declares."""

from __future__ import annotations

import pytest

from cnnpipe.io.images import ImageError
from cnnpipe.workflow.chunks import assign_chunks
from cnnpipe.workflow.inputs import atlas_images
from cnnpipe.workflow.probes import layer_units
from cnnpipe.workflow.resources import atlas_chunk_mem_mb, atlas_dataset_mem_mb

MODEL = {"conv_channels": [16, 32], "kernel_size": 3, "hidden": [64], "dropout": 0.0, "batch_norm": False}


def test_the_trained_cnns_layers_have_their_configured_units():
    assert layer_units("atlas.layers", "trained", ["conv1", "conv2", "fc1"], MODEL) == {
        "conv1": 16, "conv2": 32, "fc1": 64}
    assert layer_units("atlas.layers", "trained", "conv", MODEL) == {"conv1": 16, "conv2": 32}


def test_an_imagenet_layer_is_sized_without_weights_and_a_wrong_name_names_the_key():
    assert layer_units("atlas.layers", "efficientnet_lite0", ["blocks.4"], input_shape=(3, 128, 128)) == {
        "blocks.4": 112}
    with pytest.raises(ValueError, match=r"^atlas\.layers: .*blocks\.40"):
        layer_units("atlas.layers", "efficientnet_lite0", ["blocks.40"], input_shape=(3, 128, 128))
    with pytest.raises(ValueError, match=r"^atlas\.layers: a list of layer names"):
        layer_units("atlas.layers", "efficientnet_lite0", "blocks")


def test_units_go_to_chunks_by_name_so_a_new_layer_moves_no_unit_of_the_others():
    units = [f"conv2:{u}" for u in range(32)]
    before = assign_chunks(units, 64)
    after = assign_chunks(units + [f"fc1:{u}" for u in range(8)], 64)
    assert len(before) == 1 and before["0"] == sorted(units)
    assert set(after["0"]) >= set(units)


def test_the_folder_must_exist_and_hold_images(tmp_path):
    assert atlas_images(None) == []
    with pytest.raises(ImageError, match="atlas.folder: no such folder"):
        atlas_images(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageError, match="atlas.folder holds no images"):
        atlas_images(tmp_path)
    (tmp_path / "a.png").write_bytes(b"")
    assert atlas_images(tmp_path) == [str(tmp_path / "a.png")]


def test_a_chunk_declares_its_batch_budget_and_a_dataset_pass_its_images():
    settings = {"memory_mb": 1024, "image_size": 128, "diverse": 4}
    small = atlas_chunk_mem_mb(settings, trained=False, units=1, side=128)
    assert atlas_chunk_mem_mb(settings, trained=True, units=1, side=128) < small
    assert small < atlas_chunk_mem_mb(settings, trained=False, units=8, side=128)  # a larger batch
    assert small < atlas_chunk_mem_mb(settings, trained=False, units=1, side=224)  # larger images
    assert small < atlas_chunk_mem_mb(settings, trained=False, units=1, side=128, judge=True)
    # the batch never passes atlas.memory_mb: a chunk of 2,048 units asks for its budget, not more
    huge = atlas_chunk_mem_mb({**settings, "memory_mb": 4096}, trained=False, units=2048, side=224)
    assert 4096 < huge < (4096 + 1200) * 1.3
    assert atlas_dataset_mem_mb(50_000, 2048, settings) > atlas_dataset_mem_mb(100, 2048, settings)
