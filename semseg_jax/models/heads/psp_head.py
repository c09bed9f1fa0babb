"""The pyramid pooling head of PSPNet (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017),
as mmsegmentation 1.x builds it (`mmseg/models/decode_heads/psp_head.py`: PPM + PSPHead).

Pyramid pooling module (Sec. 3.2, Fig. 3; `layers.pyramid_pooling`, shared with UPerNet's
head): the feature map is average-pooled to b x b bins for b in (1, 2, 3, 6); each pooled map
goes through a 1x1 ConvModule (conv, BN, ReLU) to `channels`, is upsampled bilinearly
(align_corners=False) back to the feature map's size, and the four are concatenated with the
feature map itself. A 3x3 ConvModule (the bottleneck) fuses them to `channels`, then
Dropout2d(0.1) and the 1x1 classifier.

Pooling is adaptive with PyTorch's AdaptiveAvgPool2d bin edges: along an axis of length n, bin
i of b averages [floor(i * n / b), ceil((i + 1) * n / b)), so neighbouring bins overlap by a
row/column when b does not divide n.

Differences from the paper, all following mmseg (the source of the benchmark numbers):
- each pyramid level is reduced to a fixed `channels` = 512; the paper reduces to 1/N of the
  input width (2048 / 4 = 512 for ResNet-50/101, so the same there);
- the paper's Caffe release pools with fixed kernel = stride windows sized for its training crop
  and upsamples with align_corners=True interpolation; mmseg uses adaptive bins and
  align_corners=False at every input size.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import ConvBNAct, SegClassifier, pyramid_pooling


class PSPHead(nn.Module):
  """Logits at the resolution of `features[in_index]` (ResNet stage 4: 2048 channels)."""
  num_classes: int
  channels: int = 512
  pool_scales: Sequence[int] = (1, 2, 3, 6)
  in_index: int = -1
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    x = features[self.in_index]
    pyramid = [x, *pyramid_pooling(x, self.pool_scales, self.channels, train, self.dtype,
                                   'psp_modules_{}')]
    x = ConvBNAct(self.channels, 3, dtype=self.dtype, name='bottleneck')(
        jnp.concatenate(pyramid, axis=-1), train)
    return SegClassifier(self.num_classes, self.dropout_rate, dtype=self.dtype,
                         name='classifier')(x, train)
