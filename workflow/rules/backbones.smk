# ImageNet weights of the configured torchvision networks, downloaded once into the cache
# with their checksum verified. The EfficientNet-Lite weights need no download.
DOWNLOADS = {
    Path(spec.files(config["cache"])[0]).stem: spec.arch
    for spec in [
        *BACKBONES.values(),
        *(spec for specs in JUDGES.values() for spec in specs),
        *FIRST_LAYER_BACKBONES.values(),
        ATLAS_SPEC,
        *ATLAS_JUDGES,
    ]
    if spec is not None and spec.downloads
}


rule backbone_weights:
    input:
        code=code("backbone_weights"),
    output:
        str(Path(config["cache"]) / "{filename}.pth"),
    log:
        "results/logs/backbone_weights/{filename}.log",
    benchmark:
        "results/benchmarks/backbone_weights/{filename}.tsv"
    wildcard_constraints:
        filename="|".join(re.escape(stem) for stem in DOWNLOADS) or "(?!)",
    conda:
        "../envs/cnnpipe.yaml"
    params:
        backbone=lambda wildcards: DOWNLOADS[wildcards.filename],
        cache=lambda wildcards, output: str(Path(output[0]).parent),
        mirror=config["weights_mirror"],
    script:
        "../scripts/backbone_weights.py"
