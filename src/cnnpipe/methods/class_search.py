"""The search behind the classes stage: x* = argmax_x y^i for every class i, in three variants
(plain, the slide's L1, regularized), each one batched ascent over the classes.

The regularized variant on an ImageNet network takes ``classes.imagenet_regularized`` over the
digit CNN's settings; with a ``canvas`` it ascends a larger image seen through random crops
(resized to the network's input) with noise, its own optimizer, learning rate and steps.
The stage (:mod:`cnnpipe.stages.classes`) judges, tabulates and draws the results."""

from __future__ import annotations

import logging

import torch
from torch import nn

from cnnpipe import ascent
from cnnpipe.networks.aliases import SCORES_LAYER
from cnnpipe.report.colour import REFERENCE_PHOTOS, colour_measures, photo_colour
from cnnpipe.runtime.device import model_device

log = logging.getLogger(__name__)

OBJECTIVES = {"probability": ascent.class_log_odds, "logit": ascent.class_logit}
CONFIG_KEYS = (
    "objective",
    "steps",
    "lr",
    "l1_weight",
    "parameterization",
    "jitter",
    "scale",
    "degrees",
    "blur_every",
    "blur_sigma",
    "tv_weight",
    "regularized_l1_weight",
    "copies",
    "imagenet_regularized",
    "independent_classifier",
)


# The regularized variant's keys that an ImageNet network may set apart from the trained CNN's.
REGULARIZED_KEYS = ("parameterization", "copies", "jitter", "scale", "degrees", "blur_every", "blur_sigma",
                    "tv_weight", "regularized_l1_weight")
# Keys only `imagenet_regularized` sets, with the values that leave them off elsewhere (the
# trained CNN's regularized variant: no canvas, no noise, Adam at `lr` for `steps`).
CANVAS_DEFAULTS = {"canvas": None, "crop_side": [0.5, 0.6], "noise": 0.0, "optimizer": "adam", "decay_power": 1.0,
                   "standardize": None}
VARIANT_SCHEDULE_KEYS = ("steps", "lr")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_canvas_keys(where: str, settings: dict) -> None:
    """The crop-canvas keys of the regularized variant (see CANVAS_DEFAULTS)."""
    canvas = settings["canvas"]
    if canvas is not None and (isinstance(canvas, bool) or not isinstance(canvas, int) or canvas < 16):
        raise ValueError(f"{where}.canvas must be null or an integer >= 16 (pixels), got {canvas!r}")
    side = settings["crop_side"]
    if (not isinstance(side, (list, tuple)) or len(side) != 2 or not all(_is_number(v) for v in side)
            or not 0 < side[0] <= side[1] <= 1):
        raise ValueError(f"{where}.crop_side must be [low, high] with 0 < low <= high <= 1, got {side!r}")
    if not _is_number(settings["noise"]) or settings["noise"] < 0:
        raise ValueError(f"{where}.noise must be a number >= 0, got {settings['noise']!r}")
    if settings["optimizer"] not in ("adam", "nadam"):
        raise ValueError(f"{where}.optimizer must be 'adam' or 'nadam', got {settings['optimizer']!r}")
    if not _is_number(settings["decay_power"]) or not 0 <= settings["decay_power"] <= 3:
        raise ValueError(f"{where}.decay_power must be a number in [0, 3], got {settings['decay_power']!r}")
    std = settings["standardize"]
    if std is not None and (not _is_number(std) or std <= 0):
        raise ValueError(f"{where}.standardize must be null or a number > 0 (a std), got {std!r}")
    if not _is_number(settings["lr"]) or settings["lr"] <= 0:
        raise ValueError(f"{where}.lr must be a number > 0, got {settings['lr']!r}")
    if isinstance(settings["steps"], bool) or not isinstance(settings["steps"], int) or settings["steps"] < 1:
        raise ValueError(f"{where}.steps must be an integer >= 1, got {settings['steps']!r}")


def check_config(cfg: dict) -> None:
    """Every key this stage reads is present; the error names the missing ones."""
    missing = [key for key in CONFIG_KEYS if key not in cfg]
    if missing:
        raise KeyError(f"config section 'classes' lacks {missing}")
    if cfg["objective"] not in OBJECTIVES:
        raise ValueError(f"classes.objective must be one of {list(OBJECTIVES)}, got {cfg['objective']!r}")
    block = cfg["imagenet_regularized"] or {}
    allowed = (*REGULARIZED_KEYS, *CANVAS_DEFAULTS, *VARIANT_SCHEDULE_KEYS)
    unknown = sorted(set(block) - set(allowed))
    if unknown:
        raise ValueError(f"classes.imagenet_regularized sets only {list(allowed)}, not {unknown}")
    for where, settings in (("classes", cfg), ("classes.imagenet_regularized", {**cfg, **block})):
        if settings["parameterization"] not in ("pixel", "fft", "phase"):
            raise ValueError(f"{where}: parameterization must be 'pixel', 'fft' or 'phase', "
                             f"got {settings['parameterization']!r}")
        if isinstance(settings["copies"], bool) or not isinstance(settings["copies"], int) or settings["copies"] < 1:
            raise ValueError(f"{where}: copies must be an integer >= 1, got {settings['copies']!r}")
        if settings["parameterization"] == "phase" and settings["blur_every"]:
            raise ValueError(f"{where}: parameterization 'phase' keeps its spectrum fixed, so blur_every must be 0")
    _check_canvas_keys("classes.imagenet_regularized", {**CANVAS_DEFAULTS, **cfg, **block})


def regularized_config(cfg: dict) -> dict:
    """The settings of the regularized variant: on an ImageNet backbone ``imagenet_regularized``
    over the trained CNN's, with CANVAS_DEFAULTS for the keys only that block sets."""
    from cnnpipe.networks.spec import parse_backbone

    if parse_backbone(cfg.get("backbone", "trained"), "classes.backbone", must_exist=False).imagenet:
        return {**CANVAS_DEFAULTS, **cfg, **(cfg["imagenet_regularized"] or {})}
    return {**CANVAS_DEFAULTS, **cfg}


def regularized_transforms(cfg: dict, size: int | None = None) -> list[ascent.Transform]:
    """With a canvas: random crops of it resized to ``size`` (the network's input). Then
    jitter, zoom (1 +- scale) and rotation (+- degrees), a half jitter, and noise: the ones
    switched on."""
    transforms: list[ascent.Transform] = []
    if cfg.get("canvas") is not None:
        transforms.append(ascent.RandomCrops(size, tuple(cfg["crop_side"])))
    if cfg["jitter"] > 0:
        transforms.append(ascent.Jitter(cfg["jitter"]))
    if cfg["scale"] > 0 or cfg["degrees"] > 0:
        transforms.append(ascent.RandomAffine((1 - cfg["scale"], 1 + cfg["scale"]), cfg["degrees"]))
    if cfg["jitter"] > 0:
        transforms.append(ascent.Jitter(cfg["jitter"] / 2))
    if cfg.get("noise", 0) > 0:
        transforms.append(ascent.Noise(cfg["noise"]))
    return transforms


def variant_settings(cfg: dict, shape) -> dict[str, dict]:
    """Variant name -> keyword arguments for ``ascent.ascend`` (param, transforms, penalties; the
    regularized variant also its steps, lr and optimizer, the others take ``cfg``'s steps and lr).

    The regularized variant on an ImageNet backbone takes ``imagenet_regularized`` over the
    trained CNN's settings; with a ``canvas`` its image is canvas x canvas pixels, seen by the
    network (input ``shape``) through ``copies`` random crops a step."""
    check_config(cfg)
    pixels = ascent.pixel_image(shape)
    reg = regularized_config(cfg)
    reg_shape = tuple(shape)
    if reg["canvas"] is not None:
        if reg["canvas"] < max(shape[1:]):
            raise ValueError(f"classes.imagenet_regularized.canvas ({reg['canvas']}) must be at least the image "
                             f"size ({max(shape[1:])})")
        reg_shape = (shape[0], reg["canvas"], reg["canvas"])
    params = {"pixel": ascent.pixel_image, "phase": ascent.phase_image,
              "fft": lambda shape: ascent.fft_image(shape, decay_power=reg["decay_power"], standardize=reg["standardize"])}
    penalties = {"l1": reg["regularized_l1_weight"], "tv": reg["tv_weight"]}
    return {
        "plain": {"param": pixels},
        "l1": {"param": pixels, "regularizers": {"l1": cfg["l1_weight"]}},
        "regularized": {
            "param": params[reg["parameterization"]](reg_shape),
            "transforms": regularized_transforms(reg, shape[-1]),
            "copies": reg["copies"],
            "blur_every": reg["blur_every"] or None,
            "blur_sigma": reg["blur_sigma"],
            "regularizers": {name: w for name, w in penalties.items() if w},
            "steps": reg["steps"], "lr": reg["lr"], "optimizer": reg["optimizer"],
        },
    }


def visualize_classes(
    model: nn.Module,
    image_shape,
    cfg: dict,
    *,
    layer: str = SCORES_LAYER,
    targets: list[int] | None = None,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Variant -> images [K, C, H, W] in [0, 1], image j maximizing the output (``cfg["objective"]``:
    softmax probability or logit) of class ``targets[j]`` (default: every class of the model's
    output, in order).

    One batched ascent per variant; plain and l1 start from the same seeded noise, so their
    difference is the L1 term alone.
    """
    shape = tuple(int(s) for s in image_shape)
    if targets is None:
        with torch.no_grad(), ascent.frozen(model):
            k = int(model(torch.zeros(1, *shape, device=model_device(model))).shape[1])
        targets = list(range(k))
    check_config(cfg)
    objectives = [OBJECTIVES[cfg["objective"]](layer, i) for i in targets]
    images = {}
    for name, settings in variant_settings(cfg, shape).items():
        settings = {"steps": cfg["steps"], "lr": cfg["lr"], **settings}
        param = settings.pop("param")
        result = ascent.ascend(model, objectives, param, seed=seed, progress=show_progress, desc=f"classes: {name}",
                               **settings)
        images[name] = result.images
        saturation, contrast = colour_measures(result.images)
        log.info("%s: %d px images, mean saturation %.3f, RMS contrast %.3f (information only; photos %s: %.3f, %.3f)",
                 name, result.images.shape[-1], saturation.mean(), contrast.mean(), "/".join(REFERENCE_PHOTOS),
                 *photo_colour())
    return images
