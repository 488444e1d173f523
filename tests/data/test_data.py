"""Datasets: digits offline, the download path against a local HTTP server, image folders."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tv_datasets

from cnnpipe.data import download as data_download
from cnnpipe.data.download import SOURCES, ChecksumError, DownloadError, fetch
from cnnpipe.data.prepare import DATASETS, load_manifest, load_prepared, prepare_dataset
from cnnpipe.io.files import torch_save
from cnnpipe.io.images import ImageError

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def prepare(tmp_path, cfg, seed=0, tag="run", **kwargs):
    data_path = tmp_path / tag / "data.pt"
    manifest_path = tmp_path / tag / "manifest.json"
    manifest = prepare_dataset(cfg, seed, tmp_path / "cache", data_path, manifest_path, **kwargs)
    return manifest, data_path, manifest_path


@pytest.fixture
def server(file_server):
    return file_server


# ----------------------------------------------------------------- generated raw files


def idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def mnist_like(n_train=20, n_test=10, size=28):
    rng = np.random.default_rng(3)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "test_labels": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    files = {
        "train-images-idx3-ubyte.gz": idx_gz(arrays["train_images"]),
        "train-labels-idx1-ubyte.gz": idx_gz(arrays["train_labels"]),
        "t10k-images-idx3-ubyte.gz": idx_gz(arrays["test_images"]),
        "t10k-labels-idx1-ubyte.gz": idx_gz(arrays["test_labels"]),
    }
    return arrays, files


def cifar_tar_gz(per_batch=2, n_test=3):
    rng = np.random.default_rng(4)
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = (
            rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            [int(v) for v in rng.integers(0, 10, per_batch)],
        )
    batches["test_batch"] = (rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), [9, 0, 5][:n_test])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        members = {
            name: {"batch_label": name, "labels": labels, "data": images, "filenames": [f"{name}_{j}.png" for j in range(len(labels))]}
            for name, (images, labels) in batches.items()
        }
        members["batches.meta"] = {"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}
        for name, obj in members.items():
            payload = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return batches, gzip.compress(buffer.getvalue(), mtime=0)


# ----------------------------------------------------------------- digits


def test_digits_counts_shapes_manifest_and_reproducibility(tmp_path):
    cfg = {"name": "digits", "image_size": 28, "test_fraction": 0.2}
    manifest, data_path, manifest_path = prepare(tmp_path, cfg, seed=7, tag="a")
    tensors = load_prepared(data_path)
    assert tensors["train_images"].shape == (1437, 1, 28, 28)
    assert tensors["test_images"].shape == (360, 1, 28, 28)
    assert tensors["train_images"].dtype == torch.uint8 and tensors["train_labels"].dtype == torch.int64
    assert manifest == load_manifest(manifest_path)
    assert manifest["dataset"] == "digits"
    assert manifest["classes"] == [str(d) for d in range(10)]
    assert manifest["image_shape"] == [1, 28, 28]
    assert manifest["counts"] == {"train": 1437, "test": 360}
    assert manifest["seed"] == 7 and "load_digits" in manifest["source"]
    scaled = tensors["train_images"].double() / 255
    assert manifest["normalization"]["mean"] == [round(float(scaled.mean()), 6)]
    assert abs(manifest["normalization"]["std"][0] - float(scaled.std(unbiased=False))) < 1e-6

    # Stratified: each class keeps its share in the test split.
    all_labels = torch.cat([tensors["train_labels"], tensors["test_labels"]])
    per_class = torch.bincount(all_labels, minlength=10)
    test_per_class = torch.bincount(tensors["test_labels"], minlength=10)
    assert int(per_class.sum()) == 1797
    assert torch.all((test_per_class.double() - 0.2 * per_class.double()).abs() <= 1)

    _, data_b, manifest_b = prepare(tmp_path, cfg, seed=7, tag="b")
    assert data_b.read_bytes() == data_path.read_bytes()
    assert manifest_b.read_bytes() == manifest_path.read_bytes()

    _, data_c, _ = prepare(tmp_path, cfg, seed=8, tag="c")
    assert not torch.equal(load_prepared(data_c)["test_labels"], tensors["test_labels"])


def test_digits_native_size_values(tmp_path):
    from sklearn.datasets import load_digits

    manifest, data_path, _ = prepare(tmp_path, {"name": "digits", "image_size": 0, "test_fraction": 0.5})
    tensors = load_prepared(data_path)
    assert manifest["image_shape"] == [1, 8, 8]
    assert manifest["counts"] == {"train": 898, "test": 899}
    images = torch.cat([tensors["train_images"], tensors["test_images"]])
    assert int(images.max()) == 255 and int(images.min()) == 0
    # The first digit keeps its place (indices are sorted) and 0..16 maps onto 0..255.
    first = np.rint(load_digits().images[0] * 255 / 16).astype(np.uint8)
    train0 = tensors["train_images"][0, 0].numpy()
    test0 = tensors["test_images"][0, 0].numpy()
    assert np.array_equal(train0, first) or np.array_equal(test0, first)


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({"name": "nope"}, "dataset.name"),
        ({"name": "digits", "test_fraction": 1.5}, "dataset.test_fraction"),
        ({"name": "digits", "image_size": -3}, "dataset.image_size"),
        ({"name": "imagefolder", "channels": 2}, "dataset.channels"),
        ({"name": "mnist", "mirror": 5}, "dataset.mirror"),
        ({"name": "imagefolder"}, "dataset.folder"),
    ],
)
def test_config_errors_name_the_key(tmp_path, cfg, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")) as exc_info:
        prepare(tmp_path, cfg)
    if key == "dataset.name":
        assert all(name in str(exc_info.value) for name in DATASETS)


# ----------------------------------------------------------------- downloads


def test_default_sources_are_torchvisions():
    assert SOURCES["mnist"]["files"] == dict(tv_datasets.MNIST.resources)
    assert SOURCES["mnist"]["mirrors"] == list(tv_datasets.MNIST.mirrors)
    assert SOURCES["kmnist"]["files"] == dict(tv_datasets.KMNIST.resources)
    assert SOURCES["fashion_mnist"]["files"] == dict(tv_datasets.FashionMNIST.resources)
    cifar = tv_datasets.CIFAR10
    assert SOURCES["cifar10"]["files"] == {cifar.filename: cifar.tgz_md5}
    assert SOURCES["cifar10"]["mirrors"][0] + cifar.filename == cifar.url


def test_mnist_family_download_and_cache(tmp_path, server):
    arrays, files = mnist_like()
    mirror = server.serve("kmnist", files)
    sources = {name: md5(body) for name, body in files.items()}
    cfg = {"name": "kmnist", "image_size": 0, "mirror": mirror}

    manifest, data_path, manifest_path = prepare(tmp_path, cfg, tag="a", sources=sources)
    tensors = load_prepared(data_path)
    assert torch.equal(tensors["train_images"], torch.from_numpy(arrays["train_images"][:, None]))
    assert torch.equal(tensors["test_images"], torch.from_numpy(arrays["test_images"][:, None]))
    assert tensors["train_labels"].tolist() == arrays["train_labels"].tolist()
    assert tensors["test_labels"].tolist() == arrays["test_labels"].tolist()
    assert manifest["classes"] == list(tv_datasets.KMNIST.classes)
    assert manifest["image_shape"] == [1, 28, 28]
    assert manifest["counts"] == {"train": 20, "test": 10}
    assert manifest["normalization"]["mean"] == [round(float(arrays["train_images"].mean()) / 255, 6)]
    assert {r.rsplit("/", 1)[1] for r in server.requests} == set(files)
    assert sorted(p.name for p in (tmp_path / "cache" / "kmnist").iterdir()) == sorted(files)

    # Second run: everything comes from the cache, the server is not asked again.
    seen = len(server.requests)
    _, data_b, manifest_b = prepare(tmp_path, cfg, tag="b", sources=sources)
    assert len(server.requests) == seen
    assert data_b.read_bytes() == data_path.read_bytes()
    assert manifest_b.read_bytes() == manifest_path.read_bytes()

    # Resizing applies to downloaded datasets too.
    resized, data_c, _ = prepare(tmp_path, {**cfg, "image_size": 14}, tag="c", sources=sources)
    assert resized["image_shape"] == [1, 14, 14]
    assert load_prepared(data_c)["train_images"].shape == (20, 1, 14, 14)


def test_corrupt_download_is_rejected_and_removed(tmp_path, server):
    _, files = mnist_like()
    sources = {name: md5(body) for name, body in files.items()}
    bad_name = "train-labels-idx1-ubyte.gz"
    served = dict(files)
    served[bad_name] = files[bad_name][:-5] + b"XXXXX"
    mirror = server.serve("mnist", served)
    cfg = {"name": "mnist", "mirror": mirror}

    with pytest.raises(ChecksumError) as exc_info:
        prepare(tmp_path, cfg, sources=sources)
    message = str(exc_info.value)
    assert bad_name in message
    assert mirror + bad_name in message
    assert sources[bad_name] in message and md5(served[bad_name]) in message
    cache = tmp_path / "cache" / "mnist"
    assert bad_name not in {p.name for p in cache.iterdir()}
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]
    assert not (tmp_path / "run" / "data.pt").exists()
    assert not (tmp_path / "run" / "manifest.json").exists()

    # Once the mirror serves the right bytes, the run succeeds; the good file already
    # fetched before the failure comes from the cache.
    server.files[f"mnist/{bad_name}"] = files[bad_name]
    seen = len(server.requests)
    manifest, _, _ = prepare(tmp_path, cfg, sources=sources)
    assert manifest["classes"] == [str(d) for d in range(10)]
    fetched = {r.rsplit("/", 1)[1] for r in server.requests[seen:]}
    assert bad_name in fetched and "train-images-idx3-ubyte.gz" not in fetched


def test_corrupt_cached_file_is_downloaded_again(tmp_path, server):
    _, files = mnist_like(n_train=10, n_test=10)
    sources = {name: md5(body) for name, body in files.items()}
    mirror = server.serve("fm", files)
    paths = fetch("fashion_mnist", tmp_path, mirror=mirror, sources=sources)
    victim = paths["t10k-images-idx3-ubyte.gz"]
    victim.write_bytes(b"garbage")
    seen = len(server.requests)
    fetch("fashion_mnist", tmp_path, mirror=mirror, sources=sources)
    assert victim.read_bytes() == files["t10k-images-idx3-ubyte.gz"]
    assert {r.rsplit("/", 1)[1] for r in server.requests[seen:]} == {victim.name}


def test_unreachable_mirror_and_incomplete_sources(tmp_path, server):
    with pytest.raises(DownloadError, match="404") as exc_info:
        fetch("mnist", tmp_path, mirror=server.base + "/nothing/", sources={n: "0" * 32 for n in SOURCES["mnist"]["files"]})
    assert server.base + "/nothing/train-images-idx3-ubyte.gz" in str(exc_info.value)
    assert not isinstance(exc_info.value, ChecksumError)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        fetch("mnist", tmp_path, mirror=server.base, sources={"train-images-idx3-ubyte.gz": "0" * 32})


def test_malformed_idx_names_the_file(tmp_path, server):
    _, files = mnist_like()
    files["t10k-labels-idx1-ubyte.gz"] = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x09abc", mtime=0)
    mirror = server.serve("broken", files)
    sources = {name: md5(body) for name, body in files.items()}
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*need 9 bytes"):
        prepare(tmp_path, {"name": "mnist", "mirror": mirror}, sources=sources)


def test_cifar10_download(tmp_path, server):
    batches, archive = cifar_tar_gz()
    filename = tv_datasets.CIFAR10.filename
    mirror = server.serve("cifar", {filename: archive})
    sources = {filename: md5(archive)}
    cfg = {"name": "cifar10", "image_size": None, "mirror": mirror}

    manifest, data_path, _ = prepare(tmp_path, cfg, sources=sources)
    tensors = load_prepared(data_path)
    train = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    train_labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert torch.equal(tensors["train_images"], torch.from_numpy(train))
    assert tensors["train_labels"].tolist() == train_labels
    assert torch.equal(tensors["test_images"], torch.from_numpy(batches["test_batch"][0].reshape(-1, 3, 32, 32)))
    assert tensors["test_labels"].tolist() == batches["test_batch"][1]
    assert manifest["classes"] == CIFAR_CLASSES
    assert manifest["image_shape"] == [3, 32, 32]
    assert manifest["counts"] == {"train": 10, "test": 3}
    assert len(manifest["normalization"]["mean"]) == 3
    red = train[:, 0].astype(np.float64) / 255
    assert manifest["normalization"]["mean"][0] == round(float(red.mean()), 6)
    assert abs(manifest["normalization"]["std"][0] - float(red.std())) < 1e-6

    seen = len(server.requests)
    prepare(tmp_path, cfg, tag="again", sources=sources)
    assert len(server.requests) == seen


def test_cifar_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        payload = pickle.dumps({"label_names": Evil()})
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    path = tmp_path / "cifar.tar.gz"
    path.write_bytes(gzip.compress(buffer.getvalue()))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        data_download._load_cifar10({"cifar": path})


# ----------------------------------------------------------------- image folders


def make_tree(root, sizes=((12, 10), (9, 9), (20, 16))):
    colors = {"cat": (255, 0, 0), "dög ünï": (0, 0, 255)}
    for name, color in colors.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i, size in enumerate(sizes):
            Image.new("RGB", size, color).save(folder / f"img {i}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    Image.new("P", (5, 5), 0).save(root / "dög ünï" / "büld 3 画像.png")
    return colors


def test_imagefolder(tmp_path):
    root = tmp_path / "my photos"
    make_tree(root)
    cfg = {"name": "imagefolder", "folder": str(root), "image_size": 16, "test_fraction": 0.34, "channels": 3}
    manifest, data_path, manifest_path = prepare(tmp_path, cfg, seed=1)
    tensors = load_prepared(data_path)
    assert manifest["classes"] == ["cat", "dög ünï"]
    assert manifest["image_shape"] == [3, 16, 16]
    assert manifest["counts"]["train"] + manifest["counts"]["test"] == 7
    assert manifest["counts"]["test"] == 3  # ceil(0.34 * 7), both classes present
    assert set(tensors["test_labels"].tolist()) == {0, 1}
    for images, labels in ((tensors["train_images"], tensors["train_labels"]), (tensors["test_images"], tensors["test_labels"])):
        for image, label in zip(images, labels):
            colors = {tuple(image[:, 0, 0].tolist()), tuple(image[:, 8, 8].tolist())}
            allowed = {(255, 0, 0)} if label == 0 else {(0, 0, 255), (0, 0, 0)}
            assert colors <= allowed

    _, data_b, manifest_b = prepare(tmp_path, cfg, seed=1, tag="b")
    assert data_b.read_bytes() == data_path.read_bytes()
    assert manifest_b.read_bytes() == manifest_path.read_bytes()

    gray, gray_path, _ = prepare(tmp_path, {**cfg, "channels": 1}, seed=1, tag="gray")
    assert gray["image_shape"] == [1, 16, 16]
    assert set(load_prepared(gray_path)["train_images"].unique().tolist()) <= {76, 29, 0}


def test_imagefolder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class subfolders") as exc_info:
        prepare(tmp_path, {"name": "imagefolder", "folder": str(empty)})
    assert str(empty) in str(exc_info.value)

    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        prepare(tmp_path, {"name": "imagefolder", "folder": str(tmp_path / "absent")})

    single = tmp_path / "single"
    (single / "only").mkdir(parents=True)
    with pytest.raises(ValueError, match="single class"):
        prepare(tmp_path, {"name": "imagefolder", "folder": str(single)})

    root = tmp_path / "tree"
    make_tree(root)
    (root / "zebra").mkdir()
    (root / "zebra" / "readme.txt").write_text("no images here")
    with pytest.raises(ImageError, match="no images") as exc_info:
        prepare(tmp_path, {"name": "imagefolder", "folder": str(root), "image_size": 8})
    assert str(exc_info.value).startswith(str(root / "zebra"))

    (root / "zebra" / "stripes 1 ü.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50))
    (root / "zebra" / "stripes 2.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageError) as exc_info:
        prepare(tmp_path, {"name": "imagefolder", "folder": str(root), "image_size": 8})
    # Every unreadable file is named at once, each with its own reason.
    message = str(exc_info.value)
    assert message.startswith(f"{root}: dataset.folder: 2 image file(s) cannot be read")
    assert f"\n  {root / 'zebra' / 'stripes 1 ü.png'}: " in message and f"\n  {root / 'zebra' / 'stripes 2.jpg'}: " in message

    mixed = tmp_path / "mixed"
    make_tree(mixed)
    with pytest.raises(ValueError, match="dataset.image_size"):
        prepare(tmp_path, {"name": "imagefolder", "folder": str(mixed), "image_size": 0})

    tiny = tmp_path / "tiny"
    make_tree(tiny, sizes=((4, 4),))
    with pytest.raises(ValueError, match="dataset.test_fraction"):
        prepare(tmp_path, {"name": "imagefolder", "folder": str(tiny), "image_size": 4, "test_fraction": 0.1})


# ----------------------------------------------------------------- loading


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none.pt")):
        load_prepared(tmp_path / "none.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=str(garbage)):
        load_prepared(garbage)
    wrong = tmp_path / "wrong.pt"
    torch_save({"train_images": torch.zeros(2, 1, 4, 4, dtype=torch.uint8)}, wrong)
    with pytest.raises(ValueError, match="test_labels"):
        load_prepared(wrong)
    floats = tmp_path / "floats.pt"
    torch_save(
        {
            "train_images": torch.zeros(2, 1, 4, 4),
            "train_labels": torch.zeros(2, dtype=torch.int64),
            "test_images": torch.zeros(1, 1, 4, 4, dtype=torch.uint8),
            "test_labels": torch.zeros(1, dtype=torch.int64),
        },
        floats,
    )
    with pytest.raises(ValueError, match="train_images must be a uint8"):
        load_prepared(floats)

    with pytest.raises(FileNotFoundError, match="manifest"):
        load_manifest(tmp_path / "none.json")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(ValueError, match=str(bad_json)):
        load_manifest(bad_json)
    partial = tmp_path / "partial.json"
    partial.write_text('{"dataset": "digits"}')
    with pytest.raises(ValueError, match="classes"):
        load_manifest(partial)
