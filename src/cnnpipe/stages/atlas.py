"""The atlas stage: per layer a dataset pass, per chunk of units their x* and diverse sets.

The dataset pass (one job per layer) writes ``activations.npz`` (``cnnpipe.methods.atlas.
dataset_pass``), ``units.csv`` (per unit its largest, smallest and mean ``a^k`` over the folder),
``examples.csv`` (per unit its top and bottom images with their values and receptive-field
boxes) and ``examples/<unit>.png``: one strip per unit, the top examples' receptive-field crops
in the first row, the bottom ones in the second. A chunk job writes ``<layer>/<unit>.png``, one
strip of the unit's diverse set (member 0 = its lone x*), and ``members.csv`` with each member's
``a^k``. The site (``cnnpipe.report.atlas_site``) joins them."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from cnnpipe.io.files import atomic_write_bytes, write_rows
from cnnpipe.methods import atlas
from cnnpipe.methods.filter_search import feature_map_layer, has_units, prepare_model, reference_photos, square_image
from cnnpipe.networks.receptive_field import receptive_field
from cnnpipe.runtime.device import seed_everything, select_device

log = logging.getLogger(__name__)

EXAMPLE_COLUMNS = ("unit", "kind", "rank", "image", "name", "value", "top", "left", "bottom", "right")
UNIT_COLUMNS = ("unit", "maximum", "minimum", "mean")
MEMBER_COLUMNS = ("layer", "unit", "member", "activation")
# Side of a tile in the strips, in pixels: small images are enlarged (nearest) to about this.
TILE = 96
_GAP = 2


def load_network(settings: Mapping, model_path=None, cache_dir=None) -> tuple[nn.Module, tuple[int, int, int]]:
    """The atlas's network and the image shape [C, H, W] it is visualized at: the trained CNN
    (or another run's) at its training size, any other network at ``atlas.image_size``."""
    from cnnpipe.networks.spec import TRAINED, parse_backbone

    spec = parse_backbone(settings["backbone"], "atlas.backbone", must_exist=False)
    if spec.kind == TRAINED:
        from cnnpipe.networks.checkpoint import load_model

        model = load_model(model_path)
    else:
        from cnnpipe.networks.build import load_backbone

        model = load_backbone(spec, cache_dir=cache_dir, key="atlas.backbone")
    if hasattr(model, "image_shape"):
        shape = tuple(int(s) for s in model.image_shape)
    else:
        size = int(settings["image_size"] or model.input_size)
        shape = (3, size, size)
    return model, shape


def load_images(settings: Mapping, shape, *, data_path=None, files: Sequence[str] = ()) -> tuple[Tensor, list[str]]:
    """The folder the units are ranked on, [N, C, H, W], and a name per image: the trained
    CNN's training images, else the files given (centre-cropped square and resized), else
    scikit-image's bundled photos (few: the docs say so)."""
    if settings["backbone"] == "trained":
        from cnnpipe.data.prepare import load_prepared

        images = load_prepared(data_path)["train_images"]
        return images, [f"training image {i}" for i in range(len(images))]
    channels, size = int(shape[0]), int(shape[-1])
    if files:
        from cnnpipe.io.images import load_image

        names = [os.path.basename(str(f)) for f in files]
        mode = "L" if channels == 1 else "RGB"
        return torch.stack([square_image(load_image(f, mode), size, channels) for f in files]), names
    from cnnpipe.io.photos import SAMPLE_PHOTOS

    return reference_photos(size, channels), sorted(SAMPLE_PHOTOS)


def _tile(image: Tensor, box=None) -> Image.Image:
    """One image [C, H, W] in [0, 1] (or uint8) as a PIL tile about ``TILE`` px high; ``box``
    (top, left, bottom, right) is outlined in red."""
    array = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    array = (array.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    tile = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).convert("RGB")
    side = max(tile.size)
    if side < TILE:
        factor = max(1, TILE // side)
        tile = tile.resize((tile.width * factor, tile.height * factor), Image.Resampling.NEAREST)
    else:
        tile = tile.resize((tile.width * TILE // side, tile.height * TILE // side), Image.Resampling.LANCZOS)
    if box is not None:
        from PIL import ImageDraw

        scale = tile.width / image.shape[-1]
        top, left, bottom, right = (int(round(v * scale)) for v in box)
        ImageDraw.Draw(tile).rectangle((left, top, right - 1, bottom - 1), outline=(230, 30, 30), width=2)
    return tile


def write_strip(rows: Sequence[Sequence], path: str | os.PathLike) -> Path:
    """Images in rows of tiles (``TILE`` px, 2 px white gaps), saved as one PNG; an entry may be
    an image or (image, box to outline)."""
    tiles = [[_tile(*entry) if isinstance(entry, tuple) else _tile(entry) for entry in row] for row in rows if len(row)]
    height = max(t.height for row in tiles for t in row)
    width = max(sum(t.width + _GAP for t in row) - _GAP for row in tiles)
    sheet = Image.new("RGB", (width, len(tiles) * (height + _GAP) - _GAP), "white")
    for r, row in enumerate(tiles):
        x = 0
        for tile in row:
            sheet.paste(tile, (x, r * (height + _GAP)))
            x += tile.width + _GAP
    import io

    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())


# Images up to this side are shown whole with the receptive field outlined (a digit's 8 px
# field alone says little); larger ones are cropped to it.
WHOLE_UP_TO = 64


def _examples(images: Tensor, indices: np.ndarray, boxes: np.ndarray) -> list:
    if max(images.shape[-2:]) <= WHOLE_UP_TO:
        return [(images[i], tuple(int(v) for v in box)) for i, box in zip(indices, boxes) if i >= 0]
    return [images[i, :, t:b, l:r] for i, (t, l, b, r) in zip(indices, boxes) if i >= 0]


def run_dataset_pass(layer: str, settings: Mapping, out_dir: str | os.PathLike, *, seed: int, device_name: str = "cpu",
                     model_path=None, data_path=None, files: Sequence[str] = (), cache_dir=None) -> dict:
    """The rule ``atlas_dataset``: rank every unit of ``layer`` on the folder; see the module
    docstring for the files written to ``out_dir``."""
    seed_everything(seed)
    model, shape = load_network(settings, model_path, cache_dir)
    prepare_model(model, select_device(device_name))
    images, names = load_images(settings, shape, data_path=data_path, files=files)
    target = feature_map_layer(model, layer, "atlas.layers")
    field = None if has_units(model, target, atlas.as_unit_images(images[0])) else \
        receptive_field(model, target, images.shape[1:])
    arrays = atlas.dataset_pass(model, target, images, field, top_n=int(settings["top_n"]), bins=int(settings["bins"]))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_npz(out / "activations.npz", {"names": np.asarray(names), **arrays})
    write_rows(out / "units.csv", [
        {"unit": u, "maximum": round(float(arrays["maximum"][u]), 4), "minimum": round(float(arrays["minimum"][u]), 4),
         "mean": round(float(arrays["mean"][u]), 4)} for u in range(len(arrays["maximum"]))], UNIT_COLUMNS)
    rows = []
    for unit in range(len(arrays["maximum"])):
        for kind in ("top", "bottom"):
            for rank, image in enumerate(arrays[f"{kind}_index"][unit]):
                if image >= 0:
                    t, left, b, r = (int(v) for v in arrays[f"{kind}_box"][unit, rank])
                    rows.append({"unit": unit, "kind": kind, "rank": rank, "image": int(image), "name": names[image],
                                 "value": round(float(arrays[f"{kind}_value"][unit, rank]), 4),
                                 "top": t, "left": left, "bottom": b, "right": r})
        write_strip([_examples(images, arrays[f"{kind}_index"][unit], arrays[f"{kind}_box"][unit])
                     for kind in ("top", "bottom")], out / "examples" / f"{unit}.png")
    write_rows(out / "examples.csv", rows, EXAMPLE_COLUMNS)
    log.info("%s: %d units ranked on %d images (receptive field %s)", layer, len(arrays["maximum"]), len(images),
             "none: units" if field is None else f"{field.size[0]}x{field.size[1]} px, jump {field.jump[0]}")
    return arrays


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Arrays as a compressed ``.npz`` that ``np.load`` reads, written atomically and byte for
    byte the same on every run (``np.savez`` stamps each member with the current time)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.save(member, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return atomic_write_bytes(path, buffer.getvalue())
