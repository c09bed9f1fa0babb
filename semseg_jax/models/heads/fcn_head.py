"""The FCN head (Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015) in mmsegmentation 1.x's dilated-backbone form
(`mmseg/models/decode_heads/fcn_head.py`), also the auxiliary head of PSPNet, DeepLab, UPerNet,
BiSeNet and STDC: `num_convs` 3x3 ConvModules on one feature map, optionally concatenated with
that input and fused by another 3x3 ConvModule, then Dropout2d and the 1x1 classifier.

Departures from mmseg: none (its names, widths and init). The paper's FCN has no such head; its
VGG nets are in models/fcn.py.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import ConvBNAct, SegClassifier


class FCNHead(nn.Module):
  """Logits at the resolution of `features[in_index]`.

  The auxiliary form used on ResNet stage 3 is FCNHead(in_index=2, channels=256, num_convs=1,
  concat_input=False, dropout_rate=0.1).
  """
  num_classes: int
  in_index: int = -1
  channels: int = 512
  num_convs: int = 2
  concat_input: bool = True
  kernel_size: int = 3
  dilation: int = 1
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    inputs = features[self.in_index]
    x = inputs
    for i in range(self.num_convs):
      x = ConvBNAct(self.channels, self.kernel_size, dilation=self.dilation, dtype=self.dtype,
                    name=f'convs_{i}')(x, train)
    if self.concat_input:
      x = ConvBNAct(self.channels, self.kernel_size, dtype=self.dtype, name='conv_cat')(
          jnp.concatenate([inputs, x], axis=-1), train)
    return SegClassifier(self.num_classes, self.dropout_rate, dtype=self.dtype,
                         name='classifier')(x, train)


def auxiliary_fcn_head(num_classes: int, in_index: int = 2, channels: int = 256,
                       dtype: Any = jnp.float32) -> FCNHead:
  """The auxiliary head of mmseg's CNN recipes: one 3x3 conv of 256 channels on ResNet stage 3
  (1024 channels for Bottleneck ResNets), dropout 0.1, trained with loss weight 0.4."""
  return FCNHead(num_classes, in_index=in_index, channels=channels, num_convs=1,
                 concat_input=False, dropout_rate=0.1, dtype=dtype)
