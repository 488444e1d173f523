"""Style pairs in batches (issue 13, "within a chunk, use the hardware"): pairs whose contents
have one size are optimized together with Adam, one forward and backward per step for all,
each with its own targets and loss, so each pair ends where it would alone (up to the
rounding of the network's sums); L-BFGS, which would couple them, refuses a batch."""

from __future__ import annotations

import logging

import pytest
import torch
from pipeline import snakemake
from test_style import TINY_LAYERS, smooth_image, tiny_net, write_png
from test_style_chunks import SETTINGS

from cnnpipe import ascent
from cnnpipe.io.images import load_image, pil_to_tensor
from cnnpipe.methods.style import optimize
from cnnpipe.methods.style import settings as style_settings
from cnnpipe.methods.style import targets as style_targets
from cnnpipe.runtime.chunks import ERROR_SUFFIX
from cnnpipe.stages import style
from cnnpipe.workflow import resources

ADAM = dict(**TINY_LAYERS, optimizer="adam", content_weight=3.0, style_weight=20.0, tv_weight=1.0, steps=25,
            progress=False)


def three_pairs():
    """Contents of one size; styles of other sizes, the second a blend of two images."""
    contents = [smooth_image(20, 16, seed) for seed in range(3)]
    styles = [smooth_image(18, 22, 10), [smooth_image(24, 24, 11), smooth_image(12, 30, 12)], smooth_image(20, 20, 13)]
    return contents, styles, [None, [0.7, 0.3], None]


@pytest.mark.parametrize("smoothing", ["none", "softmax"])
def test_a_batch_scores_each_pair_as_alone(smoothing):
    """The exact part: the batched objective of sample i is pair i's own objective."""
    net = tiny_net()
    contents, styles, weights = three_pairs()
    layers = (["conv2"], ["conv1", "conv2", "conv3"])
    targets = [style_targets.compute_targets(net, c, s, *layers, pad=2, smoothing=smoothing, temperature=2.0,
                                              style_weights=w) for c, s, w in zip(contents, styles, weights)]
    batch = style_targets.stack_targets(targets)
    images = torch.stack([smooth_image(24, 20, 20 + i) for i in range(3)])  # canvases with their border
    objective = optimize.style_objective(batch, 3.0, 20.0)
    with ascent.capture(net, sorted(objective.layers)) as acts:
        together = objective(acts.run(images))
    for i, pair_targets in enumerate(targets):
        alone_objective = optimize.style_objective(pair_targets, 3.0, 20.0)
        with ascent.capture(net, sorted(alone_objective.layers)) as acts:
            alone = alone_objective(acts.run(images[i : i + 1]))
        assert float(together[i]) == pytest.approx(float(alone[0]), rel=1e-5)


@pytest.mark.parametrize("init", ["content", "noise"])
def test_a_batch_of_pairs_ends_where_each_pair_ends_alone(init):
    net = tiny_net()
    contents, styles, weights = three_pairs()
    alone = [optimize.transfer(net, c, s, style_weights=w, init=init, **ADAM)
             for c, s, w in zip(contents, styles, weights)]
    together = optimize.transfer_batch(net, contents, styles, style_weights=weights, init=init, **ADAM)
    assert len(together) == 3
    for one, other in zip(alone, together):
        assert other.image.shape == one.image.shape and len(other.history) == len(one.history) == 25
        # Adam's normalized steps can flip a pixel whose gradient is near zero when the sums
        # round differently, so compare the mean pixel and the losses
        assert float((other.image - one.image).abs().mean()) < 2e-3
        for key in ("content_loss", "style_loss", "total_loss"):
            assert other.final[key] == pytest.approx(one.final[key], rel=2e-2), key
        assert other.initial == pytest.approx(one.initial, rel=1e-5)
    # and they did move: each pair's loss fell
    assert all(r.final["total_loss"] < 0.8 * r.initial["total_loss"] for r in together)


def test_multiscale_pairs_in_one_batch_per_scale():
    net = tiny_net()
    contents, styles, weights = three_pairs()

    def reader(i):
        return lambda size: (torch.nn.functional.interpolate(contents[i][None], size=(size, size * 4 // 5),
                                                             mode="bilinear")[0], styles[i])

    seen = []
    options = {k: v for k, v in ADAM.items() if k != "steps"}
    together = optimize.transfer_multiscale_batch(net, [reader(i) for i in range(3)], [12, 20], steps=[6, 4],
                                                        style_weights=weights, on_scale=lambda k, r: seen.append(
                                                            (k, len(r))), **options)
    assert seen == [(0, 3), (1, 3)]
    for i, result in enumerate(together):
        alone = optimize.transfer_multiscale(net, reader(i), [12, 20], steps=[6, 4], style_weights=weights[i],
                                                   **options)
        assert [s["size"] for s in result.scales] == [12, 20] and len(result.history) == 10
        assert result.final["total_loss"] == pytest.approx(alone.final["total_loss"], rel=2e-2)


def test_a_batch_needs_adam_and_contents_of_one_size():
    net = tiny_net()
    contents, styles, _ = three_pairs()
    with pytest.raises(ValueError, match="adam only, got 'lbfgs' for 3 pairs"):
        optimize.transfer_batch(net, contents, styles, **{**ADAM, "optimizer": "lbfgs"})
    with pytest.raises(ValueError, match=r"content images of one size, got \[\(16, 20\), \(20, 16\)\]"):
        optimize.transfer_batch(net, [contents[0], contents[1].transpose(1, 2)], styles[:2], **ADAM)
    with pytest.raises(ValueError, match="one style per content"):
        optimize.transfer_batch(net, contents, styles[:2], **ADAM)
    small = style_targets.compute_targets(net, smooth_image(12, 12, 0), styles[0], ["conv2"], ["conv1"])
    large = style_targets.compute_targets(net, smooth_image(12, 12, 0), styles[0], ["conv2"], ["conv1"], pad=2)
    with pytest.raises(ValueError, match="only pairs whose content images have one size share a batch"):
        style_targets.stack_targets([small, large])


@pytest.mark.parametrize("setting, optimizer, device, expected", [
    ("auto", "adam", "cuda", 8),
    ("auto", "lbfgs", "cuda", 1),
    ("auto", "adam", "cpu", 1),
    (1, "lbfgs", "cpu", 1),
    (3, "adam", "cpu", 3),
])
def test_batch_size(setting, optimizer, device, expected):
    assert style.batch_size({"batch": setting, "optimizer": optimizer}, torch.device(device)) == expected


@pytest.mark.parametrize("setting, optimizer, message", [
    (4, "lbfgs", "style.batch is 4 but style.optimizer is 'lbfgs'"),
    (0, "adam", "style.batch must be a positive integer or 'auto', got 0"),
    (True, "adam", "style.batch must be a positive integer or 'auto', got True"),
    ("8", "adam", "style.batch must be a positive integer or 'auto', got '8'"),
])
def test_bad_batch_settings_name_the_key(setting, optimizer, message):
    with pytest.raises(ValueError, match=message):
        style_settings.check_style_batch({"batch": setting, "optimizer": optimizer})


def test_a_chunk_declares_memory_for_its_batch():
    one = {"image_size": 1024, "lbfgs_history": 20, "optimizer": "adam", "batch": 1}
    # two more pairs' activations: 2 x 1.6e-3 MB per pixel (rounded up to 100 MB)
    grown = resources.style_mem_mb({**one, "batch": 4}) - resources.style_mem_mb({**one, "batch": 2})
    assert grown == pytest.approx(2 * 1.6e-3 * 1024**2, abs=100)
    assert resources.style_mem_mb({**one, "batch": "auto"}) == resources.style_mem_mb(one)


def test_a_chunk_batches_pairs_of_one_content_size(tmp_path, caplog):
    """Two contents of one size share a batch, the third (another size) runs alone, a broken
    image fails its own pair only; every pair's files are as in a chunk without batches, up to
    the rounding of the batched sums."""
    torch.set_num_threads(1)
    caplog.set_level(logging.INFO)
    settings = {**SETTINGS, "optimizer": "adam", "steps": 6, "init": "content"}
    inputs = tmp_path / "in"
    contents = [write_png(inputs / f"c{i}.png", 32, 24, seed=i) for i in range(2)]
    contents.append(write_png(inputs / "other.png", 24, 32, seed=5))
    style_png = write_png(inputs / "s.png", 28, 28, seed=7)
    broken = inputs / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    pairs = {f"{path.stem}__s": (str(path), str(style_png)) for path in [contents[0], broken, *contents[1:]]}
    folders = {batch: tmp_path / f"batch{batch}" for batch in (1, 2)}
    for batch, folder in folders.items():
        results = style.run_style_chunk(pairs, folder, {**settings, "batch": batch}, seed=3, device="cpu")
        assert sorted(results) == ["c0__s", "c1__s", "other__s"]
        assert "broken.png" in (folder / f"broken__s{ERROR_SUFFIX}").read_text()
    batched = folders[2]
    for name in ("c0__s", "c1__s"):
        log = (batched / f"{name}.log").read_text()
        assert "batch of 2 pairs: c0__s, c1__s" in log and f"{name}: done" in log and "other__s" not in log
    assert "batch of" not in (batched / "other__s.log").read_text()  # alone in its batch
    # the pair alone in its batch: the very bytes of the unbatched chunk
    assert (batched / "other__s.png").read_bytes() == (folders[1] / "other__s.png").read_bytes()
    for name in ("c0__s", "c1__s"):
        one, two = (pil_to_tensor(load_image(folder / f"{name}.png")) for folder in folders.values())
        assert float((one - two).abs().mean()) < 2e-3, name
        assert all((batched / f"{name}.{ext}").is_file() for ext in ("png", "figure.png", "csv", "rst", "log"))


@pytest.mark.e2e
def test_the_workflow_refuses_a_batch_with_lbfgs(tmp_path):
    override = tmp_path / "batch.yaml"
    override.write_text("style: {batch: 2, optimizer: lbfgs}\n")
    from pipeline import TINY

    result = snakemake(tmp_path, "-n", configfiles=(TINY, override), check=False)
    assert result.returncode != 0
    assert "style.batch is 2 but style.optimizer is 'lbfgs'" in result.stdout + result.stderr
