"""The UPerNet decode head (Xiao et al., "Unified Perceptual Parsing for Scene Understanding",
ECCV 2018), as mmsegmentation 1.x's `UPerHead` (mmseg/models/decode_heads/uper_head.py, with the
pyramid pooling module `PPM` of psp_head.py: `layers.pyramid_pooling`), the form of mmseg's
UPerNet benchmark results.

On ResNet stages 1-4 (strides 4, 8, 16, 32):
  - Pyramid pooling on stage 4: adaptive average pooling to 1x1, 2x2, 3x3 and 6x6 bins, each bin
    map through a 1x1 ConvModule of `channels`, upsampled bilinearly back to stage 4's size;
    [stage 4, pooled 1, 2, 3, 6] concatenated and fused by a 3x3 ConvModule (`bottleneck`): the
    top level of the feature pyramid.
  - Laterals: a 1x1 ConvModule of `channels` on each of stages 1-3.
  - Top-down pathway, coarsest first: each lateral += the bilinearly upsampled coarser level.
  - A 3x3 ConvModule (`fpn_convs`) on each of levels 1-3 (the top level is used as it is); all
    four upsampled to stage 1's size, concatenated (finest first) and fused by a 3x3 ConvModule
    (`fpn_bottleneck`); then dropout and the 1x1 classifier: logits at stride 4.

Upsampling is bilinear with align_corners=False (mmseg's `align_corners=False`). The adaptive
pooling is PyTorch's AdaptiveAvgPool2d: bin i of b over n pixels spans
[floor(i * n / b), ceil((i + 1) * n / b)), so bins overlap when b does not divide n.

Departures from mmseg: none (its names, widths and init); from the authors' code
(CSAILVision/semantic-segmentation-pytorch) those of mmseg, see models/upernet.py.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import (ConvBNAct, SegClassifier, bilinear_resize,
                                      pyramid_pooling)


class PoolingPyramid(nn.Module):
  """mmseg's PPM: per scale, adaptive average pooling -> 1x1 ConvModule -> bilinear upsampling
  to the input's size. Returns the list of upsampled maps (the input itself not included)."""
  pool_scales: Sequence[int]
  channels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    return pyramid_pooling(x, self.pool_scales, self.channels, train, self.dtype, 'convs_{}')


class UPerHead(nn.Module):
  """UPerNet's pyramid pooling + FPN head on all backbone stages; logits at stage 1's size."""
  num_classes: int
  channels: int = 512
  pool_scales: Sequence[int] = (1, 2, 3, 6)
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    top = features[-1]
    pooled = PoolingPyramid(self.pool_scales, self.channels, dtype=self.dtype,
                            name='psp_modules')(top, train)
    pyramid = ConvBNAct(self.channels, 3, dtype=self.dtype, name='bottleneck')(
        jnp.concatenate([top, *pooled], axis=-1), train)
    laterals = [ConvBNAct(self.channels, 1, dtype=self.dtype, name=f'lateral_convs_{i}')(f, train)
                for i, f in enumerate(features[:-1])]
    laterals.append(pyramid)
    # Top-down: each level receives its coarser neighbour (already updated), coarsest first.
    for i in range(len(laterals) - 1, 0, -1):
      laterals[i - 1] = laterals[i - 1] + bilinear_resize(laterals[i], laterals[i - 1].shape[1:3])
    outs = [ConvBNAct(self.channels, 3, dtype=self.dtype, name=f'fpn_convs_{i}')(lateral, train)
            for i, lateral in enumerate(laterals[:-1])]
    outs.append(laterals[-1])
    size = outs[0].shape[1:3]
    x = jnp.concatenate([bilinear_resize(o, size) for o in outs], axis=-1)
    x = ConvBNAct(self.channels, 3, dtype=self.dtype, name='fpn_bottleneck')(x, train)
    return SegClassifier(self.num_classes, self.dropout_rate, dtype=self.dtype,
                         name='classifier')(x, train)
