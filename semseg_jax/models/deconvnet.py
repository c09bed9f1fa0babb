"""DeconvNet (Noh, Hong, Han, "Learning Deconvolution Network for Semantic Segmentation", ICCV
2015, arXiv:1505.04366; Fig. 2, Table 1), following the authors' Caffe net
(HyeonwooNoh/DeconvNet model/DeconvNet/DeconvNet_inference_deploy.prototxt), whose layer
names the parameters take.

Encoder: VGG16's 13 convs, each conv (bias) -> BN -> ReLU, each block ending in 2x2 max pooling
that keeps its switches (backbones/vgg.py with indices, as SegNet's); then `fc6`, a 7x7 conv
without padding to 4096 (pool5's 7x7 map -> 1x1 at the paper's 224x224 input), and `fc7`, a
1x1 conv to 4096, each with BN and ReLU. Decoder, the mirror: `fc6-deconv` (a 7x7 transposed
conv back to 512 channels at pool5's size, BN, ReLU), then per block 5..1 max unpooling with the
block's switches followed by its 3x3 deconvolutions (transposed convs, stride 1: deconv{b}_{j},
BN `debn{b}_{j}`, ReLU), all at the block's width but the last, which goes to the previous
block's (deconv4_3: 512 -> 256; deconv1_2 stays at 64), and the 1x1 classifier
(`seg-score-voc` here `seg_score`). Every conv and deconv has a bias.

Init: the encoder from ImageNet VGG16 in the reference (config.model.backbone_pretrained; at
random init He normal as SegNet's); fc6, fc7 and the decoder N(0, 0.01^2) with zero biases.

Departures: BatchNorm is PyTorch's (the Caffe fork's BN starts its shift at 0.001, here 0, and
its inference statistics are recomputed over the training set afterwards); inputs need a pool5
map of at least 7x7 (224x224 or more; an error names the size), and odd sizes pool as SegNet's
(padded, unpooled back and cropped). EDeconvNet, the paper's ensemble with FCN-8s (averaged
class probabilities, then a CRF), is an evaluation of two trained models, not a network.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.vgg import VGG16, VGG16_DEPTHS, VGG16_WIDTHS
from semseg_jax.models.layers import batch_norm, conv2d, conv_transpose2d, max_unpool_2x2

DECONVNET_VARIANTS = ('vgg16',)
FC_FEATURES = 4096
FC_KERNEL = 7

# Caffe's "msra" filler for the encoder at random init, N(0, 2 / fan_in) (as SegNet's).
msra_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
gaussian_001 = nn.initializers.normal(0.01)


class DeconvNet(nn.Module):
  """DeconvNet; logits at the input's size."""
  num_classes: int
  widths: Sequence[int] = VGG16_WIDTHS
  fc_features: int = FC_FEATURES
  fc_kernel: int = FC_KERNEL
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    dtype, k = self.dtype, self.fc_kernel
    encoded = VGG16(batch_norm=True, widths=self.widths, with_indices=True,
                    kernel_init=msra_init, dtype=dtype, name='backbone')(
                        images.astype(dtype), train)
    x = encoded.pools[-1]
    if min(x.shape[1:3]) < k:
      raise ValueError(f'DeconvNet: a {images.shape[1]}x{images.shape[2]} input pools to '
                       f'{x.shape[1]}x{x.shape[2]} at pool5, smaller than fc6\'s {k}x{k} '
                       f'kernel; inputs need at least {32 * k - 31}x{32 * k - 31} pixels.')
    bn_relu = lambda y, name: nn.relu(batch_norm(train, dtype, name=name)(y))
    x = conv2d(self.fc_features, k, padding=0, use_bias=True, kernel_init=gaussian_001,
               dtype=dtype, name='fc6')(x)
    x = bn_relu(x, 'bnfc6')
    x = bn_relu(conv2d(self.fc_features, 1, use_bias=True, kernel_init=gaussian_001,
                       dtype=dtype, name='fc7')(x), 'bnfc7')
    x = conv_transpose2d(self.widths[-1], k, 1, kernel_init=gaussian_001, dtype=dtype,
                         name='fc6_deconv')(x)
    x = bn_relu(x, 'fc6_deconv_bn')
    block_hw = [tuple(images.shape[1:3])] + [p.shape[1:3] for p in encoded.pools[:-1]]
    for b in range(len(VGG16_DEPTHS), 0, -1):
      x = max_unpool_2x2(x, encoded.indices[b - 1], block_hw[b - 1])
      depth = VGG16_DEPTHS[b - 1]
      for j in range(1, depth + 1):
        width = self.widths[b - 1] if j < depth or b == 1 else self.widths[b - 2]
        x = conv_transpose2d(width, 3, 1, padding=1, kernel_init=gaussian_001, dtype=dtype,
                             name=f'deconv{b}_{j}')(x)
        x = bn_relu(x, f'debn{b}_{j}')
    logits = conv2d(self.num_classes, 1, use_bias=True, kernel_init=gaussian_001, dtype=dtype,
                    name='seg_score')(x)
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def deconvnet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
              **overrides: Any) -> DeconvNet:
  """DeconvNet ('vgg16'); `overrides` replace fields (widths, fc_features, fc_kernel: smaller
  for quick checks)."""
  if variant not in DECONVNET_VARIANTS:
    raise ValueError(f'Unknown DeconvNet variant {variant!r}; expected one of '
                     f'{sorted(DECONVNET_VARIANTS)}.')
  return DeconvNet(num_classes, dtype=dtype, **overrides)
