"""Atrous spatial pyramid pooling heads: DeepLabV3's ASPP (Chen et al., "Rethinking Atrous
Convolution for Semantic Image Segmentation", arXiv:1706.05587, Sec. 3.3) and DeepLabV3+'s
separable ASPP + decoder (Chen et al., "Encoder-Decoder with Atrous Separable Convolution for
Semantic Image Segmentation", ECCV 2018, Sec. 3.1-3.2), as mmsegmentation 1.x builds them
(`mmseg/models/decode_heads/aspp_head.py`, `sep_aspp_head.py`; mmcv's ConvModule and
DepthwiseSeparableConvModule).

ASPP: five parallel branches on the backbone's last feature map, each ending in BN + ReLU and
`channels` wide: image pooling (global average -> 1x1 ConvModule -> bilinear upsampling, which
from a 1x1 map is a broadcast), a 1x1 ConvModule (the rate-1 entry of `dilations`), and a 3x3
ConvModule per other rate. They are concatenated and fused by a 3x3 ConvModule (bottleneck),
then Dropout2d(0.1) + 1x1 classifier. Rates (1, 12, 24, 36) at output stride 8 and
(1, 6, 12, 18) at output stride 16 (the paper's rates for those strides; `aspp_dilations`
picks them from the backbone's output stride for DeepLabV3 and DeepLabV3+).

DepthwiseSeparableASPPHead (DeepLabV3+): the same ASPP, but every dilated 3x3 branch is a
depthwise-separable ConvModule (depthwise 3x3 conv + BN + ReLU, then pointwise 1x1 conv + BN +
ReLU: the paper's "BN and ReLU after each 3x3 depthwise convolution"); the bottleneck stays a
plain 3x3 ConvModule (mmseg 1.x). Decoder: the stride-4 feature (`features[c1_index]`, ResNet
stage 1) is reduced by a 1x1 ConvModule to `c1_channels` = 48, the ASPP output is upsampled
bilinearly to its size and concatenated with it, and two depthwise-separable 3x3 ConvModules
of `channels` refine the result before the classifier: logits at stride 4.

Differences from the papers, following mmseg (the source of the benchmark numbers): branches,
bottleneck and decoder convs are 512 wide (papers: 256); the ASPP's fusion conv is 3x3
(papers: 1x1); Dropout2d(0.1) before the classifier; the auxiliary FCN head lives in the model
files (the papers have none). Parameter names are mmseg's.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import (ConvBNAct, DepthwiseSeparableConvBNAct, SegClassifier,
                                      bilinear_resize, global_avg_pool)

# backbone output stride -> ASPP rates (the first, 1, is the 1x1 branch).
ASPP_DILATIONS: dict[int, tuple[int, ...]] = {
    8: (1, 12, 24, 36),
    16: (1, 6, 12, 18),
}


def aspp_dilations(model: str, variant: str, output_stride: int,
                   overrides: dict[str, Any]) -> tuple[int, ...]:
  """The ASPP rates of a model (DeepLabV3, DeepLabV3+): `overrides['dilations']` if given, else
  those of the backbone's output stride."""
  if 'dilations' in overrides:
    return tuple(overrides['dilations'])
  if output_stride not in ASPP_DILATIONS:
    raise ValueError(f'{model} variant {variant!r} has output stride {output_stride}; ASPP '
                     f'rates are defined for output strides {sorted(ASPP_DILATIONS)} (use '
                     f"'-d8' or '-d16'), or pass dilations=(...).")
  return ASPP_DILATIONS[output_stride]


def _aspp(x: jax.Array, channels: int, dilations: Sequence[int], separable: bool,
          train: bool, dtype: Any) -> jax.Array:
  """The concatenated ASPP branches [image pool, one per rate]. Called inside a head's compact
  `__call__`, so the layers are the head's own (named as mmseg names them)."""
  n, h, w, _ = x.shape
  pooled = ConvBNAct(channels, 1, dtype=dtype, name='image_pool')(global_avg_pool(x), train)
  branches = [jnp.broadcast_to(pooled, (n, h, w, channels))]
  for i, rate in enumerate(dilations):
    name = f'aspp_modules_{i}'
    if rate == 1:
      branch = ConvBNAct(channels, 1, dtype=dtype, name=name)
    elif separable:
      branch = DepthwiseSeparableConvBNAct(channels, 3, dilation=rate, dtype=dtype, name=name)
    else:
      branch = ConvBNAct(channels, 3, dilation=rate, dtype=dtype, name=name)
    branches.append(branch(x, train))
  return jnp.concatenate(branches, axis=-1)


class ASPPHead(nn.Module):
  """DeepLabV3's head: logits at the resolution of `features[in_index]`."""
  num_classes: int
  channels: int = 512
  dilations: Sequence[int] = (1, 12, 24, 36)
  in_index: int = -1
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    x = _aspp(features[self.in_index], self.channels, self.dilations, False, train, self.dtype)
    x = ConvBNAct(self.channels, 3, dtype=self.dtype, name='bottleneck')(x, train)
    return SegClassifier(self.num_classes, self.dropout_rate, dtype=self.dtype,
                         name='classifier')(x, train)


class DepthwiseSeparableASPPHead(nn.Module):
  """DeepLabV3+'s head: separable ASPP on `features[in_index]`, decoder with the stride-4
  `features[c1_index]`; logits at the resolution of the latter."""
  num_classes: int
  channels: int = 512
  dilations: Sequence[int] = (1, 12, 24, 36)
  c1_channels: int = 48
  in_index: int = -1
  c1_index: int = 0
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    x = _aspp(features[self.in_index], self.channels, self.dilations, True, train, self.dtype)
    x = ConvBNAct(self.channels, 3, dtype=self.dtype, name='bottleneck')(x, train)
    c1 = ConvBNAct(self.c1_channels, 1, dtype=self.dtype, name='c1_bottleneck')(
        features[self.c1_index], train)
    x = jnp.concatenate([bilinear_resize(x, c1.shape[1:3]), c1], axis=-1)
    for i in range(2):
      x = DepthwiseSeparableConvBNAct(self.channels, 3, dtype=self.dtype,
                                      name=f'sep_bottleneck_{i}')(x, train)
    return SegClassifier(self.num_classes, self.dropout_rate, dtype=self.dtype,
                         name='classifier')(x, train)
