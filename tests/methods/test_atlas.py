"""The atlas's computations on small networks: top examples, receptive fields, the diversity term."""

from __future__ import annotations

import torch
from torch import nn

from cnnpipe.methods import atlas
from cnnpipe.networks.receptive_field import ReceptiveField, receptive_field


def _net(*layers) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*layers).eval()


def test_top_and_bottom_examples_are_the_true_ones_from_a_plain_forward_pass():
    net = _net(nn.Conv2d(1, 5, 3), nn.Tanh(), nn.Conv2d(5, 6, 3))
    images = torch.rand(40, 1, 10, 10)
    arrays = atlas.dataset_pass(net, "2", images, receptive_field(net, "2", (1, 10, 10)), top_n=4, bins=8)
    with torch.no_grad():
        plain = net(images).sum(dim=(2, 3))  # [N, C]: a^k of every image
    for unit in range(6):
        column = plain[:, unit].double()
        assert arrays["top_index"][unit].tolist() == column.argsort(descending=True)[:4].tolist()
        assert torch.allclose(torch.as_tensor(arrays["top_value"][unit]), column.sort(descending=True).values[:4],
                              atol=1e-4)
        assert arrays["bottom_index"][unit].tolist() == column.argsort()[:4].tolist()  # tanh: signed
        assert arrays["hist_counts"][unit].sum() == 40
    assert arrays["maximum"].shape == (6,)


def test_no_bottom_examples_after_a_relu():
    net = _net(nn.Conv2d(1, 3, 3), nn.ReLU())
    arrays = atlas.dataset_pass(net, "1", torch.rand(12, 1, 8, 8), None, top_n=3, bins=4)
    assert (arrays["bottom_index"] == -1).all() and (arrays["top_index"] >= 0).all()


def test_receptive_fields_match_the_hand_computed_ones():
    # conv 3x3 pad 1 -> pool 2 -> conv 3x3 pad 1 (the lecture CNN): 3, then 3 + 1 = 4 with jump 2,
    # then 4 + 2 * 2 = 8; the first field starts at -1, then -1 - 1 * 2 = -3.
    lecture = _net(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1))
    assert receptive_field(lecture, "0", (1, 16, 16)) == ReceptiveField((3, 3), (1, 1), (-1, -1))
    assert receptive_field(lecture, "3", (1, 16, 16)) == ReceptiveField((8, 8), (2, 2), (-3, -3))
    # conv 5x5 stride 2 -> conv 3x3 dilated 2 (effective 5): 5 + 4 * 2 = 13, jump 2, start 0.
    strided = _net(nn.Conv2d(1, 2, 5, stride=2), nn.Conv2d(2, 2, 3, dilation=2))
    assert receptive_field(strided, "1", (1, 32, 32)) == ReceptiveField((13, 13), (2, 2), (0, 0))
    field = receptive_field(lecture, "3", (1, 16, 16))
    assert field.box(0, 0, 16, 16) == (0, 0, 5, 5)  # clipped at the border
    assert field.box(3, 4, 16, 16) == (3, 5, 11, 13)


class _Branch(nn.Module):
    """A residual block with a strided main path and a strided 1x1 shortcut, as ResNet's."""

    def __init__(self):
        super().__init__()
        self.main = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.shortcut = nn.Conv2d(1, 2, 1, stride=2)

    def forward(self, x):
        return self.main(x) + self.shortcut(x)


def test_a_shortcut_on_the_blocks_input_is_not_counted_twice():
    net = _net(_Branch(), nn.Conv2d(2, 2, 3, padding=1))
    assert receptive_field(net, "1", (1, 16, 16)) == ReceptiveField((7, 7), (2, 2), (-3, -3))


def test_the_receptive_field_crop_holds_the_strongest_position():
    # Each conv copies its input's pixel (a centre-only kernel), so a unit's strongest position
    # is where the image's one bright pixel lands; its box must hold that pixel.
    net = _net(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
               nn.Conv2d(1, 1, 3, padding=1, bias=False))
    with torch.no_grad():
        for conv in (net[0], net[3]):
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
    generator = torch.Generator().manual_seed(1)
    images = torch.zeros(30, 1, 16, 16)
    spots = torch.randint(0, 16, (30, 2), generator=generator)
    for i, (row, col) in enumerate(spots):
        images[i, 0, row, col] = 0.5 + i / 60  # a distinct brightness per image: a strict ranking
    arrays = atlas.dataset_pass(net, "3", images, receptive_field(net, "3", (1, 16, 16)), top_n=30, bins=4)
    for image, (top, left, bottom, right) in zip(arrays["top_index"][0], arrays["top_box"][0]):
        row, col = spots[image].tolist()
        assert top <= row < bottom and left <= col < right, (image, (row, col), (top, left, bottom, right))
        assert bottom - top <= 8 and right - left <= 8
    assert arrays["top_index"][0][0] == 29  # the brightest spot


def _settings(weight: float, diverse: int = 4) -> dict:
    return dict(steps=40, lr=0.05, parameterization="pixel", jitter=0.0, leak=0.01, memory_mb=256, seed=0,
                diverse=diverse, diversity=weight)


def test_the_diversity_term_lowers_the_sets_similarity_against_independent_restarts(tiny_cnn):
    tiny_cnn, shape = tiny_cnn(size=12, fit_steps=15), (1, 12, 12)
    layer, units = "relu2", [0, 1, 2, 3]
    restarts, restart_values = atlas.xstar_and_diverse(tiny_cnn, layer, units, shape, _settings(0.0))
    diverse, diverse_values = atlas.xstar_and_diverse(tiny_cnn, layer, units, shape, _settings(1.0))
    independent = atlas.set_similarity(tiny_cnn, layer, restarts)
    pushed = atlas.set_similarity(tiny_cnn, layer, diverse)
    assert pushed.mean() < independent.mean() - 0.05, (pushed, independent)
    # member 0 is the lone x*, the same with or without the term
    assert torch.equal(restarts[:, 0], diverse[:, 0])
    lone, _ = atlas.xstar_and_diverse(tiny_cnn, layer, units, shape, _settings(1.0, diverse=1))
    assert torch.equal(lone[:, 0], diverse[:, 0])
    # every member is measured (the site compares each with the dataset maximum)
    assert diverse_values.shape == (4, 4)
    measured, _ = atlas.measure(tiny_cnn, layer, diverse.flatten(0, 1), torch.as_tensor(units).repeat_interleave(4))
    assert torch.allclose(measured.view(4, 4), diverse_values)
    assert torch.allclose(restart_values[:, 0], diverse_values[:, 0])


def test_a_units_x_star_does_not_depend_on_its_chunk(tiny_cnn):
    tiny_cnn, shape = tiny_cnn(size=12), (1, 12, 12)
    together, _ = atlas.xstar_and_diverse(tiny_cnn, "relu2", [0, 1, 2], shape, _settings(0.5, diverse=2))
    alone, _ = atlas.xstar_and_diverse(tiny_cnn, "relu2", [2], shape, _settings(0.5, diverse=2))
    assert (together[2] - alone[0]).abs().max() < 1e-4


def test_with_few_images_no_image_is_both_a_top_and_a_bottom_example():
    net = _net(nn.Conv2d(1, 2, 3), nn.Tanh())
    arrays = atlas.dataset_pass(net, "1", torch.rand(5, 1, 8, 8) - 0.5, None, top_n=9, bins=4)
    for unit in range(2):
        top, bottom = set(arrays["top_index"][unit]), set(arrays["bottom_index"][unit])
        assert len(top) == 3 and len(bottom) == 2 and not top & bottom
