"""Dilated Residual Networks (Yu, Koltun, Funkhouser, "Dilated Residual Networks", CVPR 2017;
Fig. 3-4, Table 1), DRN-C and DRN-D as the authors' code builds them (fyu/drn, drn.py), whose
module names the parameters take (`convert/drn.py` reads its ImageNet and Cityscapes files).

Eight levels at output stride 8; widths (16, 32, 64, 128, 256, 512, 512, 512):
  level 1-2   DRN-C: 7x7 conv (stride 1), BN, ReLU; one basic block each (16, then 32 at
              stride 2). DRN-D: 7x7 conv, BN, ReLU (`layer0`), then plain 3x3 conv-BN-ReLU
              layers (16; 32 at stride 2) instead of the residual blocks.
  level 3-4   residual stages (basic or bottleneck blocks), 64 and 128, stride 2 each
  level 5-6   residual stages, 256 dilated 2 and 512 dilated 4 (instead of striding)
  level 7-8   de-gridding layers, 512: dilation 2 then 1. DRN-C: basic blocks without their
              residual connections; DRN-D: plain conv-BN-ReLU layers.
Blocks of stages 5-8 are dilated from their first block on (the code's new_level=False). A
basic block dilates both its convs, a bottleneck block its 3x3 conv. A stage's first block gets
a 1x1 projection shortcut (conv + BN) where the stride or width changes (in DRN-C-58 also ahead
of level 7's non-residual blocks, where the code builds one it never adds; kept so that its
ImageNet weights load). Convs have no bias; BN eps 1e-5. Init: convs N(0, 2 / (k k C_out)),
BN 1 / 0.

Variants (blocks per level): c26, c42 (basic), c58 (bottleneck) with (1, 1, 3|2, 4|2, 6|2,
3|2, 1, 1); d22, d38 (basic), d54, d105 (bottleneck). Returns the last level's features
(512 channels, 1/8).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import batch_norm, conv2d

WIDTHS = (16, 32, 64, 128, 256, 512, 512, 512)
# name -> (architecture, bottleneck blocks in levels 3-6?, blocks or convs per level)
DRN_VARIANTS: dict[str, tuple[str, bool, tuple[int, ...]]] = {
    'c26': ('C', False, (1, 1, 2, 2, 2, 2, 1, 1)),
    'c42': ('C', False, (1, 1, 3, 4, 6, 3, 1, 1)),
    'c58': ('C', True, (1, 1, 3, 4, 6, 3, 1, 1)),
    'd22': ('D', False, (1, 1, 2, 2, 2, 2, 1, 1)),
    'd38': ('D', False, (1, 1, 3, 4, 6, 3, 1, 1)),
    'd54': ('D', True, (1, 1, 3, 4, 6, 3, 1, 1)),
    'd105': ('D', True, (1, 1, 3, 4, 23, 3, 1, 1)),
}
# Levels 3-8: (stride, dilation).
LEVEL_STRIDES_DILATIONS = ((2, 1), (2, 1), (1, 2), (1, 4), (1, 2), (1, 1))


def _conv(features: int, kernel_size: int, stride: int = 1, dilation: int = 1,
          dtype: Any = jnp.float32, name: str | None = None) -> nn.Conv:
  """A conv without bias (padding dilation * (k - 1) / 2), N(0, 2 / (k k C_out))."""
  return conv2d(features, kernel_size, stride, dilation, dtype=dtype, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs (the first strided), both dilated; + shortcut unless `residual` is off."""
  features: int
  stride: int = 1
  dilation: int = 1
  residual: bool = True
  dtype: Any = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    d = self.dilation
    y = _conv(self.features, 3, self.stride, d, self.dtype, 'conv1')(x)
    y = nn.relu(batch_norm(train, self.dtype, name='bn1')(y))
    y = _conv(self.features, 3, 1, d, self.dtype, 'conv2')(y)
    y = batch_norm(train, self.dtype, name='bn2')(y)
    shortcut = _shortcut(x, self.features, self.stride, train, self.dtype)
    return nn.relu(y + shortcut if self.residual else y)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided, dilated), 1x1 expand (x4) + shortcut."""
  features: int
  stride: int = 1
  dilation: int = 1
  residual: bool = True
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    y = nn.relu(batch_norm(train, self.dtype, name='bn1')(
        _conv(self.features, 1, dtype=self.dtype, name='conv1')(x)))
    y = _conv(self.features, 3, self.stride, self.dilation, self.dtype, 'conv2')(y)
    y = nn.relu(batch_norm(train, self.dtype, name='bn2')(y))
    y = _conv(4 * self.features, 1, dtype=self.dtype, name='conv3')(y)
    y = batch_norm(train, self.dtype, name='bn3')(y)
    return nn.relu(y + _shortcut(x, 4 * self.features, self.stride, train, self.dtype))


def _shortcut(x: jax.Array, features: int, stride: int, train: bool, dtype: Any) -> jax.Array:
  """Identity, or a strided 1x1 conv + BN where the shape changes (`downsample_0`, `_1`),
  inside the block's compact scope."""
  if stride == 1 and x.shape[-1] == features:
    return x
  x = _conv(features, 1, stride, dtype=dtype, name='downsample_0')(x)
  return batch_norm(train, dtype, name='downsample_1')(x)


def _conv_layers(x: jax.Array, features: int, convs: int, stride: int, dilation: int,
                 train: bool, dtype: Any, level: int) -> jax.Array:
  """DRN-D's plain levels (the code's _make_conv_layers): conv-BN-ReLU `convs` times, the first
  strided, named `layer{level}_{3i}` (conv) and `_{3i + 1}` (BN) as the code's Sequential."""
  for i in range(convs):
    x = _conv(features, 3, stride if i == 0 else 1, dilation, dtype, f'layer{level}_{3 * i}')(x)
    x = nn.relu(batch_norm(train, dtype, name=f'layer{level}_{3 * i + 1}')(x))
  return x


class DRN(nn.Module):
  """DRN-C / DRN-D without the ImageNet classifier; returns [level 8's features]. `widths`
  (per level) keep the paper's unless overridden (narrower for quick checks)."""
  variant: str = 'd22'
  widths: tuple[int, ...] = WIDTHS
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> list[jax.Array]:
    if self.variant not in DRN_VARIANTS:
      raise ValueError(f'DRN variant {self.variant!r}; expected one of {sorted(DRN_VARIANTS)}.')
    arch, bottleneck, blocks = DRN_VARIANTS[self.variant]
    dtype, widths = self.dtype, self.widths
    x = images.astype(dtype)
    if arch == 'C':
      x = nn.relu(batch_norm(train, dtype, name='bn1')(_conv(widths[0], 7, dtype=dtype,
                                                             name='conv1')(x)))
      x = BasicBlock(widths[0], 1, dtype=dtype, name='layer1_0')(x, train)
      x = BasicBlock(widths[1], 2, dtype=dtype, name='layer2_0')(x, train)
    else:
      x = nn.relu(batch_norm(train, dtype, name='layer0_1')(_conv(widths[0], 7, dtype=dtype,
                                                                  name='layer0_0')(x)))
      x = _conv_layers(x, widths[0], blocks[0], 1, 1, train, dtype, 1)
      x = _conv_layers(x, widths[1], blocks[1], 2, 1, train, dtype, 2)
    block = Bottleneck if bottleneck else BasicBlock
    for level, (stride, dilation) in enumerate(LEVEL_STRIDES_DILATIONS[:4], start=3):
      for j in range(blocks[level - 1]):
        x = block(widths[level - 1], stride if j == 0 else 1, dilation, dtype=dtype,
                  name=f'layer{level}_{j}')(x, train)
    for level, (_, dilation) in enumerate(LEVEL_STRIDES_DILATIONS[4:], start=7):
      if arch == 'C':
        for j in range(blocks[level - 1]):
          x = BasicBlock(widths[level - 1], 1, dilation, residual=False, dtype=dtype,
                         name=f'layer{level}_{j}')(x, train)
      else:
        x = _conv_layers(x, widths[level - 1], blocks[level - 1], 1, dilation, train, dtype,
                         level)
    return [x]
