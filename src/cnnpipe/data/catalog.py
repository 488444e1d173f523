"""The datasets cnnpipe knows, as plain data: importable while the workflow is parsed,
without torch."""

from __future__ import annotations

# The side of each dataset's images when dataset.image_size is 0 (an image folder's is known
# only from its files).
NATIVE_SIZES = {"digits": 8, "mnist": 28, "fashion_mnist": 28, "kmnist": 28, "cifar10": 32}

# The images per class of scikit-learn's digits (1797 in all), so that dataset.test_fraction is
# checked while the workflow is parsed without loading scikit-learn.
DIGITS_CLASS_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)
