"""The network whose classes the `classes` and `fooling` stages visualize.

Either the pipeline's trained CNN (every class of the dataset, judged as well by a pixel
classifier fitted on the same training set), or an ImageNet backbone from
``cnnpipe.backbones`` (the configured ``imagenet_classes`` only, on square RGB images of
``image_size`` pixels). ImageNet itself is not here, so an ImageNet backbone has no training
set to fit an independent judge on: its images get no ``independent_prediction``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from cnnpipe.backbone_names import BACKBONES

# The layer whose outputs are the class scores y^i: the trained CNN's module name, and an
# alias that every ImageNet backbone resolves (classifier, classifier.6, fc).
SCORES_LAYER = "logits"


@dataclass
class Classifier:
    """A frozen network, the class-score layer's qualified name, the input shape [C, H, W],
    the class indices to visualize, the names of all classes, and the prepared dataset
    (``None`` for an ImageNet backbone)."""

    model: nn.Module
    layer: str
    image_shape: tuple[int, int, int]
    targets: list[int]
    class_names: list[str]
    data: dict | None
    backbone: str

    @property
    def target_names(self) -> list[str]:
        return [self.class_names[i] for i in self.targets]

    def independent(self, kind: str, seed: int):
        """The pixel classifier fitted on the training set, or None where there is none."""
        if self.data is None:
            return None
        from cnnpipe.independent import fit_on_prepared

        return fit_on_prepared(self.data, kind, num_classes=len(self.class_names), seed=seed)


def load_classifier(
    settings: Mapping,
    *,
    key: str,
    model_path: str | os.PathLike | None = None,
    data_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Classifier:
    """The network the config section ``key`` (``classes`` or ``fooling``) names with its
    ``backbone``, ``imagenet_classes`` and ``image_size`` keys; on the CPU."""
    backbone = settings.get("backbone", "trained")
    if backbone not in BACKBONES:
        raise ValueError(f"{key}.backbone: {backbone!r} is not one of {list(BACKBONES)}")
    if backbone == "trained":
        from cnnpipe.checkpoint import load_model
        from cnnpipe.data import load_prepared

        if model_path is None or data_path is None:
            raise ValueError(f"{key} with backbone 'trained' needs the checkpoint and the prepared dataset")
        model = load_model(model_path)
        data = load_prepared(data_path)
        names = [str(name) for name in model.classes]
        shape = tuple(int(s) for s in data["train_images"].shape[1:])
        return Classifier(model, SCORES_LAYER, shape, list(range(len(names))), names, data, backbone)

    from cnnpipe.backbones import imagenet_class_names, load_backbone, resolve_layer

    names = imagenet_class_names()
    targets = [int(i) for i in settings.get("imagenet_classes") or []]
    bad = [i for i in targets if not 0 <= i < len(names)]
    if not targets or bad or len(set(targets)) != len(targets):
        raise ValueError(f"{key}.imagenet_classes: need distinct class indices in 0..{len(names) - 1}, "
                         f"got {settings.get('imagenet_classes')!r}")
    model = load_backbone(backbone, cache_dir=cache_dir)
    size = int(settings["image_size"])
    return Classifier(model, resolve_layer(model, SCORES_LAYER), (3, size, size), targets, names, None, backbone)
