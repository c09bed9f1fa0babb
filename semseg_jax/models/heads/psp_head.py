"""The pyramid pooling head of PSPNet (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017),
as mmsegmentation 1.x builds it (`mmseg/models/decode_heads/psp_head.py`: PPM + PSPHead).

Pyramid pooling module (Sec. 3.2, Fig. 3): the feature map is average-pooled to b x b bins for
b in (1, 2, 3, 6); each pooled map goes through a 1x1 ConvModule (conv, BN, ReLU) to `channels`,
is upsampled bilinearly (align_corners=False) back to the feature map's size, and the four are
concatenated with the feature map itself. A 3x3 ConvModule (the bottleneck) fuses them to
`channels`, then Dropout2d(0.1) and the 1x1 classifier.

Pooling is adaptive with PyTorch's AdaptiveAvgPool2d bin edges: along an axis of length n, bin
i of b averages [floor(i * n / b), ceil((i + 1) * n / b)), so neighbouring bins overlap by a
row/column when b does not divide n.

Differences from the paper, all following mmseg (the source of the benchmark numbers):
- each pyramid level is reduced to a fixed `channels` = 512; the paper reduces to 1/N of the
  input width (2048 / 4 = 512 for ResNet-50/101, so the same there);
- the paper's Caffe release pools with fixed kernel = stride windows sized for its training crop
  and upsamples with align_corners=True interpolation; mmseg uses adaptive bins and
  align_corners=False at every input size.

Parameters: psp_modules_{i}/{conv, bn} (one per pool scale), bottleneck/{conv, bn},
classifier/conv_seg.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from semseg_jax.models.layers import (RESAMPLING_SCOPE, ConvBNAct, SegClassifier,
                                      bilinear_resize)


def adaptive_bin_edges(size: int, bins: int) -> list[tuple[int, int]]:
  """[start, end) of each of `bins` bins over `size` positions, as AdaptiveAvgPool2d cuts."""
  return [((i * size) // bins, -(-((i + 1) * size) // bins)) for i in range(bins)]


def _bin_averaging_matrix(size: int, bins: int) -> np.ndarray:
  """[bins, size] matrix whose row i averages the positions of bin i."""
  matrix = np.zeros((bins, size), np.float32)
  for i, (start, end) in enumerate(adaptive_bin_edges(size, bins)):
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


def adaptive_avg_pool(x: jax.Array, bins: int | tuple[int, int]) -> jax.Array:
  """PyTorch's `AdaptiveAvgPool2d(bins)` on NHWC `x` -> [N, bins_h, bins_w, C] (`bins` an int
  for a square grid, or (h, w)).

  Written as two small averaging matrices (rows, columns) contracted with `x`, accumulated in
  float32 whatever `x`'s dtype; the result has `x`'s dtype. (Under the resampling scope: the
  multiply-add count of models/stats.py leaves pooling out.)
  """
  bins_h, bins_w = (bins, bins) if isinstance(bins, int) else bins
  _, h, w, _ = x.shape
  with jax.named_scope(RESAMPLING_SCOPE):
    rows = jnp.asarray(_bin_averaging_matrix(h, bins_h))
    cols = jnp.asarray(_bin_averaging_matrix(w, bins_w))
    pooled = jnp.einsum('ih,nhwc,jw->nijc', rows, x, cols,
                        precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32)
  return pooled.astype(x.dtype)


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
    size = x.shape[1:3]
    pyramid = [x]
    for i, bins in enumerate(self.pool_scales):
      level = ConvBNAct(self.channels, 1, dtype=self.dtype, name=f'psp_modules_{i}')(
          adaptive_avg_pool(x, bins), train)
      pyramid.append(bilinear_resize(level, size))
    x = ConvBNAct(self.channels, 3, dtype=self.dtype, name='bottleneck')(
        jnp.concatenate(pyramid, axis=-1), train)
    return SegClassifier(self.num_classes, self.dropout_rate, dtype=self.dtype,
                         name='classifier')(x, train)
