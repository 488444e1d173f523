# ImageNet weights for the torchvision backbones (vgg19, googlenet), downloaded once into
# the cache with their checksum verified. EfficientNet-Lite0 needs no download.


rule backbone_weights:
    input:
        code=code("backbone_weights"),
    output:
        str(Path(config["cache"]) / "{filename}.pth"),
    log:
        "results/logs/backbone_weights/{filename}.log",
    wildcard_constraints:
        filename="|".join(
            weights_file(name, config["cache"]).stem for name in DOWNLOADABLE
        ),
    conda:
        "../envs/cnnpipe.yaml"
    params:
        backbone=lambda wildcards: next(
            name
            for name in DOWNLOADABLE
            if weights_file(name, config["cache"]).name == f"{wildcards.filename}.pth"
        ),
        cache=lambda wildcards, output: str(Path(output[0]).parent),
    script:
        "../scripts/backbone_weights.py"
