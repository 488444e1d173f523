"""Style transfer: Gram/content/TV losses, BatchNorm folding, layers, images, the transfer
itself on tiny networks, the pair list, one pair, and the `style` rules end to end (chunks of
pairs: test_style_chunks.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from pipeline import planned_resources, snakemake
from probes import forward_outputs
from torch import nn

from cnnpipe.io.images import ImageError
from cnnpipe.methods.style import losses as style_losses
from cnnpipe.methods.style import optimize
from cnnpipe.methods.style import targets as style_targets
from cnnpipe.networks.fold import fold_batchnorm, inference_model
from cnnpipe.networks.lecture_cnn import Normalize
from cnnpipe.stages import style
from cnnpipe.workflow import style_pairs as workflow_style_pairs

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / ".test" / "config.yaml"
PHOTOS = ["astronaut", "chelsea", "coffee", "hubble_deep_field", "ihc", "rocket"]


def tiny_net(seed: int = 0) -> nn.Sequential:
    """normalize -> conv1 -> relu1 -> pool1 -> conv2 -> relu2: named layers like a backbone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        from collections import OrderedDict

        return nn.Sequential(OrderedDict(
            normalize=Normalize([0.5] * 3, [0.25] * 3),
            conv1=nn.Conv2d(3, 8, 3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(16, 16, 3, padding=1),
        )).eval().requires_grad_(False)


def smooth_image(height: int, width: int, seed: int) -> torch.Tensor:
    """A colourful, smooth image [3, H, W] in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, max(2, height // 4), max(2, width // 4), generator=gen)
    return torch.nn.functional.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)[0]


def write_png(path: Path, height: int = 40, width: int = 60, seed: int = 0) -> Path:
    array = (smooth_image(height, width, seed).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# --------------------------------------------------------------------------- losses


def test_gram_matrix_by_hand():
    # two channels, one row of two pixels: F = [[1, 2], [3, 4]]
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    # F F^T = [[5, 11], [11, 25]], divided by C*H*W = 4
    assert style_losses.gram_matrix(features).tolist() == [[[1.25, 2.75], [2.75, 6.25]]]


def test_gram_matrix_does_not_depend_on_the_image_size():
    features = torch.randn(1, 4, 3, 5)
    tiled = features.repeat(1, 1, 2, 3)  # the same statistics on a 6 x 15 map
    assert torch.allclose(style_losses.gram_matrix(features), style_losses.gram_matrix(tiled), atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_gram_loss_matches_autograd(channels_last):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 5, 4, 3, generator=gen, dtype=torch.double)
    if channels_last:
        a = a.contiguous(memory_format=torch.channels_last)
    a.requires_grad_(True)
    b = torch.randn(5, 7, generator=gen, dtype=torch.double)
    target = b @ b.T / 7
    weights = torch.tensor([1.0, 3.0], dtype=torch.double)
    plain = ((style_losses.gram_matrix(a) - target) ** 2).mean((1, 2))
    fused = style_losses.gram_loss(a, target)
    assert torch.allclose(plain, fused)
    expected = torch.autograd.grad((plain * weights).sum(), a)[0]
    got = torch.autograd.grad((fused * weights).sum(), a)[0]
    assert torch.allclose(expected, got, atol=1e-12)
    # the gradient keeps the activation's layout, so the convolution backward needs no copy
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert torch.autograd.gradcheck(lambda x: style_losses.gram_loss(x, target), (a,))


def test_gram_loss_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="channels"):
        style_losses.gram_loss(torch.zeros(1, 3, 2, 2), torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        style_losses.gram_loss(torch.zeros(1, 3), torch.zeros(3, 3))


def test_content_and_tv_losses_by_hand():
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert style_losses.content_loss(features, torch.zeros(1, 1, 2, 2)).tolist() == [7.5]  # (1+4+9+16)/4
    # rows differ by 2, columns by 1: mean 4 + mean 1
    assert style_losses.tv_loss(features).tolist() == [5.0]
    assert style_losses.tv_loss(torch.ones(2, 3, 4, 4)).tolist() == [0.0, 0.0]


def test_range_penalty_and_free_pixels():
    x = torch.tensor([[[[-0.5, 0.0], [0.5, 1.25]]]])
    assert style_losses.range_penalty(x).tolist() == [0.25 + 0.0625]  # 0.5^2 below, 0.25^2 above
    free = optimize.FreePixels(x)
    assert torch.equal(free(), x) and free.pixels.requires_grad  # nothing clamped on the way


def test_border_features_do_not_count():
    net = tiny_net()
    content, style_image = smooth_image(16, 20, 0), smooth_image(12, 12, 1)
    targets = style_targets.compute_targets(net, content, style_image, ["conv2"], ["conv1", "conv3"], pad=4)
    # conv1 at full resolution, conv2 after one 2x2 pooling, conv3 after two
    assert targets.margins == {"conv2": (2, 2), "conv1": (4, 4), "conv3": (1, 1)}
    assert tuple(targets.content["conv2"].shape) == (1, 16, 8, 10)  # the picture's 16 x 20 / 2
    # the content itself, seen with any border, has zero content loss
    weights = {"content_weight": 1.0, "style_weight": 1.0, "tv_weight": 0.0}
    assert optimize.evaluate_losses(net, content, targets, weights)["content_loss"] == pytest.approx(0, abs=1e-10)
    assert torch.equal(style_targets.crop(style_targets.reflect_pad(content[None], 3), 3), content[None])


def net_with_logits() -> nn.Sequential:
    """tiny_net with a classifier on top: a layer whose output is a vector, like a backbone's logits."""
    net = tiny_net()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        net.add_module("pool", nn.AdaptiveAvgPool2d(1))
        net.add_module("flatten", nn.Flatten())
        net.add_module("logits", nn.Linear(16, 5))
    return net.eval().requires_grad_(False)


@pytest.mark.parametrize("smoothing", ["none", "softmax"])
def test_a_vector_content_layer_is_compared_as_it_is(smoothing):
    # the logits as a content layer: no positions, so no border margin and no softmax over channels
    net = net_with_logits()
    content, style_image = smooth_image(16, 20, 0), smooth_image(12, 12, 1)
    targets = style_targets.compute_targets(net, content, style_image, ["conv2", "logits"], ["conv1"], pad=4,
                                             smoothing=smoothing, temperature=2.0)
    assert targets.margins["logits"] == (0, 0) and targets.margins["conv2"] == (2, 2)
    assert "logits" not in targets.smooth_scale and ("conv2" in targets.smooth_scale) == (smoothing == "softmax")
    with torch.no_grad():
        assert torch.equal(targets.content["logits"], net(style_targets.reflect_pad(content[None], 4)))
    weights = {"content_weight": 1.0, "style_weight": 1.0, "tv_weight": 0.0}
    assert optimize.evaluate_losses(net, content, targets, weights)["content_loss"] == pytest.approx(0, abs=1e-10)
    # from noise, the logits term alone pulls the picture's prediction towards the photo's
    result = optimize.transfer(net, content, style_image, content_layers=["logits"], style_layers=["conv1"],
                                     style_weight=0.0, tv_weight=0.0, init="noise", steps=30, smoothing=smoothing,
                                     temperature=2.0, progress=False)
    assert result.final["content_loss"] < 0.5 * result.initial["content_loss"]


# --------------------------------------------------------------------------- the network


def test_fold_batchnorm_keeps_the_function_and_the_names():
    from collections import OrderedDict

    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1, bias=False), bn=nn.BatchNorm2d(4),
                                    relu=nn.ReLU())).eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.weight.uniform_(0.5, 2)
        net.bn.bias.uniform_(-1, 1)
    x = torch.rand(2, 3, 8, 8)
    folded = fold_batchnorm(net, x)
    assert folded is not net and isinstance(net.bn, nn.BatchNorm2d)  # the original is untouched
    assert isinstance(folded.bn, nn.Identity) and folded.get_submodule("bn") is folded.bn
    assert torch.allclose(folded(x), net(x), atol=1e-5)


def test_fold_batchnorm_falls_back_when_definition_order_is_not_run_order():
    class BnFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.conv(self.bn(x))

    net = BnFirst().eval()
    with torch.no_grad():
        net.bn.running_mean.fill_(0.5)
        net.bn.running_var.fill_(4.0)
    assert fold_batchnorm(net, torch.rand(1, 4, 5, 5)) is net
    plain = tiny_net()
    assert fold_batchnorm(plain) is plain  # nothing to fold: no copy


def test_inference_model_folds_efficientnet_and_keeps_its_features():
    from cnnpipe.networks.build import load_backbone

    net = load_backbone("efficientnet_lite0")
    content, style_layers = style_targets.resolve_layers(net)
    assert content == ["blocks.2", "blocks.5"] and style_layers == ["bn1", "blocks.1.0", "blocks.2.0", "blocks.3.0"]
    fast = inference_model(net, probe_shape=(3, 32, 32))
    assert fast is not net
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    x = torch.rand(1, 3, 40, 56)
    from cnnpipe import ascent

    with ascent.capture(net, content + style_layers) as a, ascent.capture(fast, content + style_layers) as b:
        a.run(x)
        b.run(x)
    for name in content + style_layers:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-4 * float(a[name].abs().max())), name


def test_vgg19_defaults_are_the_papers_layers():
    from cnnpipe.networks.build import load_backbone

    with torch.device("meta"):  # names only: no 548 MB of random weights
        vgg = load_backbone("vgg19", pretrained=False)
    content, style_layers = style_targets.resolve_layers(vgg)
    # conv4_2; conv1_1, conv2_1, conv3_1, conv4_1, conv5_1
    assert content == ["features.21"]
    assert style_layers == ["features.0", "features.5", "features.10", "features.19", "features.28"]
    assert style_targets.resolve_layers(vgg, ["relu4_2"], ["conv1_1", "features.5"]) == (
        ["features.22"], ["features.0", "features.5"])
    with pytest.raises(ValueError, match="style.style_layers.*conv9_9"):
        style_targets.resolve_layers(vgg, [], ["conv9_9"])


def test_a_network_without_defaults_needs_layers():
    with pytest.raises(ValueError, match="no content layers"):
        style_targets.resolve_layers(tiny_net())


# --------------------------------------------------------------------------- images


def test_preserve_colors_keeps_the_results_luminance_and_the_contents_chroma():
    content = smooth_image(8, 8, 1)[None]
    result = smooth_image(8, 8, 2)[None]
    kept = style_losses.preserve_colors(result, content)
    yiq = torch.tensor(style_losses._RGB_TO_YIQ)
    to_yiq = lambda x: torch.einsum("dc,bchw->bdhw", yiq, x)  # noqa: E731
    inside = (kept > 0.001) & (kept < 0.999)  # clamping to [0, 1] may move the rest
    inside = inside.all(1, keepdim=True)
    assert inside.float().mean() > 0.5
    assert torch.allclose(to_yiq(kept)[:, :1][inside], to_yiq(result)[:, :1][inside], atol=1e-5)
    assert torch.allclose(to_yiq(kept)[:, 1:][inside.expand(-1, 2, -1, -1)],
                          to_yiq(content)[:, 1:][inside.expand(-1, 2, -1, -1)], atol=1e-5)
    assert torch.allclose(style_losses.preserve_colors(content, content), content, atol=1e-5)


def test_load_pair_sizes_and_odd_file_names(tmp_path):
    content_png = write_png(tmp_path / "Katze mit Hut ü.png", height=30, width=60)
    style_png = write_png(tmp_path / "стиль 1.png", height=100, width=100, seed=1)
    c, s = style.load_pair(content_png, style_png, image_size=40)
    assert tuple(c.shape) == (3, 20, 40)  # longer side 40, aspect kept
    assert tuple(s.shape) == (3, 28, 28)  # same pixel area: sqrt(800) = 28.3
    c, s = style.load_pair(content_png, style_png, image_size=120, style_scale=0.5)
    assert tuple(c.shape) == (3, 60, 120) and tuple(s.shape) == (3, 42, 42)  # upscaled; half the side


def test_a_corrupt_image_names_the_file(tmp_path):
    good = write_png(tmp_path / "good.png")
    bad = tmp_path / "kaputt ü.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ImageError, match="kaputt ü.png"):
        style.load_pair(bad, good, image_size=32)
    with pytest.raises(ImageError, match="kaputt ü.png"):
        style.load_pair(good, bad, image_size=32)


def test_side_by_side_takes_images_of_different_shapes():
    fig = style.side_by_side(smooth_image(20, 40, 0), smooth_image(30, 30, 1), smooth_image(20, 40, 2),
                             title="t", footer="a\nb")
    assert len(fig.axes) == 3
    widths = [ax.get_position().width for ax in fig.axes]
    assert widths[0] == pytest.approx(widths[2]) and widths[1] == pytest.approx(widths[0] / 2, rel=0.01)


# --------------------------------------------------------------------------- transfer


TINY_LAYERS = dict(content_layers=["conv2"], style_layers=["conv1", "conv2", "conv3"])


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_transfer_moves_toward_the_style_and_counts_steps(optimizer):
    net = tiny_net()
    content, style_image = smooth_image(16, 24, 0), smooth_image(20, 12, 1)  # other sizes and shapes
    result = optimize.transfer(net, content, style_image, **TINY_LAYERS, style_weight=10.0, steps=15,
                        optimizer=optimizer, progress=False)
    assert result.image.shape == content.shape
    assert 0 <= float(result.image.min()) and float(result.image.max()) <= 1
    assert result.initial["content_loss"] == pytest.approx(0.0, abs=1e-6)  # started from the content
    assert result.final["style_loss"] < 0.7 * result.initial["style_loss"]
    assert result.final["total_loss"] < result.initial["total_loss"]
    assert result.history.shape == (15,)  # L-BFGS: 15 evaluations; Adam: 15 updates
    assert result.content_layers == ["conv2"] and result.style_layers == ["conv1", "conv2", "conv3"]


def test_transfer_is_deterministic_and_the_seed_matters_for_noise():
    net = tiny_net()
    content, style_image = smooth_image(16, 16, 0), smooth_image(16, 16, 1)

    def run(seed):
        return optimize.transfer(net, content, style_image, **TINY_LAYERS, steps=5, init="noise", seed=seed,
                                       progress=False)

    first, again, other = run(0), run(0), run(1)
    assert torch.equal(first.image, again.image)
    assert first.final == again.final
    assert not torch.equal(first.image, other.image)
    assert first.initial["content_loss"] > 0.01  # noise is not the content


def test_transfer_options_preserve_color_and_tv():
    net = tiny_net()
    content, style_image = smooth_image(16, 16, 0), smooth_image(16, 16, 1)
    plain = optimize.transfer(net, content, style_image, **TINY_LAYERS, steps=8, progress=False)
    kept = optimize.transfer(net, content, style_image, **TINY_LAYERS, steps=8, preserve_color=True,
                                   progress=False)
    assert torch.allclose(kept.image, style_losses.preserve_colors(plain.image, content), atol=1e-6)
    smooth = optimize.transfer(net, content, style_image, **TINY_LAYERS, steps=8, tv_weight=50.0, pad=0,
                                     progress=False)
    assert smooth.final["tv_loss"] < plain.final["tv_loss"]
    with pytest.raises(ValueError, match="optimizer"):
        optimize.transfer(net, content, style_image, **TINY_LAYERS, optimizer="sgd")
    with pytest.raises(ValueError, match="init"):
        optimize.transfer(net, content, style_image, **TINY_LAYERS, init="zeros")


def test_relative_losses_weigh_every_layer_alike():
    net = tiny_net()
    content, style_image = smooth_image(16, 16, 0), smooth_image(16, 16, 1)
    targets = style_targets.compute_targets(net, content, style_image, ["conv2"], ["conv1", "conv3"])
    for name, gram in targets.style.items():
        assert targets.style_norm[name] == pytest.approx(1 / (2 * float(gram.square().mean())))
    raw = style_targets.compute_targets(net, content, style_image, ["conv2"], ["conv1", "conv3"], relative=False)
    assert set(raw.style_norm.values()) == {1.0}
    # an all-zero response is exactly 1 away from the target in relative terms
    zeros = {"conv1": torch.zeros(1, 8, 16, 16), "conv2": torch.zeros(1, 16, 8, 8), "conv3": torch.zeros(1, 16, 4, 4)}
    assert float(optimize._style_value(zeros, targets)[0]) == pytest.approx(1.0, rel=1e-5)
    assert float(optimize._content_value(zeros, targets)[0]) == pytest.approx(1.0, rel=1e-5)


# --------------------------------------------------------------------------- pairs, one job


def test_style_pairs_from_the_list_and_from_folders(tmp_path):
    contents = tmp_path / "inhalt"
    styles = tmp_path / "stile"
    write_png(contents / "Katze mit Hut ü.png")
    write_png(contents / "b.jpg")
    write_png(styles / "wellen.png")
    own = write_png(tmp_path / "mine.png")
    settings = {"pairs": [{"content": "chelsea", "style": "ihc"}, {"content": str(own), "style": "ihc"}],
                "content_folder": str(contents), "style_folder": str(styles)}
    pairs = workflow_style_pairs.style_pairs(settings, photo_dir="results/photos", sample_photos=PHOTOS)
    assert list(pairs) == ["chelsea__ihc", "mine__ihc", "Katze mit Hut ü__wellen", "b__wellen"]
    assert pairs["chelsea__ihc"] == ("results/photos/chelsea.png", "results/photos/ihc.png")
    assert pairs["Katze mit Hut ü__wellen"] == (str(contents / "Katze mit Hut ü.png"), str(styles / "wellen.png"))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"pairs": []}, "no content/style pairs"),
        ({"pairs": None, "content_folder": None, "style_folder": None}, "no content/style pairs"),
        ({"pairs": [{"content": "chelsea", "style": "nope.png"}]}, r"style.pairs\[0\].style: 'nope.png'"),
        ({"pairs": [{"content": "chelsea"}]}, r"style.pairs\[0\]: expected"),
        ({"pairs": [], "content_folder": "somewhere"}, "style_folder is not"),
        ({"pairs": [], "content_folder": "missing_c", "style_folder": "missing_s"}, "missing_c"),
    ],
)
def test_style_pairs_errors_name_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        workflow_style_pairs.style_pairs(settings, sample_photos=PHOTOS)


def test_style_pairs_refuse_two_pairs_with_one_name(tmp_path):
    write_png(tmp_path / "a" / "x.png")
    write_png(tmp_path / "b" / "x.png")
    settings = {"pairs": [{"content": str(tmp_path / "a" / "x.png"), "style": "ihc"},
                          {"content": str(tmp_path / "b" / "x.png"), "style": "ihc"}]}
    with pytest.raises(ValueError, match="x__ihc"):
        workflow_style_pairs.style_pairs(settings, sample_photos=PHOTOS)


def test_run_pair_writes_image_figure_and_losses_deterministically(tmp_path):
    content_png = write_png(tmp_path / "in put.png", height=30, width=40)
    style_png = write_png(tmp_path / "style.png", height=50, width=30, seed=3)
    settings = {"backbone": "efficientnet_lite0", "content_layers": [], "style_layers": [],
                "content_weight": 1.0, "style_weight": 10.0, "tv_weight": 1.0, "optimizer": "lbfgs",
                "steps": 6, "lr": None, "init": "content", "preserve_color": False, "image_size": 48,
                "style_scale": 1.0}

    def run(folder: Path):
        outputs = dict(output_image=folder / "x.png", output_figure=folder / "fig.png", output_csv=folder / "x.csv")
        style.run_pair(content_png, style_png, settings, seed=0, device="cpu", progress=False, **outputs)
        return {k: Path(v).read_bytes() for k, v in outputs.items()}

    first = run(tmp_path / "one")
    torch.set_num_threads(1)  # run_pair seeds; the thread count must stay the same for equal bytes
    assert first == run(tmp_path / "two")
    assert Image.open(tmp_path / "one" / "x.png").size == (48, 36)
    table = pd.read_csv(tmp_path / "one" / "x.csv")
    assert table.loc[0, "content"] == "in put" and table.loc[0, "style"] == "style"
    assert table.loc[0, "style_layers"] == "stem blocks.1.0 blocks.2.0 blocks.3.0"
    assert table.loc[0, "evaluations"] == 6
    assert table.loc[0, "style_loss_final"] < table.loc[0, "style_loss_initial"]
    assert table.loc[0, "content_loss_initial"] == pytest.approx(0.0, abs=1e-6)  # started from the content


# --------------------------------------------------------------------------- the rule


@pytest.mark.e2e
def test_style_rule_end_to_end(tmp_path):
    tiny = yaml.safe_load(TINY.read_text())["style"]
    contents, styles = tmp_path / "inhalt ü", tmp_path / "stile"
    write_png(contents / "Katze mit Hut ü.png", height=40, width=60)
    (contents / "kaputt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    write_png(styles / "wellen.png", height=64, width=32, seed=5)
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"style": {**tiny, "content_folder": str(contents),
                                                  "style_folder": str(styles)}}, allow_unicode=True))
    configs = (TINY, override)
    # The configured pair is checked on the tiny run; here the pairs from the folders.
    targets = [f"results/style/{kind}Katze mit Hut ü__wellen.{ext}"
               for kind, ext in (("", "png"), ("figures/", "png"), ("losses/", "csv"))]
    work = tmp_path / "work"
    work.mkdir()
    # The corrupt image fails its own pair, naming the file; the other pairs (of its chunk) finish.
    run = snakemake(work, "--cores", "2", "--keep-going", *targets, "results/style/kaputt__wellen.png",
                    configfiles=configs, check=False)
    assert run.returncode != 0
    assert "kaputt.png" in (work / "results" / "logs" / "style" / "kaputt__wellen.log").read_text()
    assert not (work / "results" / "style" / "kaputt__wellen.png").exists()
    for target in targets:
        data = (work / target).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if target.endswith(".png") else data.startswith(b"content,")
    table = pd.read_csv(work / "results" / "style" / "losses" / "Katze mit Hut ü__wellen.csv")
    assert table.loc[0, "style_loss_final"] < table.loc[0, "style_loss_initial"]
    assert table.loc[0, "evaluations"] == tiny["steps"]
    assert Image.open(work / "results" / "style" / "Katze mit Hut ü__wellen.png").size == (48, 32)

    # An empty pair list is refused before any job runs.
    override.write_text(yaml.safe_dump({"style": {**tiny, "pairs": []}}))
    empty = snakemake(work, "--dry-run", configfiles=configs, check=False)
    assert empty.returncode != 0
    assert "no content/style pairs" in empty.stdout + empty.stderr


def test_the_rule_asks_for_a_gpu_only_where_the_config_uses_one(tmp_path):
    """As planned for a cluster: a style chunk's job requests one GPU when the run is on a GPU
    device; the local job that publishes a pair's files requests none."""
    for device, gpus in (("cuda", "1"), ("cpu", "0")):
        plan = snakemake(tmp_path, "--dry-run", "results/style/chelsea__ihc.png", "--config", f"device={device}")
        assert [job.get("gpu") for job in planned_resources(plan)["style_chunk"]] == [gpus], device
        assert [job.get("gpu") for job in planned_resources(plan)["style_pair"]] == [None], device


def read_rgb(path: Path) -> torch.Tensor:
    """An image file as [3, H, W] in [0, 1], read by Pillow."""
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def gram_matrices(model: nn.Module, layers, image: torch.Tensor, scales=None) -> list[torch.Tensor]:
    """F F^T / (C H W) of each layer's output for one image, by forward hooks of our own. With
    ``scales`` (one per layer) F is first smoothed: C x the softmax over the channels of F / scale."""
    outputs = forward_outputs(model, layers, image)
    grams = []
    for index, name in enumerate(layers):
        features = outputs[name][0].flatten(1)
        if scales is not None:
            features = features.shape[0] * torch.softmax(features / scales[index], dim=0)
        grams.append(features @ features.T / features.numel())
    return grams


# The style loss falls at least this many times on the tiny config (reached: x1.95 by the CSV,
# x2.13 measured here; with 20 evaluations x2.3). A broken loss, target or optimizer stays near x1.
STYLE_FACTOR = 1.5


@pytest.mark.e2e
def test_the_tiny_run_takes_the_style_statistics_of_the_style_image(tiny_run, tiny_config):
    """What style transfer is for: the result's Gram matrices are much closer to the style
    image's than the content's were, measured here on the PNG the run wrote."""
    from cnnpipe.networks.aliases import resolve_layer
    from cnnpipe.networks.build import load_backbone

    results = tiny_run / "results"
    cfg = tiny_config["style"]
    for pair in cfg["pairs"]:
        name = f"{pair['content']}__{pair['style']}"
        row = pd.read_csv(results / "style" / "losses" / f"{name}.csv").iloc[0]
        assert row["evaluations"] == cfg["steps"]
        assert row["style_loss_final"] <= row["style_loss_initial"] / STYLE_FACTOR, row.to_dict()
        # the independent judge measured the PNG, and the caption says so
        assert row["judge"] == cfg["judge"] and row["style_distance"] >= 0, row.to_dict()
        assert str(row["content_kept"]) in ("True", "False")
        assert "style distance" in (results / "captions" / "style" / f"{name}.rst").read_text()

        net = load_backbone(row["backbone"])
        layers = [resolve_layer(net, layer) for layer in row["style_layers"].split()]
        content, style_image = style.load_pair(results / "photos" / f"{pair['content']}.png",
                                               results / "photos" / f"{pair['style']}.png",
                                               int(cfg["image_size"]), float(cfg["style_scale"]))
        result = read_rgb(results / "style" / f"{name}.png")
        assert result.shape == content.shape
        scales = None
        if cfg["smoothing"] == "softmax":
            # the temperature in units of each layer's root mean square on the style image
            outputs = forward_outputs(net, layers, style_image)
            scales = [cfg["smoothing_temperature"] * float(outputs[name].square().mean().sqrt()) for name in layers]
        targets = gram_matrices(net, layers, style_image, scales)

        def distance(image):
            """Mean over the layers of the squared Gram error relative to the style's Gram."""
            grams = gram_matrices(net, layers, image, scales)
            return float(np.mean([float((g - t).square().mean() / t.square().mean()) for g, t in zip(grams, targets)]))

        before, after = distance(content), distance(result)
        # The CSV's relative errors are these (it leaves out features of a mirrored border).
        assert row["style_loss_initial"] == pytest.approx(before, rel=0.15)
        assert row["style_loss_final"] == pytest.approx(after, rel=0.1)
        assert after <= before / STYLE_FACTOR, (before, after)


@pytest.mark.parametrize(("content", "style", "key"), [
    ("`x`_", "ihc", "content"), ("a:b", "ihc", "content"), ("a*b*", "ihc", "content"), ("|s|", "ihc", "content"),
    ("_lead", "ihc", "content"), ("chelsea", "trail_", "style"), ("chelsea", "x`y", "style"),
])
def test_style_pair_names_that_restructuredtext_reads_as_markup_are_refused(tmp_path, content, style, key):
    """A pair's name (``<content>__<style>``) names its result files, which Snakemake's report
    writes as hyperlink targets: markup there breaks every caption (issue 26, item 4). The
    error names the key and the file at fault."""
    files = {name: str(write_png(tmp_path / f"{name}.png")) for name in (content, style) if name not in PHOTOS}
    settings = {"pairs": [{"content": files.get(content, content), "style": files.get(style, style)}]}
    culprit = files[content if key == "content" else style]
    with pytest.raises(ValueError, match=rf"style.pairs\[0\].{key}: {re.escape(repr(culprit))}.*reStructuredText"):
        workflow_style_pairs.style_pairs(settings, sample_photos=PHOTOS)
    folders = {"pairs": [], "content_folder": str(tmp_path), "style_folder": str(tmp_path)}
    with pytest.raises(ValueError, match=r"style.(content|style)_folder.*reStructuredText"):
        workflow_style_pairs.style_pairs(folders, sample_photos=PHOTOS)



def test_style_pair_names_join_names_that_are_harmless_alone(tmp_path):
    """The ``__`` between the names is no markup after any character (checked with docutils):
    ``IMG (1)__ihc`` is a fine name for a result."""
    content = write_png(tmp_path / "IMG (1).png")
    pairs = workflow_style_pairs.style_pairs({"pairs": [{"content": str(content), "style": "ihc"}]},
                                             sample_photos=PHOTOS)
    assert list(pairs) == ["IMG (1)__ihc"]
