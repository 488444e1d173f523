"""The networks a config section may name as its ``backbone``, without importing torch.

One list for the whole package (and the networks among them whose weights are downloaded): the parse-time checks (:mod:`cnnpipe.plan`) read it while
Snakemake parses the workflow, and :mod:`cnnpipe.backbones`, :mod:`cnnpipe.classifier` and
:mod:`cnnpipe.filters` check names against it at run time. The order is the one error
messages show: the pipeline's own trained CNN (the default of most stages), then the
ImageNet networks, as ``workflow/schemas/config.schema.yaml`` lists them.
"""

BACKBONES = ("trained", "efficientnet_lite0", "vgg19", "googlenet")

# The torchvision networks whose ImageNet weights the ``backbone_weights`` rule downloads, and
# their file names (each carries a SHA-256 prefix that the download checks);
# tests/test_plan.py checks them against torchvision's own URLs.
WEIGHT_FILES = {
    "vgg19": "vgg19-dcbb9e9d.pth",
    "googlenet": "googlenet-1378be20.pth",
}
DOWNLOADABLE = tuple(WEIGHT_FILES)
