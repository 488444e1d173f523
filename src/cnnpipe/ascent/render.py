"""The loop: ``ascend`` optimizes a batch of images, ``render_batched`` many in chunks.

``ascend`` freezes the model, then repeats: image = param(); transformed = transforms(image)
(``copies`` independently transformed copies of each image); score = objective(capture(
transformed)), averaged over the copies; maximize ``sum_b (score_b - penalty_b)`` with Adam,
DeepDream's normalized step, or L-BFGS. ``render_batched`` splits many per-sample objectives
into chunks and concatenates the results.

Reproducibility: sample with global index i draws its initial noise and its transforms from
its own generators seeded from ``(seed, i)``. The loss is a *sum* over samples and Adam and the
normalized step act element-wise / per sample, so a batch equals its samples run one at a time
and the chunk size does not change results - up to float rounding: a batch of 1 takes other
conv/matmul kernels (differences ~1e-7), and after many steps such a difference can flip a
max-pool or ReLU choice, after which a few pixels' trajectories part (measured on a 28 px CNN:
<= 1e-6 after 20 Adam steps, ~3% of pixels visibly different after 50). On CPU the same seed and
chunking give bit-identical images; CUDA's grid_sample/index backward are not deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from cnnpipe.ascent.hooks import Activations, capture, frozen
from cnnpipe.ascent.objectives import Objective, as_objective
from cnnpipe.ascent.param import STREAM_SCORE, STREAM_TRANSFORMS, ImageParam, sample_generator
from cnnpipe.ascent.regularizers import resolve_regularizers
from cnnpipe.runtime.device import model_device
from cnnpipe.runtime.logs import progress as log_progress

__all__ = ["AscentResult", "ascend", "LBFGS_HISTORY", "estimate_max_batch", "render_batched"]


@dataclass
class AscentResult:
    """Final images [B, C, H, W] (CPU, [0, 1]) and per-sample values [B], all evaluated without
    transforms; ``history`` holds [steps, B] tensors of the objective and the weighted
    penalty seen at each step (with transforms), before that step's update."""

    images: Tensor
    objective: Tensor
    initial_objective: Tensor
    penalty: Tensor
    history: dict[str, Tensor] = field(default_factory=dict)
    indices: list[int] = field(default_factory=list)

    @staticmethod
    def concat(results: Sequence[AscentResult]) -> AscentResult:
        """Join results of consecutive chunks along the batch dimension."""
        keys = results[0].history.keys()
        return AscentResult(
            images=torch.cat([r.images for r in results]),
            objective=torch.cat([r.objective for r in results]),
            initial_objective=torch.cat([r.initial_objective for r in results]),
            penalty=torch.cat([r.penalty for r in results]),
            history={k: torch.cat([r.history[k] for r in results], dim=1) for k in keys},
            indices=[i for r in results for i in r.indices],
        )


# --------------------------------------------------------------------------- one ascent


_DEFAULT_LR = {"adam": 0.05, "nadam": 0.05, "normalized": 0.01, "lbfgs": 1.0}


def ascend(
    model: nn.Module,
    objective,
    param,
    *,
    steps: int = 128,
    lr: float | None = None,
    optimizer: str = "adam",
    transforms: Sequence[Callable] = (),
    copies: int = 1,
    regularizers=None,
    blur_every: int | None = None,
    blur_sigma: float = 0.5,
    seed: int = 0,
    indices: Sequence[int] | None = None,
    progress: bool = True,
    device=None,
    desc: str = "ascent",
    lbfgs_history: int | None = None,
) -> AscentResult:
    """Maximize ``objective(model(transform(x))) - sum_w w * reg(x)`` over images x, per sample.

    ``objective``: an Objective (all samples) or a list, one per sample. ``param``: an
    ``ImageParam`` (used in place) or a spec ``(indices, seed, device) -> ImageParam``.
    The batch is ``len(indices)``, else the objective's batch (a list's length, or the number
    of units given to ``channels``), else the param's batch (a spec with N > 1 start images:
    N), else 1. ``indices`` are the samples' global indices (default 0..B-1),
    which seed their noise and transforms. ``regularizers``: ``{"l1": w, "tv": w}`` or pairs
    ``(w, fn)`` with ``fn(x) -> [B]``. ``optimizer``: ``"adam"`` or ``"nadam"`` (Adam with Nesterov
    momentum; both element-wise, so samples are independent), ``"normalized"`` (DeepDream: each sample's step is lr * g / mean|g| of that
    sample), or ``"lbfgs"`` (torch L-BFGS without line search; ``steps`` counts function
    evaluations; it couples the batch through shared dot products, so batched results differ
    from one-at-a-time; random transforms make its objective noisy, so usually pass none).
    ``copies``: each step scores that many differently transformed copies of every image (one
    batch of B * copies) and maximizes their mean score; sample i's copies draw from its own
    generator in turn, so results stay independent of the other samples.
    ``blur_every``: Gaussian blur of ``blur_sigma`` px every N steps. ``lr`` defaults per
    optimizer: adam and nadam 0.05, normalized 0.01, lbfgs 1.0. ``lbfgs_history``: curvature pairs L-BFGS
    keeps (default ``LBFGS_HISTORY``; each costs two image-sized buffers). The model is moved to ``device``
    (default: where it is), put in eval mode with frozen parameters, and restored afterwards.
    """
    schedule = _Schedule.of(optimizer, steps, lr, blur_every, blur_sigma, lbfgs_history)
    if int(copies) < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    objective, indices, param = _resolve_inputs(model, objective, param, indices, seed, device)
    penalties = resolve_regularizers(regularizers)
    gens = [sample_generator(seed, i, STREAM_TRANSFORMS) for i in indices]

    with frozen(model), capture(model, sorted(objective.layers)) as acts:
        loss = _Loss(objective, acts, param, transforms, gens, penalties, int(copies))
        loss.score_gens = [sample_generator(seed, i, STREAM_SCORE) for i in indices]
        initial, images, final, final_penalty = _optimize_and_score(loss, schedule, progress, desc)

    history = loss.history()
    return AscentResult(images=images.clamp(0, 1).cpu(), objective=final.cpu(), initial_objective=initial.cpu(),
                        penalty=final_penalty.cpu(), history=history, indices=list(indices))


def _resolve_inputs(model: nn.Module, objective, param, indices, seed: int,
                    device) -> tuple[Objective, list[int], ImageParam]:
    """The objective, the samples' global indices and their image parameterization, on the
    device the model is moved to (see ``ascend``)."""
    objective, n_objectives = as_objective(objective)
    indices = _resolve_batch(n_objectives, param, indices)
    device = _place_model(model, device)
    return objective, indices, _build_param(param, indices, seed, device)


def _optimize_and_score(loss: _Loss, schedule: _Schedule, progress: bool,
                        desc: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Score the start image, optimize, then score the final one, both without transforms:
    (initial objective, final images, final objective, final penalty)."""
    with torch.no_grad():
        initial = loss.evaluate(loss.param()).detach()
    _optimize(loss, schedule, progress, desc)
    with torch.no_grad():
        images = loss.param().detach()
        final = loss.evaluate(images).detach()
        final_penalty = loss.penalty(images)
    return initial, images, final, final_penalty


@dataclass(frozen=True)
class _Schedule:
    """How to optimize: the optimizer's name, its step count and rate, and the blur cadence."""

    optimizer: str
    steps: int
    lr: float
    blur_every: int | None
    blur_sigma: float
    lbfgs_history: int = 20

    @classmethod
    def of(cls, optimizer: str, steps: int, lr: float | None, blur_every, blur_sigma: float,
           lbfgs_history: int | None = None) -> _Schedule:
        if optimizer not in _DEFAULT_LR:
            raise ValueError(f"optimizer must be one of {sorted(_DEFAULT_LR)}, got {optimizer!r}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        history = LBFGS_HISTORY if lbfgs_history is None else int(lbfgs_history)
        if history < 1:
            raise ValueError(f"lbfgs_history must be >= 1, got {lbfgs_history}")
        lr = _DEFAULT_LR[optimizer] if lr is None else float(lr)
        return cls(optimizer, steps, lr, blur_every, blur_sigma, history)


def _resolve_batch(n_objectives, param, indices) -> list[int]:
    if indices is not None:
        indices = [int(i) for i in indices]
        if n_objectives is not None and len(indices) != n_objectives:
            raise ValueError(f"{len(indices)} indices for {n_objectives} objectives")
        return indices
    if n_objectives is not None:
        return list(range(n_objectives))
    if isinstance(param, ImageParam):
        return list(range(param.batch))
    return list(range(getattr(param, "natural_batch", None) or 1))


def _place_model(model: nn.Module, device) -> torch.device:
    """The device to run on: ``device`` (the model is moved there) or the model's own."""
    if device is None:
        return model_device(model)
    device = torch.device(device)
    model.to(device)
    return device


def _build_param(param, indices: list[int], seed: int, device: torch.device) -> ImageParam:
    """A given ``ImageParam`` moved to ``device``, or a spec's for these sample indices."""
    if isinstance(param, ImageParam):
        if param.batch != len(indices):
            raise ValueError(f"the image parameterization holds {param.batch} images for {len(indices)} samples")
        return param.to(device)
    return param(indices, seed, device)


def copy_generator(gen: torch.Generator) -> torch.Generator:
    """A generator in ``gen``'s state, so drawing from it leaves ``gen`` where it was."""
    copy = torch.Generator()
    copy.set_state(gen.get_state())
    return copy


class _Loss:
    """The quantity to minimize, -(score - penalty) summed over samples, for the current image;
    keeps each evaluation's score and penalty per sample for the history."""

    def __init__(
        self,
        objective: Objective,
        acts: Activations,
        param: ImageParam,
        transforms: Sequence[Callable],
        gens: Sequence[torch.Generator],
        penalties: Sequence[tuple[float, Callable[[Tensor], Tensor]]],
        copies: int = 1,
    ):
        self.objective, self.acts, self.param = objective, acts, param
        self.transforms, self.gens, self.penalties = transforms, gens, penalties
        self.batch, self.copies = len(gens), copies
        self.score_gens = gens
        self.scores: list[Tensor] = []
        self.pens: list[Tensor] = []

    def _check(self, value: Tensor, what: str) -> Tensor:
        if value.shape != (self.batch,):
            raise ValueError(f"{what} must have shape [{self.batch}], got {tuple(value.shape)}")
        return value

    def score(self, x: Tensor) -> Tensor:
        """The objective [B] of the model's activations on ``x``; for ``x`` of copies * B images
        (copy k of sample b at k * B + b), the mean over the copies."""
        acts = self.acts.run(x)
        if len(x) == self.batch:
            return self._check(self.objective(acts), "objective")
        batch = self.batch
        per_copy = [self.objective({name: a[k * batch : (k + 1) * batch] for name, a in acts.items()})
                    for k in range(len(x) // batch)]
        return torch.stack([self._check(score, "objective") for score in per_copy]).mean(0)

    def evaluate(self, x: Tensor) -> Tensor:
        """The objective [B] of ``x`` as it is; when the transforms change its size (a canvas
        seen through crops), the mean over ``copies`` fixed views of it: the transforms drawn
        from each sample's STREAM_SCORE generator, the same views for the start and final image."""
        seen = self._views(x, [copy_generator(gen) for gen in self.score_gens])
        return self.score(x) if seen.shape[-2:] == x.shape[-2:] else self.score(seen)

    def _views(self, x: Tensor, gens: Sequence[torch.Generator]) -> Tensor:
        """``copies`` transformed copies of each image (copy k of sample b at k * B + b)."""
        seen = x.repeat(self.copies, 1, 1, 1) if self.copies > 1 else x
        gens = list(gens) * self.copies
        for transform in self.transforms:
            seen = transform(seen, gens)
        return seen

    def penalty(self, x: Tensor) -> Tensor:
        """The weighted sum of the regularizers [B] on ``x``."""
        total = x.new_zeros(self.batch)
        for weight, fn in self.penalties:
            total = total + weight * self._check(fn(x), f"regularizer {getattr(fn, '__name__', fn)}")
        return total

    def __call__(self) -> Tensor:
        x = self.param()
        score = self.score(self._views(x, self.gens))
        pen = self.penalty(x)
        self.scores.append(score.detach())
        self.pens.append(pen.detach())
        # A sum, not a mean: each sample's gradient does not depend on the batch size.
        return -(score - pen).sum()

    def history(self) -> dict[str, Tensor]:
        """[evaluations, B] tensors of the objective and the penalty, on the CPU."""
        return {
            "objective": torch.stack(self.scores).cpu() if self.scores else torch.zeros(0, self.batch),
            "penalty": torch.stack(self.pens).cpu() if self.pens else torch.zeros(0, self.batch),
        }


def _optimize(loss: _Loss, schedule: _Schedule, progress: bool, desc: str) -> None:
    """Update ``loss.param`` in place as ``schedule`` says, with a progress bar."""
    params = list(loss.param.parameters())
    bar = log_progress(total=schedule.steps, disable=not progress, desc=desc, leave=False)
    try:
        with torch.enable_grad():
            if schedule.optimizer == "lbfgs":
                _run_lbfgs(loss, params, schedule, bar)
            else:
                _run_stepwise(loss, params, schedule, bar, progress)
    finally:
        bar.close()


def _run_stepwise(loss: _Loss, params: list[Tensor], schedule: _Schedule, bar, progress: bool) -> None:
    """Adam, NAdam or the normalized step: one evaluation, one update, projection and blur per step."""
    param = loss.param
    optimizers = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam}
    opt = optimizers[schedule.optimizer](params, lr=schedule.lr) if schedule.optimizer in optimizers else None
    for step in range(schedule.steps):
        for p in params:
            p.grad = None
        loss().backward()
        if opt is not None:
            opt.step()
        else:
            _normalized_step(params, schedule.lr)
        param.project_()
        if schedule.blur_every and (step + 1) % schedule.blur_every == 0:
            param.blur_(schedule.blur_sigma)
        bar.update(1)
        if progress and (step % 10 == 0 or step == schedule.steps - 1):
            bar.set_postfix(objective=f"{loss.scores[-1].mean().item():.4g}")


@torch.no_grad()
def _normalized_step(params: Sequence[Tensor], lr: float) -> None:
    # The loss is the negative objective, so descending it ascends the objective.
    for p in params:
        if p.grad is None:
            continue
        mean_abs = p.grad.abs().reshape(p.shape[0], -1).mean(1).clamp_min(1e-12)
        p.sub_(lr * p.grad / mean_abs.view(-1, *([1] * (p.dim() - 1))))


# Curvature pairs L-BFGS keeps (torch's default is 100, scipy's 10). Its two-loop recursion
# reads every pair twice per evaluation: with 100 pairs of a 192 px image that was a third of
# each evaluation, and 20 pairs reached the same loss in as many evaluations (style transfer on
# EfficientNet-Lite0: 322 vs 323 evaluations to the tutorial's final loss; 9.3 vs 14.4 ms each).
LBFGS_HISTORY = 20


def _run_lbfgs(loss: _Loss, params: list[Tensor], schedule: _Schedule, bar) -> None:
    """L-BFGS in rounds of at most ``blur_every`` evaluations; projection and blur between rounds."""
    param, steps, blur_every = loss.param, schedule.steps, schedule.blur_every
    opt = torch.optim.LBFGS(params, lr=schedule.lr, max_iter=1, line_search_fn=None,
                            history_size=schedule.lbfgs_history)
    evals = 0

    def closure():
        nonlocal evals
        opt.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        evals += 1
        bar.update(1)
        return value

    while evals < steps:
        budget = min(steps - evals, blur_every or steps)
        group = opt.param_groups[0]
        # Without line search an iteration costs one evaluation and the last iteration none,
        # so max_iter = budget spends exactly ``budget`` evaluations.
        group["max_iter"], group["max_eval"] = budget, budget + 1
        before = evals
        opt.step(closure)
        param.project_()
        if blur_every and evals % blur_every == 0:
            param.blur_(schedule.blur_sigma)
        if evals - before < budget and evals - before <= 1:
            break  # converged: the gradient is below tolerance


# --------------------------------------------------------------------------- batching


def estimate_max_batch(
    model: nn.Module, layers: Sequence[str], make_param, memory_mb: float, *, seed: int = 0, device=None
) -> int:
    """How many samples fit in ``memory_mb``, from one probe forward pass of a single sample.

    Counts the bytes of every leaf module's output up to the deepest needed layer, times 3
    (saved activations, their gradients, transform copies), plus 8 image-sized buffers
    (parameter, gradient, optimizer state, transformed copies). A rough, safe-side estimate.
    """
    device = model_device(model) if device is None else torch.device(device)
    param = make_param([0], seed, device)
    total = [0]

    def count(module, inputs, output):
        if torch.is_tensor(output):
            total[0] += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with frozen(model), capture(model, layers) as acts, torch.no_grad():
            x = param()
            acts.run(x)
    finally:
        for handle in handles:
            handle.remove()
    per_sample = 3 * total[0] + 8 * x.numel() * x.element_size()
    return max(1, int(memory_mb * 2**20 // max(per_sample, 1)))


def render_batched(
    model: nn.Module,
    objectives: Sequence[Objective],
    make_param,
    *,
    max_batch: int | None = None,
    memory_mb: float | None = None,
    seed: int = 0,
    device=None,
    progress: bool = True,
    **ascend_kwargs,
) -> AscentResult:
    """Optimize one image per objective, in chunks of ``max_batch`` (or as many as fit in
    ``memory_mb``, see ``estimate_max_batch``; neither: one batch). Sample i has global index
    i, so results do not depend on the chunking (except with ``optimizer="lbfgs"``)."""
    objs = list(objectives)
    if not objs:
        raise ValueError("render_batched() needs at least one objective")
    if max_batch is None and memory_mb is not None:
        layers = sorted(frozenset().union(*(obj.layers for obj in objs)))
        max_batch = estimate_max_batch(model, layers, make_param, memory_mb, seed=seed, device=device)
    size = len(objs) if max_batch is None else max(1, int(max_batch))
    starts = list(range(0, len(objs), size))
    results = []
    for n, start in enumerate(starts, start=1):
        chunk = list(range(start, min(start + size, len(objs))))
        results.append(
            ascend(
                model,
                objs[chunk[0] : chunk[-1] + 1],
                make_param,
                indices=chunk,
                seed=seed,
                device=device,
                progress=progress,
                desc=f"ascent {n}/{len(starts)}",
                **ascend_kwargs,
            )
        )
    return AscentResult.concat(results)
