"""The networks a config section may name as its ``backbone``, without importing torch.

One list for the whole package: the parse-time checks (:mod:`cnnpipe.plan`) read it while
Snakemake parses the workflow, and :mod:`cnnpipe.backbones`, :mod:`cnnpipe.classifier` and
:mod:`cnnpipe.filters` check names against it at run time. The order is the one error
messages show: the pipeline's own trained CNN (the default of most stages), then the
ImageNet networks, as ``workflow/schemas/config.schema.yaml`` lists them.
"""

BACKBONES = ("trained", "efficientnet_lite0", "vgg19", "googlenet")
