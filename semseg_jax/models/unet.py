"""U-Net (Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, arXiv:1505.04597; Fig. 1, Sec. 2 and 3).

Contracting path: per level two 3x3 convs, each followed by a ReLU, then a 2x2 max pool of
stride 2; the width doubles per level from `base_width` (64, 128, 256, 512, 1024 for the paper's
5 levels). Expanding path: per level a 2x2 stride-2 up-convolution halving the width, concatenation
with the contracting feature of the same level (up-sampled map first, as in the authors' Caffe
release), two 3x3 convs + ReLU. A 1x1 conv maps the last 64 channels to the classes. Dropout
(p = 0.5) is applied at the end of the contracting path (Sec. 3): after the last ReLU of the two
deepest levels (the release's dropout_d3c and dropout_d4c); the dropped map of the second-deepest
level also feeds its skip connection. Init (Sec. 3): weights N(0, 2 / N), N = incoming nodes of a
neuron (9 * C_in for a 3x3 conv, C_in for the 2x2 stride-2 up-conv and the 1x1 conv), zero biases.

Reference: only the paper (the authors' Caffe release has no license and is not on GitHub).
Details the paper leaves open follow the release as seen through public conversions of it:
a ReLU after each up-convolution, the concatenation order, the dropout positions.

Deviations:
  * "same" (zero-padded) 3x3 convs instead of the paper's valid convs + overlap-tile strategy,
    so the logits cover the whole input and need no cropped skip connections.
  * Inputs whose height/width is not a multiple of 2^(depth - 1) are mirror-padded at the bottom
    and right (the paper extrapolates missing context by mirroring too) and the logits are
    cropped back, so the logits always have the input's size (output stride 1).
  * The release reportedly gives its last up-convolution 128 outputs; here every up-convolution
    halves the width as the paper's text and Fig. 1 say.
  * `batch_norm=True` (variant 'bn'): BatchNorm after every 3x3 conv (before the ReLU), and those
    convs lose their then-redundant bias, like mmsegmentation's UNet and most modern ports.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import (batch_norm, conv2d, conv_transpose2d, he_normal_init,
                                      max_pool)

UNET_VARIANTS: dict[str, dict] = {
    'paper': dict(batch_norm=False),
    'bn': dict(batch_norm=True),
}


class DoubleConv(nn.Module):
  """Two 3x3 convs, each followed by (BatchNorm and) a ReLU: one level of either path."""
  features: int
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for i in (1, 2):
      x = conv2d(self.features, 3, use_bias=not self.batch_norm,
                 kernel_init=he_normal_init(9 * x.shape[-1]), dtype=self.dtype, name=f'conv{i}')(x)
      if self.batch_norm:
        x = batch_norm(train, self.dtype, name=f'bn{i}')(x)
      x = nn.relu(x)
    return x


class UNet(nn.Module):
  """U-Net with "same" convs; logits at the input's size."""
  num_classes: int
  base_width: int = 64
  depth: int = 5
  batch_norm: bool = False
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    if self.depth < 2:
      raise ValueError(f'UNet needs depth >= 2 (one pooling at least), got {self.depth}.')
    h, w = images.shape[1:3]
    multiple = 2 ** (self.depth - 1)
    x = jnp.pad(images, ((0, 0), (0, -h % multiple), (0, -w % multiple), (0, 0)), mode='reflect')

    skips = []
    for level in range(1, self.depth + 1):
      if level > 1:
        x = max_pool(x, 2, 2)
      x = DoubleConv(self.base_width * 2 ** (level - 1), self.batch_norm, self.dtype,
                     name=f'down{level}')(x, train)
      if level >= self.depth - 1:  # "Drop-out layers at the end of the contracting path".
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      skips.append(x)

    for level in range(self.depth - 1, 0, -1):
      width = self.base_width * 2 ** (level - 1)
      # The 2x2 stride-2 up-convolution: each output sees one pixel of each input channel,
      # N = C_in.
      x = nn.relu(conv_transpose2d(width, 2, 2, kernel_init=he_normal_init(x.shape[-1]),
                                   dtype=self.dtype, name=f'upconv{level}')(x))
      x = jnp.concatenate([x, skips[level - 1]], axis=-1)
      x = DoubleConv(width, self.batch_norm, self.dtype, name=f'up{level}')(x, train)

    logits = conv2d(self.num_classes, 1, use_bias=True, kernel_init=he_normal_init(x.shape[-1]),
                    dtype=self.dtype, name='classifier')(x)
    return {'logits': logits[:, :h, :w].astype(jnp.float32), 'aux': []}


def unet(variant: str, num_classes: int, *, dtype: Any = jnp.float32, dropout_rate: float = 0.5,
         **overrides: Any) -> UNet:
  """U-Net 'paper' (no normalisation) or 'bn' (BatchNorm after every 3x3 conv); `overrides`
  replace fields (base_width, depth, batch_norm)."""
  if variant not in UNET_VARIANTS:
    raise ValueError(f'Unknown U-Net variant {variant!r}; expected one of {sorted(UNET_VARIANTS)}.')
  return UNet(num_classes=num_classes, dtype=dtype, dropout_rate=dropout_rate,
              **{**UNET_VARIANTS[variant], **overrides})
