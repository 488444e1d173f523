"""Fooling images (Nguyen et al., CVPR 2015): unrecognizable images the CNN is sure about.

Two ways to make one image per class:

* **gradient** - gradient ascent on log p(class | x) from uniform noise ("TV static") with the
  engine ``cnnpipe.ascent``, in short rounds; after each round the images are rounded to the
  8-bit values a PNG stores, and a class stops once its confidence on them reaches the
  target, so the image stays as close to static as the target allows.
* **evolution** - a CPPN (compositional pattern-producing network: sine, sigmoid, Gaussian and
  linear units over the pixel coordinates x, y and the distance d to the centre; genomes,
  rendering and mutation in :mod:`cnnpipe.methods.cppn`) per image, evolved by MAP-Elites over the
  classes: every class keeps its most confident genome (its elite); each generation every
  class's elite has ``offspring`` mutated children (a class at the target passes most of its
  share to the others), all children of all classes go through the CNN in one batch, and a
  child replaces the elite of *any* class it beats. Fitness is
  computed on the images quantized to 8 bits, exactly what a PNG stores, so the confidence
  survives saving.

Confidence is the CNN's softmax probability of the target class; ``confidence_after_png`` is
measured on images saved with ``cnnpipe.io.images.save_png`` and read back with ``load_image``
(the gradient method keeps 8-bit images throughout, so there the two agree).

The network is the trained CNN (every class) or an ImageNet backbone (the configured
``imagenet_classes``), see ``cnnpipe.judges.classifier``; image j is always for class ``targets[j]``."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnpipe import ascent
from cnnpipe.io.images import read_images, write_image_folder
from cnnpipe.methods import cppn
from cnnpipe.networks.aliases import SCORES_LAYER
from cnnpipe.networks.fold import inference_model
from cnnpipe.runtime.device import model_device
from cnnpipe.runtime.logs import progress


def png_roundtrip(images: torch.Tensor, folder=None, names=None) -> torch.Tensor:
    """Save each image [C, H, W] in [0, 1] with ``save_png``, read it back with ``load_image``:
    as ``folder/<name>.png`` (``cnnpipe.io.images.write_image_folder``), or in a temporary folder."""
    mode = {1: "L", 3: "RGB"}.get(images.shape[1])
    if images.dim() != 4 or mode is None:
        raise ValueError(f"png_roundtrip: expected [N, 1 or 3, H, W], got {list(images.shape)}")
    if folder is not None:
        return read_images(write_image_folder(images, names, folder), mode)
    with tempfile.TemporaryDirectory(prefix="cnnpipe-png-") as temporary:
        paths = write_image_folder(images, [str(i) for i in range(len(images))], Path(temporary) / "images")
        return read_images(paths, mode)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """The values an 8-bit PNG keeps: round(x * 255) / 255 (as ``tensor_to_pil`` rounds)."""
    return images.clamp(0, 1).mul(255).round().div(255)


@torch.no_grad()
def class_probabilities(model: nn.Module, images: torch.Tensor, device=None) -> torch.Tensor:
    """Softmax over the model's output for images in [0, 1], on the CPU as [N, K]."""
    device = model_device(model) if device is None else device
    with ascent.frozen(model):  # eval mode (no dropout), restored afterwards
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


def saved_as_files(model: nn.Module, result: FoolingResult, folder, class_names) -> FoolingResult:
    """The result with its images saved as ``folder/<class>.png`` and its after-PNG numbers
    measured again on those very files, read back."""
    loaded = png_roundtrip(result.images, folder, [class_names[c] for c in result.targets])
    after = class_probabilities(model, loaded)
    return dataclasses.replace(
        result,
        loaded=loaded,
        confidence_after_png=after[torch.arange(len(loaded)), torch.as_tensor(result.targets)],
        predicted_after_png=after.argmax(1),
    )


def _targets_and_shape(model: nn.Module, image_shape, targets) -> tuple[list[int], tuple[int, int, int]]:
    """The target classes (default: every output of the model) and the image shape."""
    shape = tuple(int(s) for s in image_shape)
    if targets is None:
        with torch.no_grad(), ascent.frozen(model):
            out = model(torch.zeros(1, *shape, device=model_device(model)))
        targets = range(int(out.shape[1]))
    return [int(c) for c in targets], shape


def _at_target(model: nn.Module, images: torch.Tensor, indices: list[int], targets: list[int],
               target: float) -> list[int]:
    """The indices i whose image gets at least ``target`` for class ``targets[i]``; the images
    hold 8-bit values, so this is the confidence their PNG files will give."""
    probs = class_probabilities(model, images[indices])
    return [i for j, i in enumerate(indices) if probs[j, targets[i]] >= target]


def _ascent_round(model: nn.Module, images: torch.Tensor, indices: list[int], classes: list[int], *,
                  layer: str, steps: int, lr: float, seed: int) -> torch.Tensor:
    """``steps`` Adam steps on log p(class | x) for ``images[indices]``, started afresh from
    their current (8-bit) values, rounded to 8 bits again. Each image's random stream is the
    engine's stream for its own index in ``indices``."""
    result = ascent.ascend(
        model,
        [ascent.class_log_softmax(layer, c) for c in classes],
        ascent.pixel_image(images=images),
        indices=indices,
        steps=steps,
        lr=lr,
        seed=seed,
        progress=False,
    )
    return quantize(result.images)


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
    current = torch.stack([torch.rand(shape, generator=ascent.sample_generator(seed, j)) for j in range(k)])
    current = quantize(current)
    iterations = [steps] * k
    remaining = list(range(k))  # image indices
    done = 0
    bar = progress(total=steps, desc="gradient fooling", disable=not show_progress)
    try:
        while remaining and done < steps:
            # A class already at the target (even on noise) needs no step.
            hits = _at_target(model, current, remaining, targets, target)
            for i in hits:
                iterations[i] = done
            remaining = [i for i in remaining if i not in hits]
            if not remaining:
                break
            n = min(check_every, steps - done)
            current[remaining] = _ascent_round(model, current, remaining, [targets[i] for i in remaining],
                                               layer=layer, steps=n, lr=lr, seed=seed)
            done += n
            bar.update(n)
        if remaining:
            for i in _at_target(model, current, remaining, targets, target):
                iterations[i] = done
    finally:
        bar.close()
    return _finish("gradient", model, current, iterations, target, targets, {"budget": steps})


# Images per forward pass on the CPU: EfficientNet-Lite0 at 128 px classified 160 images with
# 4.7 s of CPU time in chunks of 32 and 7.2 s as one batch (one thread; the large batch's
# activations fall out of the cache).
CPU_CHUNK = 32
# With adapt, each class's step size of the weight mutations stays within these.
SIGMA_RANGE = (0.02, 2.0)
SUCCESS_TARGET = 0.2


@torch.no_grad()
def _log_probs(model: nn.Module, images: np.ndarray, device) -> torch.Tensor:
    x = torch.from_numpy(images).float()
    chunk = CPU_CHUNK if torch.device(device).type == "cpu" else len(x)
    with ascent.frozen(model):
        return torch.cat([torch.log_softmax(model(part.to(device)).float(), dim=1).cpu()
                          for part in x.split(max(chunk, 1))])


def _fitness(model: nn.Module, targets: list[int], shape: tuple[int, int, int], span: float = 1.0):
    """genomes -> [P, K]: log p(targets[k] | the genome's image quantized to 8 bits), through
    a copy of ``model`` with BatchNorm folded (``inference_model``: the same function up to
    float rounding, and half the time per generation for Lite0 at 128 px)."""
    device = model_device(model)
    fast = inference_model(model, channels_last=torch.device(device).type != "mps", probe_shape=shape)
    columns = torch.as_tensor(targets)

    def score(genomes: cppn.CPPN) -> torch.Tensor:
        images = cppn.render_cppn(genomes, shape[1], shape[2], span)
        return _log_probs(fast, np.round(images * 255.0) / 255.0, device)[:, columns]

    return score


def _promote(elites: cppn.CPPN, fitness: torch.Tensor, children: cppn.CPPN, scores: torch.Tensor) -> list[int]:
    """MAP-Elites: a child may become the elite of any class it beats, not only its parent's;
    ">=" lets equally good children drift across plateaus. Updates ``elites`` and ``fitness``
    in place and returns the classes whose elite was replaced."""
    top, where = scores.max(dim=0)
    promoted = torch.nonzero(top >= fitness).flatten().tolist()
    for c in promoted:
        elites.put(c, children.take(int(where[c])))
        fitness[c] = top[c]
    return promoted


def allocate_offspring(reached: np.ndarray, offspring: int) -> np.ndarray:
    """Children per class [K], ``K * offspring`` in all: a class at the target keeps a quarter
    of its share (at least one child, so it still improves) and the classes not there yet
    share the rest, the first ones one more where it does not divide."""
    reached = np.asarray(reached, dtype=bool)
    k = len(reached)
    counts = np.full(k, offspring)
    if reached.all() or not reached.any():
        return counts
    counts[reached] = max(1, offspring // 4)
    open_ = np.flatnonzero(~reached)
    spare = k * offspring - counts[reached].sum()
    counts[open_] = spare // len(open_)
    counts[open_[: spare % len(open_)]] += 1
    return counts


def adapt_sigma(sigma: np.ndarray, better: np.ndarray, worse: np.ndarray) -> np.ndarray:
    """The 1/5th success rule per class: ``better`` and ``worse`` [K] count a class's children
    that beat its elite this generation and those that fall short of it. Children that tie
    (mostly the same 8-bit image) say nothing about the step size and are left out; a class
    with none of either keeps its step. Above a success rate of 1/5 the steps grow (the elite
    sits on a slope that longer steps climb faster), below it they shrink, by at most a
    factor exp(1/4) per generation."""
    better, worse = np.asarray(better, dtype=float), np.asarray(worse, dtype=float)
    decided = better + worse
    rate = np.where(decided > 0, better / np.maximum(decided, 1), SUCCESS_TARGET)
    factor = np.exp(0.25 * (rate - SUCCESS_TARGET) / (1.0 - SUCCESS_TARGET))
    return np.clip(sigma * factor, *SIGMA_RANGE)


def evolve_fooling(
    model: nn.Module,
    image_shape,
    *,
    target: float = 0.99,
    generations: int = 1200,
    offspring: int = 4,
    hidden: int = 12,
    span: float = 1.0,
    sigma: float = 0.5,
    adapt: bool = False,
    structure: float = 1.0,
    crossover: float = 0.0,
    focus: bool = True,
    targets: list[int] | None = None,
    seed: int = 0,
    show_progress: bool = True,
    on_generation=None,
) -> FoolingResult:
    """MAP-Elites over the classes ``targets`` (default: all) with CPPN genomes (see the
    module docstring).

    Fitness of a genome for class c: log p(c | its image quantized to 8 bits). Weight mutations
    have the standard deviation ``sigma``; with ``adapt`` each class has its own, adapted by
    the 1/5th success rule (:func:`adapt_sigma`). ``structure`` scales the rates of the
    structural mutations (new nodes and connections, unit types; 0 = weights only). A fraction
    ``crossover`` of the children start from a crossover of their parent with the elite of
    another class (``cppn.crossover``) before they mutate. With ``focus``, classes at the
    target pass most of their children to the others (:func:`allocate_offspring`). ``span`` is
    the half-width of the CPPN's coordinate plane. Evolution runs all ``generations``
    (confidence keeps rising past the target), or until ``on_generation(generation,
    fitness)`` (log-probabilities [K]) returns True;
    ``iterations`` records the generation at which each class first reached ``target``.
    """
    _check_evolution(target, generations, offspring, span, sigma, structure, crossover)
    targets, (channels, height, width) = _targets_and_shape(model, image_shape, targets)
    score = _fitness(model, targets, (channels, height, width), span)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2015]))
    rates = {name: min(1.0, structure * rate) for name, rate in cppn.STRUCTURE_RATES.items()}
    run = _MapElites(score, rng, len(targets), hidden=hidden, channels=channels, sigma=sigma,
                     log_target=math.log(target), generations=generations, offspring=offspring, focus=focus,
                     crossover=crossover, rates=rates, adapt=adapt)
    done = _evolve(run, generations, show_progress, on_generation)
    iterations = [min(n, done) for n in run.iterations]
    images = torch.from_numpy(cppn.render_cppn(run.elites, height, width, span)).float()
    extra = {"budget": done, "nodes": run.elites.nodes().tolist(), "connections": run.elites.connections().tolist(),
             "sigma": run.steps.tolist()}
    return _finish("evolution", model, images, iterations, target, targets, extra)


def _check_evolution(target: float, generations: int, offspring: int, span: float, sigma: float,
                     structure: float, crossover: float) -> None:
    """Refuse settings ``evolve_fooling`` cannot run with, naming them."""
    if not 0 < target < 1:
        raise ValueError(f"evolution target confidence must be in (0, 1), got {target}")
    if generations < 0 or offspring < 1:
        raise ValueError(f"generations must be >= 0 and offspring >= 1, got {generations}, {offspring}")
    if not (span > 0 and sigma > 0 and structure >= 0 and 0 <= crossover <= 1):
        raise ValueError(f"span and sigma must be > 0, structure >= 0 and crossover in [0, 1], got {span}, {sigma}, "
                         f"{structure}, {crossover}")


class _MapElites:
    """MAP-Elites over K classes: each class's elite genome, its fitness (log p(class) of its
    8-bit image), its weight-mutation step, and the generation at which it first reached the
    target (``generations`` until then); how children are bred; the one random stream."""

    def __init__(self, score, rng: np.random.Generator, k: int, *, hidden: int, channels: int, sigma: float,
                 log_target: float, generations: int, offspring: int, focus: bool, crossover: float, rates: dict,
                 adapt: bool):
        self.score, self.rng, self.k, self.log_target, self.generations = score, rng, k, log_target, generations
        self.offspring, self.focus, self.crossover, self.rates, self.adapt = offspring, focus, crossover, rates, adapt
        # Generation 0: offspring random genomes per class; each class's best becomes its elite.
        # Two starting nodes, or the one that fooling.cppn_nodes: 1 allows.
        population = cppn.random_cppn(rng, k * offspring, hidden, channels, initial_nodes=min(2, hidden))
        scores = score(population)
        best = scores.argmax(dim=0).numpy()
        self.elites = population.take(best)
        self.fitness = scores[best, torch.arange(k)].clone()
        self.steps = np.full(k, float(sigma))
        self.iterations = [0 if self.fitness[c] >= self.log_target else self.generations for c in range(k)]

    def step(self, generation: int) -> None:
        """One generation: breed, score all children in one batch, adapt the steps, promote."""
        parents, children = self._children()
        scores = self.score(children)
        if self.adapt:  # success: a child beats its own parent (before any elite changes)
            own = scores[np.arange(len(parents)), parents]
            better, worse = (own > self.fitness[parents]).numpy(), (own < self.fitness[parents]).numpy()
            self.steps = adapt_sigma(self.steps, np.bincount(parents, better, self.k),
                                     np.bincount(parents, worse, self.k))
        for c in _promote(self.elites, self.fitness, children, scores):
            if self.fitness[c] >= self.log_target and self.iterations[c] == self.generations:
                self.iterations[c] = generation

    def _children(self) -> tuple[np.ndarray, cppn.CPPN]:
        """Each child's parent class and the children: copies of their parents' elites, a
        fraction ``crossover`` crossed with another class's elite, then mutated."""
        k, rng = self.k, self.rng
        reached = (self.fitness >= self.log_target).numpy()
        counts = allocate_offspring(reached, self.offspring) if self.focus else self.offspring
        parents = np.repeat(np.arange(k), counts)
        children = self.elites.take(parents)
        if self.crossover > 0 and k > 1:
            crossing = np.flatnonzero(rng.random(len(parents)) < self.crossover)
            mates = rng.integers(0, k - 1, len(crossing))
            mates += mates >= parents[crossing]  # another class's elite
            children.put(crossing, cppn.crossover(children.take(crossing), self.elites.take(mates), rng))
        return parents, cppn.mutate(children, rng, weight_sigma=self.steps[parents], **self.rates)


def _evolve(run: _MapElites, generations: int, show_progress: bool, on_generation) -> int:
    """Run generations 1, 2, ... with a progress bar until ``generations`` or until
    ``on_generation`` returns True; the last generation run."""
    done = 0
    bar = progress(range(1, generations + 1), desc="evolving CPPNs", disable=not show_progress)
    try:
        for generation in bar:
            run.step(generation)
            done = generation
            if show_progress and generation % 10 == 0:
                bar.set_postfix(at_target=int((run.fitness >= run.log_target).sum()),
                                min_conf=f"{run.fitness.exp().min():.3f}")
            if on_generation is not None and on_generation(generation, run.fitness.clone()):
                break
    finally:
        bar.close()
    return done
