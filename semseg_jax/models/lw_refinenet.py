"""Light-Weight RefineNet (Nekrasov, Shen, Reid, "Light-Weight RefineNet for Real-Time Semantic
Segmentation", BMVC 2018, arXiv:1810.03272; Fig. 2-3), on ResNet-50/101/152, following the
authors' PyTorch code (DrSleep/light-weight-refinenet, models/resnet.py ResNetLW and
utils/layer_factory.py CRPBlock), whose module names the parameters take.

Encoder: torchvision's ResNet (7x7 stem; backbones/resnet.py at output stride 32), its four
stages l1..l4 (1/4 .. 1/32); element-wise dropout 0.5 on l4 and l3 in training. Decoder, from
the coarsest level (all convs without bias; ReLU):
  level 4   1x1 conv 2048 -> 512, ReLU, CRP(512), 1x1 conv -> 256, bilinear (aligned corners)
            to l3's size
  level 3-1 1x1 conv of l_i to 256 (`p_ims1d2_outl{5-i}_dimred`), 1x1 conv 256 -> 256
            (`adapt_stage{5-i}_b2_joint_varout_dimred`), + the coarser path, ReLU, CRP(256),
            then (levels 3, 2) a 1x1 conv 256 -> 256 and the upsampling to the next size
  classifier 3x3 conv 256 -> classes with bias, on level 1 (logits at 1/4)
Chained residual pooling (CRP, Fig. 3 of the light-weight form): four times, a 5x5 stride-1
max pooling then a 1x1 conv of the previous result, each added to the block's running sum.

Variants: 'r50', 'r101', 'r152'. The code starts the encoder from torchvision's ImageNet weights
(`config.model.backbone_pretrained`); the decoder keeps PyTorch's default init
(U(+-1/sqrt(fan_in))). Departures: none in the network; any input size (the upsampling goes to
each level's own size).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.resnet import ResNet
from semseg_jax.models.layers import max_pool, resize_align_corners, torch_conv

LW_REFINENET_VARIANTS = {'r50': 50, 'r101': 101, 'r152': 152}
CRP_STAGES = 4


def _conv1x1(features: int, in_features: int, dtype: Any, name: str) -> nn.Conv:
  return torch_conv(features, in_features, 1, dtype=dtype, name=name)


class ChainedResidualPooling(nn.Module):
  """The light-weight CRP block: x + sum_i top_i, top_i = conv1x1_i(maxpool5x5(top_{i-1}))."""
  features: int
  stages: int = CRP_STAGES
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    top = x
    for i in range(self.stages):
      top = _conv1x1(self.features, top.shape[-1], self.dtype, f'outvar_dimred_{i + 1}')(
          max_pool(top, 5, 1, padding=2))
      x = top + x
    return x


class LWRefineNet(nn.Module):
  """ResNetLW; logits at 1/4 of the image."""
  num_classes: int
  depth: int = 50
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    dtype = self.dtype
    l1, l2, l3, l4 = ResNet(self.depth, deep_stem=False, output_stride=32, dtype=dtype,
                            name='backbone')(images.astype(dtype), train)
    dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
    l4, l3 = dropout(l4), dropout(l3)
    conv = lambda features, x, name: _conv1x1(features, x.shape[-1], dtype, name)(x)
    x = nn.relu(conv(512, l4, 'p_ims1d2_outl1_dimred'))
    x = ChainedResidualPooling(512, dtype=dtype, name='mflow_conv_g1_pool')(x)
    x = conv(256, x, 'mflow_conv_g1_b3_joint_varout_dimred')
    for level, skip in ((2, l3), (3, l2), (4, l1)):
      x = resize_align_corners(x, skip.shape[1:3])
      y = conv(256, skip, f'p_ims1d2_outl{level}_dimred')
      y = conv(256, y, f'adapt_stage{level}_b2_joint_varout_dimred')
      x = ChainedResidualPooling(256, dtype=dtype, name=f'mflow_conv_g{level}_pool')(
          nn.relu(y + x))
      if level < 4:
        x = conv(256, x, f'mflow_conv_g{level}_b3_joint_varout_dimred')
    logits = torch_conv(self.num_classes, 256, 3, use_bias=True, dtype=dtype,
                        name='clf_conv')(x)
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def lw_refinenet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
                 dropout_rate: float = 0.5, **overrides: Any) -> LWRefineNet:
  """Light-Weight RefineNet on ResNet-50/101/152 ('r50', 'r101', 'r152'); `dropout_rate`:
  the encoder outputs' (0.5); `overrides` replace fields (depth: a ResNet-18 encoder for
  quick checks)."""
  if variant not in LW_REFINENET_VARIANTS:
    raise ValueError(f'Unknown Light-Weight RefineNet variant {variant!r}; expected one of '
                     f'{sorted(LW_REFINENET_VARIANTS)}.')
  fields = {'depth': LW_REFINENET_VARIANTS[variant], **overrides}
  return LWRefineNet(num_classes, dropout_rate=dropout_rate, dtype=dtype, **fields)
