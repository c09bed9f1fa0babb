"""LinkNet (Chaurasia, Culurciello, "LinkNet: Exploiting Encoder Representations for Efficient
Semantic Segmentation", VCIP 2017, arXiv:1707.03718; Fig. 1-3), following the authors' Torch7
code (e-lab/LinkNet, models/model.lua); its PyTorch port (e-lab/pytorch-linknet) differs where
noted.

Encoder: ImageNet ResNet-18 (fb.resnet.torch's, torchvision's layout: backbones/resnet.py at
output stride 32): the initial block (7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max pooling)
and four encoder blocks of two basic blocks, the first of blocks 2-4 strided. Decoder block i
(Fig. 3), for an encoder block of m input and n output channels: 1x1 conv m -> m/4, 3x3 full
(transposed) convolution m/4 -> m/4 at the encoder block's stride (adj 1 where strided), 1x1
conv m/4 -> n, each with bias, then BN (eps 1e-3) and ReLU. Decoder i's output is added to the
input of encoder block i (the "link": decoder 4 to encoder 3's output, ..., decoder 1 to the
initial block's), then a ReLU. Final block: 3x3 full conv 64 -> 32 at stride 2 (BN eps 1e-5,
ReLU), 3x3 conv 32 -> 32 (BN eps 1e-3, ReLU), and the classifier, a 2x2 stride-2 full conv to
the classes; all with bias. Logits at the input's resolution.

Init outside the encoder (the code's ConvInit): weights N(0, 2 / (kh * kw * C_out)), biases at
Torch7's default U(+-1/sqrt(kh * kw * C_in)), BN gamma 1 / beta 0. The encoder starts from
ImageNet weights in the paper (`config.model.backbone_pretrained` reads torchvision's
resnet18/34 files); at random init it is backbones/resnet.py's.

Variants: 'r18' (the paper) and 'r34' (the same network on ResNet-34, a common heavier form);
the decoders take their widths from the encoder's (64, 64, 128, 256, 512 for both).

Departures:
- Inputs of any size: where the encoder rounded a size up (a side not a multiple of 32), each
  decoder output is cropped at the bottom and right to its link's size and the logits to the
  input's (the reference needs multiples of 32: its additions fail otherwise).
- The reference also outputs an 'Unlabeled' class (trained, left out of its metrics); here
  unlabelled pixels carry the ignore label and have no output.
- The PyTorch port has no biases in the decoders (992 parameters fewer), BN eps 1e-5, no ReLU
  after the additions, and a LogSoftmax at the end; this follows the Torch7 code.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.resnet import RESNET_DEPTHS, ResNet, resnet_channels
from semseg_jax.models.layers import (batch_norm, conv2d, conv_transpose2d, he_normal_init,
                                      torch_default_init)

LINKNET_VARIANTS = {'r18': 18, 'r34': 34}


def _conv(features: int, in_features: int, kernel_size: int, dtype: Any,
          name: str) -> nn.Conv:
  """cudnn.SpatialConvolution with bias (stride 1, same padding) at the code's ConvInit."""
  return conv2d(features, kernel_size, use_bias=True,
                bias_init=torch_default_init(kernel_size * kernel_size * in_features),
                dtype=dtype, name=name)


def _full_conv(features: int, in_features: int, kernel_size: int, stride: int, padding: int,
               output_padding: int, dtype: Any, name: str) -> nn.ConvTranspose:
  """Torch7's SpatialFullConvolution (PyTorch's ConvTranspose2d) with bias at the code's
  ConvInit: N(0, 2 / (kh * kw * C_out)) weights, Torch7's default bias."""
  return conv_transpose2d(
      features, kernel_size, stride, padding, output_padding,
      kernel_init=he_normal_init(kernel_size * kernel_size * features),
      bias_init=torch_default_init(kernel_size * kernel_size * in_features), dtype=dtype,
      name=name)


class DecoderBlock(nn.Module):
  """Fig. 3 (right): 1x1 conv m -> m/4, 3x3 full conv at `stride`, 1x1 conv m/4 -> n; each
  with BN (eps 1e-3) and ReLU."""
  features: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    m = x.shape[-1]
    x = _conv(m // 4, m, 1, self.dtype, 'conv1')(x)
    x = nn.relu(batch_norm(train, self.dtype, epsilon=1e-3, name='bn1')(x))
    x = _full_conv(m // 4, m // 4, 3, self.stride, 1, self.stride - 1, self.dtype,
                   'full_conv')(x)
    x = nn.relu(batch_norm(train, self.dtype, epsilon=1e-3, name='bn2')(x))
    x = _conv(self.features, m // 4, 1, self.dtype, 'conv2')(x)
    return nn.relu(batch_norm(train, self.dtype, epsilon=1e-3, name='bn3')(x))


class LinkNet(nn.Module):
  """LinkNet on a basic-block ResNet; logits at the input's size."""
  num_classes: int
  depth: int = 18
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    if self.depth not in RESNET_DEPTHS or RESNET_DEPTHS[self.depth][0]:
      raise ValueError(f'LinkNet depth {self.depth}; expected a basic-block ResNet (18 or 34).')
    h, w = images.shape[1:3]
    encoder = ResNet(self.depth, deep_stem=False, output_stride=32, stem_feature=True,
                     dtype=self.dtype, name='backbone')
    links = encoder(images, train)  # The initial block's output, then encoder blocks 1-4's.
    widths = (64, *resnet_channels(self.depth))
    x = links[-1]
    for i in range(4, 0, -1):  # Decoder i mirrors encoder block i and joins its input.
      x = DecoderBlock(widths[i - 1], 1 if i == 1 else 2, self.dtype, name=f'decoder{i}')(
          x, train)
      link = links[i - 1]
      x = nn.relu(link + x[:, :link.shape[1], :link.shape[2]])  # (As the code; both >= 0.)

    x = _full_conv(32, 64, 3, 2, 1, 1, self.dtype, 'final_full_conv1')(x)
    x = nn.relu(batch_norm(train, self.dtype, name='final_bn1')(x))
    x = _conv(32, 32, 3, self.dtype, 'final_conv')(x)
    x = nn.relu(batch_norm(train, self.dtype, epsilon=1e-3, name='final_bn2')(x))
    logits = _full_conv(self.num_classes, 32, 2, 2, 0, 0, self.dtype, 'classifier')(x)
    return {'logits': logits[:, :h, :w].astype(jnp.float32), 'aux': []}


def linknet(variant: str, num_classes: int, *, dtype: Any = jnp.float32) -> LinkNet:
  """LinkNet 'r18' (the paper) or 'r34'."""
  if variant not in LINKNET_VARIANTS:
    raise ValueError(f'Unknown LinkNet variant {variant!r}; expected one of '
                     f'{sorted(LINKNET_VARIANTS)}.')
  return LinkNet(num_classes, LINKNET_VARIANTS[variant], dtype)
