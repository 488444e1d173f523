"""Neural style transfer, the algorithm (Gatys et al. 2015, "A Neural Algorithm of Artistic
Style"): losses, targets and the optimization.

The picture x* keeps the *content* of one image (its feature maps at a deep layer) and takes
the *style* of another (the Gram matrices of filter responses at several layers: which
features occur together, wherever they are). It is one more gradient ascent on the input, run
by :mod:`cnnpipe.ascent`: the objective is minus the weighted losses

    total = content_weight * content_loss + style_weight * style_loss + tv_weight * tv_loss

with per-layer terms

    content term  mean_ij (F_ij - P_ij)^2                 F, P: [C, H*W] features of x, content
    style term    mean_cd (G_cd - A_cd)^2,  G = F F^T / (C H W)   A: Gram matrix of the style

The Gram matrix, normalized by the number of feature values, does not depend on the image
size, so content and style images may differ in size and aspect ratio. With ``relative=True``
(the default) each layer's term is divided by the mean square of its target, so every layer
counts alike and the weights mean the same for every backbone; content_loss and style_loss
are then means over their layers of relative squared errors (0 = identical, 1 = as far as
from zero). ``relative=False`` gives the PyTorch tutorial's raw sums.

The pixels: the picture plus a mirrored border of ``pad`` pixels is optimized, the border's
features do not count in the losses and it is cropped at the end (the network's edge
effects fall on the border). L-BFGS moves free pixels kept near [0, 1] by a smooth penalty
(see ``FreePixels`` for why not clamped or sigmoid pixels); Adam moves clamped pixels,
projected after every step. The engine runs the loop; ``steps`` counts L-BFGS evaluations.

Smoothing (``smoothing="softmax"``; after Wang, Li and Vasconcelos, CVPR 2021, "Rethinking
and Improving the Robustness of Image Style Transfer"): networks other than VGG have peaky,
low-entropy activations, a few large values at a few positions that the raw Gram matrices
and the content term chase, which shows as blocky artifacts. Both losses can instead compare
``smooth_features``: at every position p of layer l the softmax over its C channels

    S(p) = C softmax_c(F(p) / (T s_l)),    mean_c S_c(p) = 1

with T the ``temperature`` and s_l the root mean square of layer l on its target image (the
content image for content layers, the style image for style layers), so T means the same in
every layer and network. Every position then weighs the same in the Gram matrix, whatever
the size of its activations; which channels win there is what counts. Large T flattens S
towards 1 (no signal left), small T towards a one-hot vote. (A softmax over each channel's
positions, the other reading, left the image almost unchanged on EfficientNet-Lite0: it
concentrates on the peaks it should spread.)

A content layer may also give a vector, such as the network's logits (alias ``logits``): its
term then asks the picture to keep the generator's own prediction for the content photo (the
photo's class, not its layout), compared as it is (no positions: no softmax, no border).

Blended styles: several style images with weights w_i (normalized to sum 1) give the layer's
Gram target sum_i w_i G_i, each image seen at its own size (with smoothing, s_l is the root of
the weighted mean square over the style images, so one scale serves the whole blend).

Multiscale (``transfer_multiscale``, after jcjohnson/neural-style's multiresolution recipe):
the picture is made at a few sizes in turn, smallest first; each size starts from the
previous result upscaled (bicubic, clamped to [0, 1]), with the content and style images
taken afresh at that size. The coarse scales settle the layout cheaply, the large one only
refines it. L-BFGS keeps ``lbfgs_history`` pairs of image-sized vectors: at 1024 px with the
default 20 that is 40 x 13 MB, a share of the peak memory worth a setting.

Batches (``transfer_batch``, for a GPU): pairs whose contents have one size are optimized
together, one forward and backward per step for all; each keeps its own targets, norms and
smoothing scales (``stack_targets``), so its loss is the one it has alone. Adam only: its
steps are element-wise, while L-BFGS's dot products and step sizes would mix the pairs.

Targets are computed once, each image at its own size. Speed: style terms use one custom
autograd function whose backward is a single matmul (Gram + MSE fused); the forward pass
stops at the deepest needed layer (``ascent.capture``); ``cnnpipe.networks.fold.inference_model`` runs the network
in channels_last memory format, with BatchNorm folded into the preceding convolutions (on a
copy, :func:`cnnpipe.networks.fold.fold_batchnorm`) where the network has them. Reading the
images and writing the stage's files is :mod:`cnnpipe.stages.style`.

Modules: ``settings`` and ``names`` (torch-free: the options, a blend's weights and names),
``losses``, ``targets``, ``optimize`` (one pair or a batch, one size or several) and
``configured`` (the stage's settings turned into a call)."""

