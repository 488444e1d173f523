"""The network whose classes the `classes` and `fooling` stages visualize.

Either the pipeline's trained CNN (every class of the dataset, judged as well by a pixel
classifier fitted on the same training set), or any network of a backbone spec
(``cnnpipe.networks.spec``): an ImageNet network (the configured ``imagenet_classes`` only, on
square RGB images of ``image_size`` pixels, judged by a second ImageNet network,
:mod:`cnnpipe.judges.imagenet`), a network of your own (all its classes), or another run's checkpoint
(all its classes, at its image size). The last two have no independent judge here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import nn

from cnnpipe.judges.specs import class_targets
from cnnpipe.networks.aliases import SCORES_LAYER
from cnnpipe.networks.spec import TRAINED, BackboneSpec, parse_backbone


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
    # the independent ImageNet judges (cnnpipe.judges.imagenet) of an ImageNet network's images, in
    # the configured order, and the cache their weights may come from
    judges: list[BackboneSpec] = field(default_factory=list)
    cache_dir: str | os.PathLike | None = None

    @property
    def target_names(self) -> list[str]:
        return [self.class_names[i] for i in self.targets]

    def independent(self, kind: str, seed: int) -> list:
        """The independent judges of the images: the pixel classifier fitted on the training set
        (the trained CNN), every configured ImageNet judge (an ImageNet network), or none. Each
        has ``predict_proba`` and ``kind``."""
        if self.data is None:
            from cnnpipe.judges.imagenet import ImageNetJudge

            return [ImageNetJudge(spec, cache_dir=self.cache_dir) for spec in self.judges]
        from cnnpipe.judges.pixels import fit_on_prepared

        return [fit_on_prepared(self.data, kind, num_classes=len(self.class_names), seed=seed)]


def load_classifier(
    settings: Mapping,
    *,
    key: str,
    model_path: str | os.PathLike | None = None,
    data_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Classifier:
    """The network the config section ``key`` (``classes`` or ``fooling``) names with its
    ``backbone``, ``imagenet_classes`` and ``image_size`` (null: the network's native size)
    keys; on the CPU.

    The trained CNN and another run's checkpoint visualize every class at their own image
    size; an ImageNet network the listed ``imagenet_classes``; a network of your own with
    another number of classes all of them (``imagenet_classes`` must then be null)."""
    spec = parse_backbone(settings.get("backbone", TRAINED), f"{key}.backbone", must_exist=False)
    if spec.kind == TRAINED:
        from cnnpipe.data.prepare import load_prepared
        from cnnpipe.networks.checkpoint import load_model

        if model_path is None or data_path is None:
            raise ValueError(f"{key} with backbone 'trained' needs the checkpoint and the prepared dataset")
        model = load_model(model_path)
        data = load_prepared(data_path)
        names = [str(name) for name in model.classes]
        shape = tuple(int(s) for s in data["train_images"].shape[1:])
        return Classifier(model, SCORES_LAYER, shape, list(range(len(names))), names, data, spec.label)

    from cnnpipe.networks.aliases import resolve_layer
    from cnnpipe.networks.build import load_backbone

    model = load_backbone(spec, cache_dir=cache_dir, key=f"{key}.backbone")
    names = list(model.class_names)
    if spec.kind == "checkpoint":
        shape = tuple(int(s) for s in model.image_shape)
        return Classifier(model, SCORES_LAYER, shape, list(range(len(names))), names, None, spec.label)
    targets = class_targets(key, spec, settings.get("imagenet_classes"))
    size = int(settings["image_size"] or model.input_size)  # null: the network's native size
    from cnnpipe.judges.specs import DEFAULT_JUDGE, check_judges

    judges = check_judges(key, settings.get("judge", DEFAULT_JUDGE), spec)
    return Classifier(model, resolve_layer(model, SCORES_LAYER), (3, size, size), targets, names, None, spec.label,
                      judges, cache_dir)
