"""Fooling images (Nguyen et al., CVPR 2015): unrecognizable images the CNN is sure about.

Two ways to make one image per class:

* **gradient** - gradient ascent on log p(class | x) from uniform noise ("TV static") with the
  engine ``cnnpipe.ascent``, in short rounds; after each round the images are rounded to the
  8-bit values a PNG stores, and a class stops once its confidence on them reaches the
  target, so the image stays as close to static as the target allows.
* **evolution** - a CPPN (compositional pattern-producing network: sine, sigmoid, Gaussian and
  linear units over the pixel coordinates x, y and the distance d to the centre) per image,
  evolved by MAP-Elites over the classes: every class keeps its most confident genome (its
  elite); each generation every class's elite has ``offspring`` mutated children, all
  children of all classes go through the CNN in one batch, and a child replaces the elite of
  *any* class it beats. Fitness is computed on the images quantized to 8 bits, exactly what a
  PNG stores, so the confidence survives saving.

Confidence is the CNN's softmax probability of the target class; ``confidence_after_png`` is
measured on images saved with ``cnnpipe.images.save_png`` and read back with ``load_image``
(the gradient method keeps 8-bit images throughout, so there the two agree).

The network is the trained CNN (every class) or an ImageNet backbone (the configured
``imagenet_classes``), see ``cnnpipe.classifier``; image j is always for class ``targets[j]``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnnpipe import ascent as A
from cnnpipe.classifier import SCORES_LAYER, load_classifier
from cnnpipe.device import seed_everything, select_device
from cnnpipe.fileio import save_figure, write_csv
from cnnpipe.images import load_image, pil_to_tensor, save_png
from cnnpipe.logs import progress
from cnnpipe.plots import image_grid

log = logging.getLogger(__name__)

METHODS = ("gradient", "evolution")
CSV_COLUMNS = [
    "class",
    "confidence",
    "confidence_after_png",
    "independent_prediction",
    "independent_probability",
    "predicted_after_png",
    "reached_target",
    "iterations",
    "class_index",
]


# --------------------------------------------------------------------------- shared


def png_roundtrip(images: torch.Tensor) -> torch.Tensor:
    """Save each image [C, H, W] in [0, 1] with ``save_png``, read it back with ``load_image``."""
    mode = {1: "L", 3: "RGB"}.get(images.shape[1])
    if images.dim() != 4 or mode is None:
        raise ValueError(f"png_roundtrip: expected [N, 1 or 3, H, W], got {list(images.shape)}")
    loaded = []
    with tempfile.TemporaryDirectory(prefix="cnnpipe-png-") as folder:
        for i, image in enumerate(images):
            path = save_png(image, Path(folder) / f"{i}.png")
            loaded.append(pil_to_tensor(load_image(path, mode=mode)))
    return torch.stack(loaded)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """The values an 8-bit PNG keeps: round(x * 255) / 255 (as ``tensor_to_pil`` rounds)."""
    return images.clamp(0, 1).mul(255).round().div(255)


@torch.no_grad()
def class_probabilities(model: nn.Module, images: torch.Tensor, device=None) -> torch.Tensor:
    """Softmax over the model's output for images in [0, 1], on the CPU as [N, K]."""
    device = next(model.parameters()).device if device is None else device
    with A.frozen(model):  # eval mode (no dropout), restored afterwards
        return torch.softmax(model(images.to(device)).float(), dim=1).cpu()


@dataclass
class FoolingResult:
    """One image per class: the optimized images, the images read back from PNG, the CNN's
    probability of the target class before and after the PNG trip, and iterations spent
    (gradient steps or generations; the whole budget where the target was not reached).
    Image j is for class ``targets[j]``."""

    method: str
    images: torch.Tensor
    loaded: torch.Tensor
    confidence: torch.Tensor
    confidence_after_png: torch.Tensor
    predicted_after_png: torch.Tensor
    iterations: list[int]
    target: float
    targets: list[int] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def reached(self) -> torch.Tensor:
        return self.confidence_after_png >= self.target


def _finish(method, model, images, iterations, target, targets, extra=None) -> FoolingResult:
    classes = torch.as_tensor(targets)
    rows = torch.arange(len(images))
    loaded = png_roundtrip(images)
    before = class_probabilities(model, images)
    after = class_probabilities(model, loaded)
    return FoolingResult(
        method=method,
        images=images,
        loaded=loaded,
        confidence=before[rows, classes],
        confidence_after_png=after[rows, classes],
        predicted_after_png=after.argmax(1),
        iterations=list(iterations),
        target=float(target),
        targets=[int(c) for c in targets],
        extra=extra or {},
    )


def _targets_and_shape(model: nn.Module, image_shape, targets) -> tuple[list[int], tuple[int, int, int]]:
    """The target classes (default: every output of the model) and the image shape."""
    shape = tuple(int(s) for s in image_shape)
    if targets is None:
        with torch.no_grad(), A.frozen(model):
            out = model(torch.zeros(1, *shape, device=next(model.parameters()).device))
        targets = range(int(out.shape[1]))
    return [int(c) for c in targets], shape


# --------------------------------------------------------------------------- gradient


def gradient_fooling(
    model: nn.Module,
    image_shape,
    *,
    target: float = 0.999,
    steps: int = 500,
    lr: float = 0.01,
    check_every: int = 5,
    layer: str = SCORES_LAYER,
    targets: list[int] | None = None,
    seed: int = 0,
    show_progress: bool = True,
) -> FoolingResult:
    """Ascend log p(c | x) from uniform noise for every class c in ``targets`` (default: all)
    until the confidence on the 8-bit image reaches ``target`` or ``steps`` Adam steps are spent.

    Runs in rounds of ``check_every`` steps; after each the images are rounded to 8 bits and
    Adam restarts from them, so the image measured is the image kept. Finished classes leave
    the batch.
    """
    if not 0 < target < 1:
        raise ValueError(f"fooling target confidence must be in (0, 1), got {target}")
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")
    targets, shape = _targets_and_shape(model, image_shape, targets)
    k = len(targets)
    # TV static: uniform noise per image, from that image's own seeded stream.
    current = torch.stack([torch.rand(shape, generator=A.sample_generator(seed, j)) for j in range(k)])
    current = quantize(current)
    iterations = [steps] * k
    remaining = list(range(k))  # image indices
    done = 0
    bar = progress(total=steps, desc="gradient fooling", disable=not show_progress)
    try:
        while remaining and done < steps:
            # ``current`` holds 8-bit values, so this is the confidence a PNG would give; a
            # class already at the target (even on noise) needs no step.
            probs = class_probabilities(model, current[remaining])
            hit = [i for j, i in enumerate(remaining) if probs[j, targets[i]] >= target]
            for i in hit:
                iterations[i] = done
            remaining = [i for i in remaining if i not in hit]
            if not remaining:
                break
            n = min(check_every, steps - done)
            result = A.ascend(
                model,
                [A.class_log_softmax(layer, targets[i]) for i in remaining],
                A.pixel_image(images=current),
                indices=remaining,
                steps=n,
                lr=lr,
                seed=seed,
                progress=False,
            )
            current[remaining] = quantize(result.images)
            done += n
            bar.update(n)
        if remaining:
            probs = class_probabilities(model, current[remaining])
            for j, i in enumerate(remaining):
                if probs[j, targets[i]] >= target:
                    iterations[i] = done
    finally:
        bar.close()
    return _finish("gradient", model, current, iterations, target, targets, {"budget": steps})


# --------------------------------------------------------------------------- CPPN


# Unit types of the hidden nodes, in the order of their codes.
ACTIVATIONS = ("sine", "sigmoid", "gaussian", "linear")
N_INPUTS = 4  # x, y, d, bias
WEIGHT_LIMIT = 3.0
LINEAR_LIMIT = 5.0  # linear units are clipped here so deep chains stay bounded


def coordinates(height: int, width: int) -> np.ndarray:
    """CPPN inputs [4, H*W]: x and y in [-1, 1], d = distance to the centre / sqrt(2), bias 1."""
    ys = np.linspace(-1.0, 1.0, height)
    xs = np.linspace(-1.0, 1.0, width)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    d = np.sqrt(x**2 + y**2) / math.sqrt(2.0)
    return np.stack([x.ravel(), y.ravel(), d.ravel(), np.ones(height * width)])


def _activate(z: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Apply each genome's unit type (codes [P]) to its pre-activations z [P, N]."""
    out = np.empty_like(z)
    # Each unit type only on the genomes that use it (computing all four for all costs 4x).
    for code, fn in enumerate(_UNIT_FUNCTIONS):
        rows = codes == code
        if rows.any():
            out[rows] = fn(z[rows])
    return out


_UNIT_FUNCTIONS = (
    np.sin,
    lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)),  # the logistic sigmoid, without overflow
    lambda z: np.exp(-0.5 * np.minimum(z * z, 200.0)),
    lambda z: np.clip(z, -LINEAR_LIMIT, LINEAR_LIMIT),
)


@dataclass
class CPPN:
    """A batch of P CPPN genomes with room for ``hidden`` hidden nodes each.

    Hidden node j reads the 4 inputs and hidden nodes < j (a feed-forward DAG in slot order);
    the C output nodes read everything, and pixel = sigmoid(output). ``weights`` [P, R, S]
    (R = hidden + C rows, S = 4 + hidden sources), ``enabled`` [P, R, S] which connections
    exist, ``active`` [P, hidden] which hidden slots hold a node, ``units`` [P, hidden] codes
    into ``ACTIVATIONS``.
    """

    weights: np.ndarray
    enabled: np.ndarray
    active: np.ndarray
    units: np.ndarray

    @property
    def size(self) -> int:
        return self.weights.shape[0]

    @property
    def hidden(self) -> int:
        return self.active.shape[1]

    @property
    def channels(self) -> int:
        return self.weights.shape[1] - self.hidden

    def take(self, index) -> CPPN:
        index = np.asarray(index)
        return CPPN(self.weights[index].copy(), self.enabled[index].copy(), self.active[index].copy(),
                    self.units[index].copy())

    def put(self, index, other: CPPN) -> None:
        self.weights[index], self.enabled[index] = other.weights, other.enabled
        self.active[index], self.units[index] = other.active, other.units

    def nodes(self) -> np.ndarray:
        """Number of hidden nodes per genome [P]."""
        return self.active.sum(axis=1)

    def connections(self) -> np.ndarray:
        """Number of live connections per genome [P]."""
        return (self.enabled & self.live_sources()[:, None, :]).sum(axis=(1, 2))

    def live_sources(self) -> np.ndarray:
        """[P, S]: inputs always, hidden sources where the slot is active."""
        return np.concatenate([np.ones((self.size, N_INPUTS), dtype=bool), self.active], axis=1)


def allowed_connections(hidden: int, channels: int) -> np.ndarray:
    """[R, S] mask of possible connections: hidden j <- inputs and hidden < j; outputs <- all."""
    rows = hidden + channels
    mask = np.zeros((rows, N_INPUTS + hidden), dtype=bool)
    for j in range(hidden):
        mask[j, : N_INPUTS + j] = True
    mask[hidden:, :] = True
    return mask


def random_cppn(rng: np.random.Generator, size: int, hidden: int, channels: int, initial_nodes: int = 2) -> CPPN:
    """``size`` random minimal genomes: ``initial_nodes`` hidden nodes of random types, every
    allowed connection among them present, weights ~ N(0, 1)."""
    if not 0 <= initial_nodes <= hidden:
        raise ValueError(f"initial_nodes must be in 0..{hidden}, got {initial_nodes}")
    rows, sources = hidden + channels, N_INPUTS + hidden
    active = np.zeros((size, hidden), dtype=bool)
    active[:, :initial_nodes] = True
    live = np.concatenate([np.ones((size, N_INPUTS), dtype=bool), active], axis=1)
    row_live = np.concatenate([active, np.ones((size, channels), dtype=bool)], axis=1)
    enabled = allowed_connections(hidden, channels)[None] & live[:, None, :] & row_live[:, :, None]
    weights = np.clip(rng.normal(0.0, 1.0, (size, rows, sources)), -WEIGHT_LIMIT, WEIGHT_LIMIT)
    units = rng.integers(0, len(ACTIVATIONS), (size, hidden)).astype(np.int8)
    return CPPN(weights * enabled, enabled, active, units)


def render_cppn(genomes: CPPN, height: int, width: int) -> np.ndarray:
    """Images [P, C, H, W] in (0, 1), all genomes at once."""
    coords = coordinates(height, width)
    p, hidden = genomes.size, genomes.hidden
    values = np.zeros((p, N_INPUTS + hidden, height * width))
    values[:, :N_INPUTS] = coords
    w = genomes.weights * genomes.enabled * genomes.live_sources()[:, None, :]
    for j in range(hidden):
        if not genomes.active[:, j].any():
            continue
        z = np.einsum("ps,psn->pn", w[:, j, : N_INPUTS + j], values[:, : N_INPUTS + j])
        values[:, N_INPUTS + j] = _activate(z, genomes.units[:, j]) * genomes.active[:, j, None]
    z = np.einsum("pcs,psn->pcn", w[:, hidden:], values)
    return (0.5 * (1.0 + np.tanh(0.5 * z))).reshape(p, genomes.channels, height, width)


def _pick(rng: np.random.Generator, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One random True position per genome of mask [P, ...]: (flat index [P], has-one [P])."""
    keys = np.where(mask, rng.random(mask.shape), -1.0).reshape(len(mask), -1)
    return keys.argmax(axis=1), keys.max(axis=1) >= 0


def mutate(
    genomes: CPPN,
    rng: np.random.Generator,
    *,
    weight_rate: float = 0.2,
    weight_sigma: float = 0.5,
    add_node: float = 0.1,
    add_connection: float = 0.15,
    remove_connection: float = 0.05,
    change_unit: float = 0.05,
) -> CPPN:
    """Mutated copies: perturb weights, add a node (next free slot, wired to a random subset of
    the live nodes and to every output), add or remove a connection, change a unit's type.
    Every child changes at least one weight."""
    g = genomes.take(np.arange(genomes.size))
    p, hidden, channels = g.size, g.hidden, g.channels
    allowed = allowed_connections(hidden, channels)[None]
    rows = np.arange(p)

    # Add a node in the first free slot.
    free = ~g.active
    adding = (rng.random(p) < add_node) & free.any(axis=1)
    slot = free.argmax(axis=1)
    for i in np.flatnonzero(adding):
        j = slot[i]
        g.active[i, j] = True
        g.units[i, j] = rng.integers(0, len(ACTIVATIONS))
        live = g.live_sources()[i] & allowed[0, j]
        wire = live & (rng.random(live.shape) < 0.5)
        wire[rng.choice(np.flatnonzero(live))] = True
        g.enabled[i, j] = wire
        g.weights[i, j] = np.where(wire, rng.normal(0.0, 1.0, live.shape), 0.0)
        g.enabled[i, hidden:, N_INPUTS + j] = True
        g.weights[i, hidden:, N_INPUTS + j] = rng.normal(0.0, 1.0, channels)

    live = g.live_sources()[:, None, :]
    row_live = np.concatenate([g.active, np.ones((p, channels), dtype=bool)], axis=1)[:, :, None]
    possible = allowed & live & row_live

    # Add a connection that is possible but absent.
    index, has = _pick(rng, possible & ~g.enabled)
    adding = has & (rng.random(p) < add_connection)
    flat_enabled, flat_weights = g.enabled.reshape(p, -1), g.weights.reshape(p, -1)
    flat_enabled[rows[adding], index[adding]] = True
    flat_weights[rows[adding], index[adding]] = rng.normal(0.0, 1.0, adding.sum())

    # Remove a connection (never the last one into an output).
    index, has = _pick(rng, possible & g.enabled)
    removing = has & (rng.random(p) < remove_connection)
    flat_enabled[rows[removing], index[removing]] = False
    into_output = (g.enabled & possible)[:, hidden:].any(axis=2).all(axis=1)
    undo = removing & ~into_output
    flat_enabled[rows[undo], index[undo]] = True

    # Change the unit type of a live hidden node.
    index, has = _pick(rng, g.active)
    changing = has & (rng.random(p) < change_unit)
    g.units[rows[changing], index[changing]] = rng.integers(0, len(ACTIVATIONS), changing.sum())

    # Perturb weights; at least one per child so no child is a plain copy.
    present = g.enabled & possible
    perturb = present & (rng.random(present.shape) < weight_rate)
    index, has = _pick(rng, present)
    perturb.reshape(p, -1)[rows[has], index[has]] = True
    noise = rng.normal(0.0, weight_sigma, g.weights.shape)
    g.weights = np.clip(np.where(perturb, g.weights + noise, g.weights), -WEIGHT_LIMIT, WEIGHT_LIMIT)
    g.weights = g.weights * g.enabled
    return g


@torch.no_grad()
def _log_probs(model: nn.Module, images: np.ndarray, device) -> torch.Tensor:
    x = torch.from_numpy(images).float().to(device)
    with A.frozen(model):
        return torch.log_softmax(model(x).float(), dim=1).cpu()


def evolve_fooling(
    model: nn.Module,
    image_shape,
    *,
    target: float = 0.99,
    generations: int = 300,
    offspring: int = 16,
    hidden: int = 12,
    targets: list[int] | None = None,
    seed: int = 0,
    show_progress: bool = True,
) -> FoolingResult:
    """MAP-Elites over the classes ``targets`` (default: all) with CPPN genomes (see the
    module docstring).

    Fitness of a genome for class c: log p(c | its image quantized to 8 bits). Evolution runs
    all ``generations`` (confidence keeps rising past the target); ``iterations`` records the
    generation at which each class first reached ``target``.
    """
    if not 0 < target < 1:
        raise ValueError(f"evolution target confidence must be in (0, 1), got {target}")
    if generations < 0 or offspring < 1:
        raise ValueError(f"generations must be >= 0 and offspring >= 1, got {generations}, {offspring}")
    device = next(model.parameters()).device
    targets, (channels, height, width) = _targets_and_shape(model, image_shape, targets)
    k = len(targets)
    columns = torch.as_tensor(targets)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2015]))
    log_target = math.log(target)

    def evaluate(genomes: CPPN) -> tuple[np.ndarray, torch.Tensor]:
        images = render_cppn(genomes, height, width)
        return images, _log_probs(model, np.round(images * 255.0) / 255.0, device)[:, columns]

    # Generation 0: offspring random genomes per class; each class's best becomes its elite.
    population = random_cppn(rng, k * offspring, hidden, channels)
    _, scores = evaluate(population)
    best = scores.argmax(dim=0).numpy()
    elites = population.take(best)
    fitness = scores[best, torch.arange(k)].clone()
    iterations = [generations] * k
    for c in range(k):
        if fitness[c] >= log_target:
            iterations[c] = 0
    bar = progress(range(1, generations + 1), desc="evolving CPPNs", disable=not show_progress)
    try:
        for generation in bar:
            children = mutate(elites.take(np.repeat(np.arange(k), offspring)), rng)
            _, scores = evaluate(children)
            # MAP-Elites: a child may become the elite of any class it beats, not only its parent's;
            # ">=" lets equally good children drift across plateaus.
            top, where = scores.max(dim=0)
            for c in torch.nonzero(top >= fitness).flatten().tolist():
                elites.put(c, children.take(int(where[c])))
                fitness[c] = top[c]
                if top[c] >= log_target and iterations[c] == generations:
                    iterations[c] = generation
            if show_progress and generation % 10 == 0:
                bar.set_postfix(at_target=int((fitness >= log_target).sum()), min_conf=f"{fitness.exp().min():.3f}")
    finally:
        bar.close()
    images = torch.from_numpy(render_cppn(elites, height, width)).float()
    extra = {"budget": generations, "nodes": elites.nodes().tolist(), "connections": elites.connections().tolist()}
    return _finish("evolution", model, images, iterations, target, targets, extra)


# --------------------------------------------------------------------------- outputs


def fooling_table(result: FoolingResult, class_names, independent) -> pd.DataFrame:
    """One row per target class; the pixel classifier (if any) judges the images read back
    from PNG. ``class_names`` names every class of the network."""
    columns = {
        "class": [str(class_names[c]) for c in result.targets],
        "confidence": [round(float(v), 6) for v in result.confidence],
        "confidence_after_png": [round(float(v), 6) for v in result.confidence_after_png],
        "predicted_after_png": [str(class_names[int(i)]) for i in result.predicted_after_png],
        "reached_target": [bool(v) for v in result.reached],
        "iterations": [int(v) for v in result.iterations],
        "class_index": list(result.targets),
    }
    if independent is not None:
        proba = independent.predict_proba(result.loaded)
        picks = proba.argmax(axis=1)
        columns["independent_prediction"] = [str(class_names[int(i)]) for i in picks]
        columns["independent_probability"] = [round(float(proba[j, i]), 6) for j, i in enumerate(picks)]
    return pd.DataFrame(columns, columns=CSV_COLUMNS)


def _percent(p: float) -> str:
    """A probability as a percentage, rounded down (never shown above the target it missed),
    with one digit past the leading nines: 99.8%, 99.94%, 99.996%. Float32 softmax gives
    exactly 1.0 once the other classes fall below ~1e-7, so that shows as >= 99.9999%."""
    if p >= 0.999999:
        return "\u2265 99.9999%"
    value = 100.0 * p
    fraction = f"{value:.6f}".split(".")[1]
    digits = min(4, len(fraction) - len(fraction.lstrip("9")) + 1)
    return f"{math.floor(value * 10**digits + 1e-6) / 10**digits:.{digits}f}%"


def fooling_figure(result: FoolingResult, table: pd.DataFrame, independent_kind: str | None):
    """The PNG-loaded images, labelled with the target class; under each: the network's
    predicted class and its confidence in the target class (after PNG), and the pixel
    classifier's prediction where there is one."""
    names = table["class"].tolist()
    k = len(names)
    labels = [f"target {name}" for name in names]
    sublabels = []
    for name, row in zip(names, table.itertuples()):
        # The confidence is always that of the target class; name it when the CNN picks another.
        cnn = f"CNN {row.predicted_after_png}" + ("" if row.predicted_after_png == name else f"; {name}:")
        judged = f" | pix {row.independent_prediction}" if independent_kind else ""
        sublabels.append(f"{cnn} {_percent(row.confidence_after_png)}{judged}")
    reached = int(table["reached_target"].sum())
    how = {
        "gradient": "gradient ascent from uniform noise",
        "evolution": "evolving CPPN images (MAP-Elites over the classes)",
    }[result.method]
    unit = "steps" if result.method == "gradient" else "generations"
    budget = result.extra.get("budget", "?")
    hits = [n for n, ok in zip(result.iterations, result.reached.tolist()) if ok]
    when = f", reached within {max(hits)} {unit}" if hits else ""
    under = "under each image: the network's prediction and confidence"
    if independent_kind:
        under += f" | the {independent_kind} pixel classifier's prediction"
    title = (
        f"Fooling images by {how}\n"
        f"{reached}/{k} classes at \u2265 {_percent(result.target)} confidence after saving as PNG"
        f"{when} (budget {budget} {unit})\n{under}"
    )
    return image_grid(result.loaded, labels, title, ncols=5 if k > 5 else k, sublabels=sublabels)


def run_fooling(
    method: str,
    cfg: dict,
    *,
    seed: int,
    device_name: str,
    csv_path,
    png_path,
    model_path=None,
    data_path=None,
    cache_dir=None,
) -> pd.DataFrame:
    """Rule `fooling`: one method's images, its CSV and its grid."""
    if method not in METHODS:
        raise ValueError(f"fooling method must be one of {list(METHODS)}, got {method!r}")
    seed_everything(seed)
    device = select_device(device_name)
    net = load_classifier(cfg, key="fooling", model_path=model_path, data_path=data_path, cache_dir=cache_dir)
    model = net.model.to(device)
    log.info("%s fooling: %s, %d classes on %s images", method, net.backbone, len(net.targets),
             "x".join(map(str, net.image_shape)))
    if method == "gradient":
        result = gradient_fooling(
            model, net.image_shape, target=cfg["target_confidence"], steps=cfg["gradient_steps"],
            lr=cfg["gradient_lr"], layer=net.layer, targets=net.targets, seed=seed,
        )
    else:
        result = evolve_fooling(
            model, net.image_shape, target=cfg["evolution_target"], generations=cfg["generations"],
            offspring=cfg["offspring"], hidden=cfg["cppn_nodes"], targets=net.targets, seed=seed,
        )
    independent = net.independent(cfg["independent_classifier"], seed)
    table = fooling_table(result, net.class_names, independent)
    log.info("%s fooling: %d/%d classes at the target %.4g after PNG; min confidence %.6f",
             method, int(table["reached_target"].sum()), len(table), result.target,
             float(table["confidence_after_png"].min()))
    for row in table.to_dict("records"):
        judged = f"; pixel classifier says {row['independent_prediction']}" if independent is not None else ""
        log.info("  class %s: confidence %.6f (after PNG %.6f), target reached: %s after %d iterations%s",
                 row["class"], row["confidence"], row["confidence_after_png"], row["reached_target"],
                 row["iterations"], judged)
    if "nodes" in result.extra:
        log.info("  CPPN sizes: nodes %s, connections %s", result.extra["nodes"], result.extra["connections"])
    write_csv(csv_path, table)
    kind = cfg["independent_classifier"] if independent is not None else None
    save_figure(fooling_figure(result, table, kind), png_path)
    return table
