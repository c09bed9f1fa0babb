"""ICNet (Zhao, Qi, Shen, Shi, Jia, "ICNet for Real-Time Semantic Segmentation on
High-Resolution Images", ECCV 2018, arXiv:1704.08545; Fig. 2-3, Sec. 3), as mmsegmentation 1.x
builds it (backbones/icnet.py, necks/ic_neck.py, configs/_base_/models/icnet_r50-d8.py), the
form of its published Cityscapes weights.

Three branches (Fig. 2), one per input resolution:
  sub1 (full image):  three 3x3 stride-2 ConvModules 3 -> 32 -> 32 -> 64 (`conv_sub1_{0,1,2}`),
                      1/8 of the image;
  sub2 (1/2 image):   the image halved, ResNetV1c-D8 (deep stem; its max pooling rounds up)
                      stages 1-2 -> a 1x1 ConvModule to 256 (`conv_sub2`), 1/16 of the image;
  sub4 (1/4 image):   stage 2's output halved again, stages 3-4 (dilated 2 and 4, sharing the
                      branch's weights: one ResNet), the pyramid pooling module (bins 1, 2, 3, 6,
                      512 channels each, concatenated before the stage-4 map), a 3x3 ConvModule
                      to 512 (`psp_bottleneck`), a 1x1 ConvModule to 256 (`conv_sub4`), 1/32.
Cascade feature fusion (Fig. 3, `cff_24`, `cff_12`): the coarser map bilinearly resized to the
finer one's size, a 3x3 dilation-2 ConvModule to 128 channels beside a 1x1 ConvModule of the
finer map to 128, summed, ReLU. The decode head (FCNHead: one 3x3 ConvModule 128 -> 128, no
dropout, 1x1 classifier) reads the last fusion (1/8); the cascade label guidance (Sec. 3.3) is
two auxiliary FCN heads (the same, dropout 0.1) on the two fusions' resized-and-convolved coarse
maps (1/16 and 1/8), trained with weight 0.4 each (config.loss.aux). ConvModule: conv without
bias, BN, ReLU. Variants: 'r18-d8', 'r50-d8', 'r101-d8' (mmseg's three).

Departures from the paper (all mmseg's): the paper's sub2 and sub4 share PSPNet50's layers up to
conv3_1 with a half-width PSPNet (its Caffe release); its CFF has no ReLU on the two convs (mmseg's
ConvModules have one) and its label-guidance classifiers sit on the resized coarse map before
that conv; its final logits are upsampled x2 and trained against 1/4-size labels with weight 1.
Here the decode head's logits are at 1/8 (the loss resizes them), as mmseg's.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.resnet import ResNet, halve
from semseg_jax.models.heads.fcn_head import FCNHead
from semseg_jax.models.layers import ConvBNAct, bilinear_resize, pyramid_pooling

ICNET_VARIANTS = {'r18-d8': 18, 'r50-d8': 50, 'r101-d8': 101}


class CascadeFeatureFusion(nn.Module):
  """Fig. 3's CFF unit (mmseg's form): returns (fused map, the coarse map after its conv, which
  the label-guidance head reads)."""
  features: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, low: jax.Array, high: jax.Array,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    low = bilinear_resize(low, high.shape[1:3])
    low = ConvBNAct(self.features, 3, dilation=2, dtype=self.dtype, name='conv_low')(low, train)
    high = ConvBNAct(self.features, 1, dtype=self.dtype, name='conv_high')(high, train)
    return nn.relu(low + high), low


class ICNet(nn.Module):
  """Logits at 1/8 of the image; `aux` in training: the cascade label guidance heads' logits
  (1/16, 1/8). `aux_dropout_rate`: theirs (mmseg's FCNHead default, 0.1)."""
  num_classes: int
  depth: int = 50
  aux_head: bool = True
  dropout_rate: float = 0.0
  aux_dropout_rate: float = 0.1
  light_channels: int = 32
  branch_channels: Sequence[int] = (64, 256, 256)
  psp_channels: int = 512
  pool_scales: Sequence[int] = (1, 2, 3, 6)
  fusion_channels: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    x = images.astype(self.dtype)
    sub1 = x
    for i, features in enumerate((self.light_channels, self.light_channels,
                                  self.branch_channels[0])):
      sub1 = ConvBNAct(features, 3, 2, dtype=self.dtype, name=f'conv_sub1_{i}')(sub1, train)
    stages = ResNet(self.depth, deep_stem=True, output_stride=8, ceil_mode_pool=True,
                    halve_before_stage=3, dtype=self.dtype, name='backbone')(halve(x), train)
    sub2 = ConvBNAct(self.branch_channels[1], 1, dtype=self.dtype, name='conv_sub2')(
        stages[1], train)
    top = stages[3]
    pyramid = pyramid_pooling(top, self.pool_scales, self.psp_channels, train, self.dtype,
                              'psp_modules_{}')
    top = ConvBNAct(self.psp_channels, 3, dtype=self.dtype, name='psp_bottleneck')(
        jnp.concatenate([*pyramid, top], axis=-1), train)
    sub4 = ConvBNAct(self.branch_channels[2], 1, dtype=self.dtype, name='conv_sub4')(top, train)
    fused24, guide24 = CascadeFeatureFusion(self.fusion_channels, self.dtype,
                                            name='cff_24')(sub4, sub2, train)
    fused12, guide12 = CascadeFeatureFusion(self.fusion_channels, self.dtype,
                                            name='cff_12')(fused24, sub1, train)
    features = [guide24, guide12, fused12]
    head = lambda in_index, dropout, name: FCNHead(
        self.num_classes, in_index=in_index, channels=self.fusion_channels, num_convs=1,
        concat_input=False, dropout_rate=dropout, dtype=self.dtype, name=name)
    logits = head(2, self.dropout_rate, 'decode_head')(features, train)
    aux = []
    if self.aux_head and (train or self.is_initializing()):
      aux = [head(i, self.aux_dropout_rate, f'auxiliary_heads_{i}')(features, train)
             for i in (0, 1)]
      aux = [logits.astype(jnp.float32) for logits in aux]
    return {'logits': logits.astype(jnp.float32), 'aux': aux if train else []}


def icnet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
          dropout_rate: float = 0.0, aux_head: bool = True, **overrides: Any) -> ICNet:
  """ICNet on ResNetV1c-18/50/101-D8 ('r18-d8', 'r50-d8', 'r101-d8'); `dropout_rate`: the
  decode head's (0 in mmseg's configs); `aux_head`: the two label-guidance heads; `overrides`
  replace ICNet's fields (widths, pool_scales)."""
  if variant not in ICNET_VARIANTS:
    raise ValueError(f'Unknown ICNet variant {variant!r}; expected one of '
                     f'{sorted(ICNET_VARIANTS)}.')
  return ICNet(num_classes, ICNET_VARIANTS[variant], aux_head, dropout_rate, dtype=dtype,
               **overrides)
