"""The algorithms built on the ascent engine: DeepDream, style transfer, CPPN, fooling searches."""
