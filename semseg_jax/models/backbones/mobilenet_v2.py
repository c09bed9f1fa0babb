"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR
2018) as a segmentation backbone, as mmsegmentation 1.x builds it
(`mmseg/models/backbones/mobilenet_v2.py`, `mmseg/models/utils/inverted_residual.py`).

Table 2 of the paper: a 3x3 stride-2 stem conv to 32 channels, then seven layers of inverted
residual blocks with settings (expansion t, channels c, blocks n, stride s):
  (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
  (6, 320, 1, 1).
A block is a 1x1 expansion ConvModule to t * c_in channels (left out when t = 1), a 3x3
depthwise ConvModule (strided, dilated), both with BN + ReLU6, and a linear 1x1 projection
(conv + BN, no activation); the input is added back when stride is 1 and widths match. Every
conv is bias-free with He (fan_out) init; BN gamma 1 / beta 0. Widths are scaled by
`widen_factor` and rounded to multiples of 8 (the paper's width multiplier; mmseg's
make_divisible).

Output stride: the strides of the last strided layers become dilations (mmseg's M-V2-D8 config):
  OS 32: strides (1, 2, 2, 2, 1, 2, 1), dilations (1, 1, 1, 1, 1, 1, 1)   (the paper)
  OS 16: strides (1, 2, 2, 2, 1, 1, 1), dilations (1, 1, 1, 1, 1, 2, 2)
  OS 8:  strides (1, 2, 2, 1, 1, 1, 1), dilations (1, 1, 1, 2, 2, 4, 4)   (mmseg's D8)
The backbone returns the outputs of the layers in `out_indices` (0-based; mmseg's (1, 2, 4, 6):
24 ch at stride 4, 32 ch at stride 8, 96 and 320 ch at the output stride).

Differences from the paper, following mmseg (the source of the benchmark numbers):
- the final 1x1 conv to 1280 channels, the pooling and the classifier are not built;
- a layer's dilation is given only to its FIRST block's depthwise conv (mmseg's make_layer
  passes `dilation if i == 0 else 1`); the later blocks of a dilated layer use dilation 1,
  unlike ResNet's dilated stages or the DeepLab papers' MobileNetV2 where all do;
- OS 16 is not among mmseg's configs; it follows the same rule.

Parameter names are ours (mmseg's `layer{i}.{j}.conv.{k}` would be `layer{i}_block{j}/...`);
convert/mmseg.py maps them.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import ConvBNAct

# (expansion t, output channels c, blocks n, stride s) per layer: Table 2 of the paper.
INVERTED_RESIDUAL_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# output stride -> (per-layer strides, per-layer dilations)
STRIDES_AND_DILATIONS: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    32: ((1, 2, 2, 2, 1, 2, 1), (1, 1, 1, 1, 1, 1, 1)),
    16: ((1, 2, 2, 2, 1, 1, 1), (1, 1, 1, 1, 1, 2, 2)),
    8: ((1, 2, 2, 1, 1, 1, 1), (1, 1, 1, 2, 2, 4, 4)),
}

STEM_WIDTH = 32


def make_divisible(value: float, divisor: int = 8, min_ratio: float = 0.9,
                   min_value: int | None = None) -> int:
  """Rounds `value` to the nearest multiple of `divisor` (at least `min_value`, default
  `divisor`), going one step up where rounding would lose more than 1 - min_ratio of it
  (mmseg's and HF's make_divisible)."""
  rounded = max(divisor if min_value is None else min_value,
                int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < min_ratio * value else rounded


class InvertedResidual(nn.Module):
  """Expand (1x1) -> depthwise 3x3 (strided, dilated) -> linear project (1x1) [+ input]."""
  features: int
  expand_ratio: int
  stride: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    in_features = x.shape[-1]
    hidden = int(round(in_features * self.expand_ratio))
    y = x
    if self.expand_ratio != 1:
      y = ConvBNAct(hidden, 1, activation=nn.relu6, dtype=self.dtype, name='expand_conv')(
          y, train)
    y = ConvBNAct(hidden, 3, self.stride, self.dilation, groups=hidden, activation=nn.relu6,
                  dtype=self.dtype, name='depthwise_conv')(y, train)
    y = ConvBNAct(self.features, 1, activation=None, dtype=self.dtype, name='linear_conv')(
        y, train)
    return x + y if self.stride == 1 and in_features == self.features else y


class MobileNetV2(nn.Module):
  """Returns the outputs of the layers in `out_indices` (0-based over the seven layers)."""
  widen_factor: float = 1.0
  output_stride: int = 32
  out_indices: Sequence[int] = (1, 2, 4, 6)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    if self.output_stride not in STRIDES_AND_DILATIONS:
      raise ValueError(f'MobileNetV2 output stride {self.output_stride}; expected one of '
                       f'{sorted(STRIDES_AND_DILATIONS)}.')
    if any(i not in range(len(INVERTED_RESIDUAL_SETTINGS)) for i in self.out_indices):
      raise ValueError(f'MobileNetV2 out_indices {tuple(self.out_indices)}; each must be in '
                       f'0..{len(INVERTED_RESIDUAL_SETTINGS) - 1}.')
    strides, dilations = STRIDES_AND_DILATIONS[self.output_stride]
    x = ConvBNAct(make_divisible(STEM_WIDTH * self.widen_factor), 3, 2, activation=nn.relu6,
                  dtype=self.dtype, name='conv1')(x, train)
    features = []
    for i, ((expand, width, blocks, _), stride, dilation) in enumerate(
        zip(INVERTED_RESIDUAL_SETTINGS, strides, dilations)):
      for j in range(blocks):
        x = InvertedResidual(make_divisible(width * self.widen_factor), expand,
                             stride if j == 0 else 1, dilation if j == 0 else 1,
                             dtype=self.dtype, name=f'layer{i + 1}_block{j}')(x, train)
      if i in self.out_indices:
        features.append(x)
    return features


def mobilenet_v2_from_variant(variant: str, dtype: Any = jnp.float32) -> MobileNetV2:
  """The MobileNetV2 that a model variant names: 'mv2[-d<output stride>]' ('mv2-d8' is mmseg's
  M-V2-D8 backbone; 'mv2' alone is output stride 32), with mmseg's out_indices (1, 2, 4, 6)."""
  name, _, stride = variant.partition('-d')
  stride = stride if '-d' in variant else '32'
  if name != 'mv2' or not stride.isdigit() or int(stride) not in STRIDES_AND_DILATIONS:
    raise ValueError(f'MobileNetV2 variant {variant!r}; expected mv2[-d<output stride>] with '
                     f'output stride in {sorted(STRIDES_AND_DILATIONS)}, e.g. \'mv2-d8\'.')
  return MobileNetV2(output_stride=int(stride), dtype=dtype)
