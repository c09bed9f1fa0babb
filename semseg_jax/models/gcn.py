"""GCN: Peng, Zhang, Yu, Luo, Sun, "Large Kernel Matters -- Improve Semantic Segmentation by
Global Convolutional Network", CVPR 2017 (Fig. 2, Secs. 3-4).

No official code was released and mmsegmentation has no GCN; this follows the paper, with
ZijunDeng/pytorch-semantic-segmentation's models/gcn.py (itself after ycszen/pytorch-ss) as the
cross-check for what the paper leaves open.

Network (Fig. 2), on a ResNet at output stride 32 whose stages res-2..res-5 (our stages 1-4)
have strides 4, 8, 16, 32:
  - GCN module on every stage output (Fig. 2 B): two paths, (k x 1 conv -> 1 x k conv) and
    (1 x k conv -> k x 1 conv), each of num_classes channels, summed; no BatchNorm and no
    nonlinearity (Sec. 3). k = 15 (the paper's best, Table 1).
  - Boundary Refinement (BR, Fig. 2 C): x + conv3x3(relu(conv3x3(x))), num_classes channels.
  - Score maps: BR(GCN(stage s)) for each stage.
  - Fusion, coarsest first: x = score map of res-5; for res-4, res-3, res-2 in turn:
    x = BR(deconv x2(x) + that stage's score map). Then x = BR(deconv x2(x)) (stride 2) and
    x = BR(deconv x2(x)) (stride 1): the logits, at the input's full resolution.
    That is 4 GCNs, 9 BRs and 5 deconvolutions, as in the re-implementation.

Decisions where the paper is silent (and deviations):
  - Deconvolution: the paper's "deconvolution layer" is taken as FCN's (Long et al.): a learnable
    stride-2 transposed conv (kernel 4, padding 1, num_classes -> num_classes, no bias)
    initialised to bilinear upsampling (bilinear kernel on the class-to-same-class diagonal,
    zeros elsewhere), PyTorch ConvTranspose2d semantics. ZijunDeng's re-implementation uses
    fixed bilinear interpolation instead.
  - Sizes not divisible by 32: a deconvolution doubles the size, which may exceed the finer
    level's size (ceil arithmetic of the strided convs) by one; it is cropped to that size at the
    bottom/right (FCN's crop, offset 0). The last two crop to ceil(H / 2) and then to H, so the
    logits are always exactly H x W (output stride 1).
  - GCN and BR convolutions have biases (PyTorch's default, as in the re-implementation); convs
    are He-normal (fan_out) initialised with zero biases.
  - Backbone: the paper uses ImageNet-pretrained ResNet-152 (He et al., 7x7 stem: our 'r152v1').
    Variant names follow the zoo: 'r<depth>' is ResNetV1c (deep stem), 'r<depth>v1' the 7x7
    stem; the configs use 'r50', 'r101', 'r152'. No auxiliary head and no dropout (none in the
    paper).

"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.resnet import stride32_resnet_from_variant
from semseg_jax.models.layers import BilinearConvTranspose, EncoderDecoder, conv2d


class GlobalConv(nn.Module):
  """The GCN module (Fig. 2 B): (k x 1 -> 1 x k) + (1 x k -> k x 1), linear, with biases."""
  features: int
  kernel_size: int = 15
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, c = self.kernel_size, self.features
    left = conv2d(c, (k, 1), use_bias=True, dtype=self.dtype, name='left_kx1')(x)
    left = conv2d(c, (1, k), use_bias=True, dtype=self.dtype, name='left_1xk')(left)
    right = conv2d(c, (1, k), use_bias=True, dtype=self.dtype, name='right_1xk')(x)
    right = conv2d(c, (k, 1), use_bias=True, dtype=self.dtype, name='right_kx1')(right)
    return left + right


class BoundaryRefinement(nn.Module):
  """BR (Fig. 2 C): x + conv3x3(relu(conv3x3(x))), convs with biases, channels kept."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    y = nn.relu(conv2d(c, 3, use_bias=True, dtype=self.dtype, name='conv1')(x))
    return x + conv2d(c, 3, use_bias=True, dtype=self.dtype, name='conv2')(y)


class GCNHead(nn.Module):
  """GCN + BR on every stage, deconvolution fusion from the coarsest, two final x2 deconvs + BR;
  logits at `output_hw` (the image's size)."""
  num_classes: int
  kernel_size: int = 15
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], output_hw: tuple[int, int],
               train: bool = False) -> jax.Array:
    del train  # No BatchNorm or dropout in the head.
    scores = []
    for s, feature in enumerate(features, start=1):
      x = GlobalConv(self.num_classes, self.kernel_size, dtype=self.dtype, name=f'gcn{s}')(feature)
      scores.append(BoundaryRefinement(dtype=self.dtype, name=f'br{s}')(x))

    def upsample(x: jax.Array, hw: tuple[int, int], name: str) -> jax.Array:
      return BilinearConvTranspose(2, self.dtype, name=name)(x, hw)

    x = scores[-1]
    for s in range(len(scores) - 1, 0, -1):  # Stage s + 1's map joins stage s's.
      finer = scores[s - 1]
      x = upsample(x, finer.shape[1:3], f'deconv{s + 1}') + finer
      x = BoundaryRefinement(dtype=self.dtype, name=f'fuse_br{s}')(x)
    height, width = output_hw
    x = upsample(x, ((height + 1) // 2, (width + 1) // 2), 'deconv_half')
    x = BoundaryRefinement(dtype=self.dtype, name='br_half')(x)
    x = upsample(x, (height, width), 'deconv_full')
    return BoundaryRefinement(dtype=self.dtype, name='br_full')(x)


def gcn(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
        multi_grid: Sequence[int] = (), **overrides: Any) -> EncoderDecoder:
  """GCN on the ResNet that `variant` names ('r152v1' is the paper's; 'r50', 'r101', 'r152' the
  zoo's v1c; output stride 32); `overrides` replace GCNHead fields (e.g. kernel_size=7)."""
  backbone = stride32_resnet_from_variant('GCN', variant, multi_grid, dtype)
  head = GCNHead(num_classes, **{'kernel_size': 15, 'dtype': dtype, **overrides})
  return EncoderDecoder(backbone, head, decode_head_takes_image_hw=True)
