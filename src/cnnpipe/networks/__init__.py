"""Networks: backbone specs (torch-free), weights, the lecture CNN, building, layer aliases, BatchNorm folding, checkpoints, layer listing."""
