"""Safe image I/O: odd modes, EXIF orientation, bad files, deterministic PNGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnpipe.io.images import (
    ImageError,
    file_stems,
    list_images,
    load_image,
    pil_to_tensor,
    read_images,
    resize_to_fit,
    save_png,
    tensor_to_pil,
    write_image_folder,
)


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


def assert_names(exc_info, path) -> None:
    message = str(exc_info.value)
    assert message.startswith(str(path)), message


# ----------------------------------------------------------------- orientation and modes


def test_exif_orientation_is_applied(tmp_path):
    # 40 wide, 20 high: left half red, right half blue.
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (255, 0, 0)
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(array).save(path, quality=95, exif=exif)

    img = load_image(path)
    assert img.mode == "RGB"
    assert img.size == (20, 40)  # now portrait
    out = pixels(img).astype(int)
    # Turning clockwise brings the left (red) half to the top.
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60


def test_palette_with_transparency_goes_on_white(tmp_path):
    img = Image.new("P", (4, 2), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    img.putpixel((1, 0), 1)
    path = tmp_path / "palette.png"
    img.save(path, transparency=0)

    rgb = pixels(load_image(path))
    assert rgb[0, 1].tolist() == [255, 0, 0]
    assert rgb[0, 0].tolist() == [255, 255, 255]  # transparent -> white, not black
    assert rgb[1, 3].tolist() == [255, 255, 255]


def test_palette_without_transparency(tmp_path):
    img = Image.new("P", (2, 2), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    path = tmp_path / "palette.gif"
    img.save(path)
    assert pixels(load_image(path))[0, 0].tolist() == [10, 200, 30]


def test_cmyk_converts_to_rgb(tmp_path):
    path = tmp_path / "cmyk.tif"
    Image.new("CMYK", (3, 3), (0, 255, 255, 0)).save(path)
    assert pixels(load_image(path))[1, 1].tolist() == [255, 0, 0]


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 65535], [257 * 100, 32768]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")

    gray = pixels(load_image(path, mode="L"))
    assert gray.tolist() == [[0, 255], [100, 128]]
    rgb = pixels(load_image(path, mode="RGB"))
    assert rgb[0, 1].tolist() == [255, 255, 255]


def test_rgba_and_la_composite_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = pixels(load_image(path)).astype(int)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [255, 0, 0]
    assert all(abs(v - 127) <= 1 for v in out[0, 2])

    la_path = tmp_path / "alpha_la.png"
    Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), "LA").save(la_path)
    assert pixels(load_image(la_path, mode="L")).tolist() == [[255, 0]]


def test_grayscale_to_rgb_and_rgb_to_gray(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (2, 2), 77).save(path)
    assert pixels(load_image(path, mode="RGB"))[0, 0].tolist() == [77, 77, 77]
    color = tmp_path / "color.png"
    Image.new("RGB", (2, 2), (255, 0, 0)).save(color)
    img = load_image(color, mode="L")
    assert img.mode == "L" and pixels(img)[0, 0] == 76


def test_bad_mode_is_rejected(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (2, 2)).save(path)
    with pytest.raises(ValueError, match="RGBA"):
        load_image(path, mode="RGBA")


# ----------------------------------------------------------------- bad files


def test_bomb_guard(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (100, 80)).save(path)
    with pytest.raises(ImageError, match="100x80") as exc_info:
        load_image(path, max_pixels=5000)
    assert_names(exc_info, path)
    assert load_image(path, max_pixels=8000).size == (100, 80)

    # PIL's own guard (warning or error) is reported the same way.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    with pytest.raises(ImageError, match="decompression bomb") as exc_info:
        load_image(path, max_pixels=None)
    assert_names(exc_info, path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path, max_pixels=None)


def noisy(size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    noisy().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as exc_info:
        load_image(path)
    assert_names(exc_info, path)


def test_corrupt_non_image_missing_and_folder(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    good = tmp_path / "good.png"
    noisy().save(good)
    data = bytearray(good.read_bytes())
    data[40:200] = bytes(160)  # keep the signature, wreck the chunks
    corrupt.write_bytes(bytes(data))
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    missing = tmp_path / "missing.png"
    for path in (corrupt, text, missing, tmp_path):
        with pytest.raises(ImageError) as exc_info:
            load_image(path)
        assert_names(exc_info, path)
    with pytest.raises(ImageError, match="not found"):
        load_image(missing)


def test_unicode_and_spaces_in_names(tmp_path):
    folder = tmp_path / "mes images ü"
    folder.mkdir()
    path = folder / "chat noir 画像 é.png"
    Image.new("RGB", (5, 3), (1, 2, 3)).save(path)
    assert load_image(path).size == (5, 3)
    assert list_images(folder) == [path]
    broken = folder / "cassé ü.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(ImageError) as exc_info:
        load_image(broken)
    assert_names(exc_info, broken)


# ----------------------------------------------------------------- listing


def test_list_images(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.webp", "notes.txt", ".hidden.png", "._a.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]
    assert [p.name for p in list_images(tmp_path, extensions=("txt",))] == ["notes.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageError, match="no images") as exc_info:
        list_images(empty)
    assert_names(exc_info, empty)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        list_images(tmp_path / "nope")


# ----------------------------------------------------------------- tensors and PNG


def test_tensor_round_trip():
    rgb = noisy((7, 5))
    t = pil_to_tensor(rgb)
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert np.array_equal(pixels(tensor_to_pil(t)), pixels(rgb))

    gray = Image.new("L", (4, 3), 200)
    tg = pil_to_tensor(gray)
    assert tg.shape == (1, 3, 4)
    assert tensor_to_pil(tg).mode == "L"

    clamped = tensor_to_pil(torch.tensor([[[-1.0, 0.5, 2.0, float("nan")]]]))
    assert pixels(clamped).tolist() == [[0, 128, 255, 0]]
    with pytest.raises(ValueError, match=r"\[2, 3, 3\]"):
        tensor_to_pil(torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="RGBA"):
        pil_to_tensor(Image.new("RGBA", (2, 2)))


def test_save_png_is_deterministic_and_clean(tmp_path):
    t = torch.rand(3, 9, 11, generator=torch.Generator().manual_seed(1))
    a, b = tmp_path / "a.png", tmp_path / "out dir ü" / "b.png"
    save_png(t, a)
    save_png(t, b)
    assert a.read_bytes() == b.read_bytes()
    assert np.array_equal(pixels(Image.open(a)), pixels(tensor_to_pil(t)))

    # Metadata on a source image is not carried into the PNG.
    img = tensor_to_pil(t)
    img.info["icc_profile"] = b"fake profile"
    img.info["dpi"] = (300, 300)
    exif = Image.Exif()
    exif[0x0112] = 3
    img.info["exif"] = exif.tobytes()
    c = tmp_path / "c.png"
    save_png(img, c)
    assert c.read_bytes() == a.read_bytes()
    for chunk in (b"iCCP", b"eXIf", b"tEXt", b"tIME", b"pHYs"):
        assert chunk not in c.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_resize_to_fit():
    img = Image.new("RGB", (400, 200))
    assert resize_to_fit(img, 100).size == (100, 50)
    assert resize_to_fit(Image.new("RGB", (30, 90)), 45).size == (15, 45)
    small = Image.new("RGB", (40, 20))
    assert resize_to_fit(small, 100).size == (40, 20)
    assert resize_to_fit(small, 100, upscale=True).size == (100, 50)
    with pytest.raises(ValueError, match="max_side"):
        resize_to_fit(img, 0)


def test_file_stems_are_safe_and_unique():
    names = ["golden retriever", "crane", "crane", "Crane", "a/b", "..", "Granny Smith", "x:y*?"]
    assert file_stems(names) == ["golden_retriever", "crane", "crane-2", "Crane-3", "a_b", "image",
                                 "Granny_Smith", "x_y"]
    assert file_stems(str(i) for i in range(3)) == ["0", "1", "2"]


def test_write_image_folder_writes_every_image_and_reads_back_8_bit_values(tmp_path):
    images = torch.rand(3, 3, 5, 4)
    folder = tmp_path / "out" / "regularized"
    paths = write_image_folder(images, ["cat", "dog", "sports car"], folder)
    assert [p.name for p in paths] == ["cat.png", "dog.png", "sports_car.png"]
    assert sorted(p.name for p in folder.iterdir()) == ["cat.png", "dog.png", "sports_car.png"]
    loaded = read_images(paths, "RGB")
    assert torch.equal(loaded, images.mul(255).round().div(255))
    # A second write replaces the whole folder: no stale file survives, no staging folder is left.
    write_image_folder(images[:1], ["bee"], folder)
    assert [p.name for p in folder.iterdir()] == ["bee.png"]
    assert [p.name for p in folder.parent.iterdir()] == ["regularized"]


def test_write_image_folder_refuses_a_count_mismatch_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="2 images but 1 names"):
        write_image_folder(torch.rand(2, 1, 4, 4), ["a"], tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
