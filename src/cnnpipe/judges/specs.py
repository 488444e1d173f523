"""Which network judges which stage's images, checked while the workflow is parsed (torch-free): the judge, its style layers, and the class indices a stage makes images for."""

from __future__ import annotations

from cnnpipe.networks.spec import BackboneSpec, default_layers_for, layer_list, parse_backbone

DEFAULT_JUDGE = "efficientnet_lite1"
# Where the judge measures style: the end of each of EfficientNet-Lite's stages at 1/2 ... 1/16
# and one at 1/32, not the generator's default style layers (the first block at each stride),
# so the measure is not the loss that was minimized. Other networks: their default style layers.
_LITE_STYLE_LAYERS = ("stem", "blocks.1", "blocks.2", "blocks.3", "blocks.5")
JUDGE_STYLE_LAYERS = {"efficientnet_lite0": _LITE_STYLE_LAYERS, "efficientnet_lite1": _LITE_STYLE_LAYERS}


def check_judge(key: str, judge, generator, *, where: str | None = None) -> BackboneSpec | None:
    """One judge's spec for the stage ``key`` (``classes``/``fooling``/``style``), or None where
    it has nothing to judge (``judge: null``, or for classes and fooling a generator without
    ImageNet's classes: their images are made for the generator's classes). The style judge
    measures style and content with its own layers and classes, whatever the generator's
    classes. Raises ``ValueError`` naming ``where`` (default ``<key>.judge``) when the judge is
    the generator itself or does not predict ImageNet's 1000 classes. Torch-free: called while
    the workflow is parsed. A list of judges: :func:`check_judges`."""
    where = where or f"{key}.judge"
    generator = parse_backbone(generator, f"{key}.backbone", must_exist=False)
    if judge is None or (key != "style" and not generator.imagenet):
        return None
    if isinstance(judge, (list, tuple)):
        raise ValueError(f"{where}: expected one network, got a list; use check_judges for a list")
    spec = parse_backbone(judge, where)
    if not spec.imagenet:
        raise ValueError(f"{where}: {spec.label!r} does not predict ImageNet's 1000 classes, so it cannot "
                         f"judge images made for them")
    if spec.to_config() == generator.to_config():
        raise ValueError(f"{where}: {spec.label!r} is the network the images are optimized on "
                         f"({key}.backbone); an independent judge must be another network, e.g. "
                         f"{'efficientnet_lite0' if spec.arch == DEFAULT_JUDGE else DEFAULT_JUDGE}")
    return spec


def check_judges(key: str, judges, generator) -> list[BackboneSpec]:
    """The judges of the stage ``key``, in the configured order: ``<key>.judge`` is one backbone
    spec (a list of one), a non-empty list of distinct specs, or null (none). Empty where there
    is nothing to judge (see :func:`check_judge`). Errors name the entry at fault
    (``classes.judge[1]: ...``). Torch-free: called while the workflow is parsed."""
    if judges is None or not isinstance(judges, (list, tuple)):
        spec = check_judge(key, judges, generator)
        return [] if spec is None else [spec]
    if not judges:
        raise ValueError(f"{key}.judge: an empty list; give one network or more, or null for no judge")
    specs, seen = [], {}
    for index, judge in enumerate(judges):
        where = f"{key}.judge[{index}]"
        if judge is None:
            raise ValueError(f"{where}: null inside a list; write {key}.judge: null for no judge")
        spec = check_judge(key, judge, generator, where=where)
        if spec is None:  # the generator's images are not made for ImageNet's classes
            return []
        config = repr(spec.to_config())
        if config in seen:
            raise ValueError(f"{where}: {spec.label!r} is listed already as {key}.judge[{seen[config]}]; "
                             "each judge once")
        seen[config] = index
        specs.append(spec)
    return specs


def judges_config(specs: list[BackboneSpec]):
    """The judges as a config would write them, for a rule's params: None for none, one spec
    for one (so ``judge: x`` and ``judge: [x]`` rerun nothing), else the list."""
    if not specs:
        return None
    return specs[0].to_config() if len(specs) == 1 else [spec.to_config() for spec in specs]


def style_layers(spec: BackboneSpec) -> tuple[str, ...]:
    """The layers (names or aliases) where a judge measures Gram matrices; () where none are
    known for its architecture."""
    if spec.arch in JUDGE_STYLE_LAYERS:
        return JUDGE_STYLE_LAYERS[spec.arch]
    return tuple(layer_list((default_layers_for(spec) or {}).get("style")))


def class_targets(key: str, backbone, indices) -> list[int]:
    """The class indices a backbone's ``classes``/``fooling`` images are made for: the listed
    ``imagenet_classes`` on an ImageNet network, every class of a network with another number
    of classes (the list must then be null). Checked at parse time too, naming ``key``."""
    spec = parse_backbone(backbone, f"{key}.backbone", must_exist=False)
    if not spec.imagenet:
        if indices is not None:
            raise ValueError(f"{key}.imagenet_classes: backbone {spec.label!r} has {spec.num_classes} classes, not "
                             f"ImageNet's 1000; set {key}.imagenet_classes: null to visualize all of them")
        return list(range(spec.num_classes))
    targets = [int(i) for i in indices or []]
    bad = [i for i in targets if not 0 <= i < 1000]
    if not targets or bad or len(set(targets)) != len(targets):
        raise ValueError(f"{key}.imagenet_classes: need distinct ImageNet class indices in 0..999 for backbone "
                         f"{spec.label!r}, got {indices!r}")
    return targets
