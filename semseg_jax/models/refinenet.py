"""RefineNet (Lin, Milan, Shen, Reid, "RefineNet: Multi-Path Refinement Networks for
High-Resolution Semantic Segmentation", CVPR 2017; Fig. 2-3) and Light-Weight RefineNet
(Nekrasov, Shen, Reid, BMVC 2018, arXiv:1810.03272; Fig. 2-3), on ResNet-50/101/152, following
the PyTorch code of the second paper's authors: DrSleep/refinenet-pytorch (RefineNet-101, the
4-cascaded network converted from the first paper's MatConvNet release) and
DrSleep/light-weight-refinenet (models/resnet.py ResNetLW), whose module names the parameters
take.

Encoder: torchvision's ResNet (7x7 stem; backbones/resnet.py at output stride 32), stages
l1..l4 (1/4 .. 1/32); element-wise dropout 0.5 on l4 and l3 in training. Decoder: a cascade of
four refinement stages from the coarsest level (convs without bias unless said; ReLU):
  stage g1   conv of l4 2048 -> 512 (`p_ims1d2_outl1_dimred`), [RCU x2 (`adapt_stage1_b`)],
             ReLU, CRP(512), [RCU x3 (`mflow_conv_g1_b`)], conv 512 -> 256, bilinear
             upsampling (aligned corners) to l3's size
  stage gk   conv of l_{5-k} to 256 (`p_ims1d2_outl{k}_dimred`), [RCU x2], conv 256 -> 256
  (k=2..4)   (`adapt_stage{k}_b2_joint_varout_dimred`), + the coarser path (multi-resolution
             fusion), ReLU, CRP(256), [RCU x3], then (k < 4) conv 256 -> 256 and upsampling
  classifier [dropout 0.5,] 3x3 conv 256 -> classes with bias (logits at 1/4)
[...]: RefineNet only. RefineNet's convs are 3x3, Light-Weight RefineNet's 1x1.
Residual conv unit (RCU): x + conv(ReLU(conv(ReLU(x)))), 3x3 convs, the first with bias.
Chained residual pooling (CRP): four times, 5x5 stride-1 max pooling of the previous result then
a conv (3x3, or 1x1 in the light form), each added to the block's running sum.

The codes start the encoder from torchvision's ImageNet weights
(`config.model.backbone_pretrained`); the decoders keep PyTorch's default init
(U(+-1/sqrt(fan_in))). Departures: none in the networks; any input size (the upsampling goes to
each level's own size).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.resnet import ResNet
from semseg_jax.models.layers import max_pool, resize_align_corners, torch_conv

REFINENET_VARIANTS = {'r50': 50, 'r101': 101, 'r152': 152}
LW_REFINENET_VARIANTS = REFINENET_VARIANTS
CRP_STAGES = 4


class ChainedResidualPooling(nn.Module):
  """CRP: x + sum_i top_i, top_i = conv_i(maxpool5x5(top_{i-1})), k x k convs without bias."""
  features: int
  kernel_size: int = 1
  stages: int = CRP_STAGES
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    top = x
    for i in range(self.stages):
      top = torch_conv(self.features, top.shape[-1], self.kernel_size, dtype=self.dtype,
                       name=f'outvar_dimred_{i + 1}')(max_pool(top, 5, 1, padding=2))
      x = top + x
    return x


class ResidualConvUnits(nn.Module):
  """`blocks` RCUs in a row (the code's RCUBlock): x + conv2(ReLU(conv1(ReLU(x)))), 3x3 convs,
  conv1 with bias (named as the code's `{i}_conv` and `{i}_conv_relu_varout_dimred`)."""
  features: int
  blocks: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(1, self.blocks + 1):
      y = torch_conv(self.features, x.shape[-1], 3, use_bias=True, dtype=self.dtype,
                     name=f'conv_{i}')(nn.relu(x))
      y = torch_conv(self.features, self.features, 3, dtype=self.dtype,
                     name=f'conv_relu_varout_dimred_{i}')(nn.relu(y))
      x = x + y
    return x


class RefineNet(nn.Module):
  """RefineNet (`light` False) or Light-Weight RefineNet (`light`); logits at 1/4."""
  num_classes: int
  depth: int = 101
  light: bool = False
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    dtype, light = self.dtype, self.light
    k = 1 if light else 3
    l1, l2, l3, l4 = ResNet(self.depth, deep_stem=False, output_stride=32, dtype=dtype,
                            name='backbone')(images.astype(dtype), train)
    dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
    l4, l3 = dropout(l4), dropout(l3)
    conv = lambda features, x, name: torch_conv(features, x.shape[-1], k, dtype=dtype,
                                                name=name)(x)
    rcu = lambda features, blocks, x, name: x if light else ResidualConvUnits(
        features, blocks, dtype, name=name)(x)
    x = conv(512, l4, 'p_ims1d2_outl1_dimred')
    x = nn.relu(rcu(512, 2, x, 'adapt_stage1_b'))
    x = ChainedResidualPooling(512, k, dtype=dtype, name='mflow_conv_g1_pool')(x)
    x = rcu(512, 3, x, 'mflow_conv_g1_b')
    x = conv(256, x, 'mflow_conv_g1_b3_joint_varout_dimred')
    for level, skip in ((2, l3), (3, l2), (4, l1)):
      x = resize_align_corners(x, skip.shape[1:3])
      y = rcu(256, 2, conv(256, skip, f'p_ims1d2_outl{level}_dimred'), f'adapt_stage{level}_b')
      y = conv(256, y, f'adapt_stage{level}_b2_joint_varout_dimred')
      x = ChainedResidualPooling(256, k, dtype=dtype, name=f'mflow_conv_g{level}_pool')(
          nn.relu(y + x))
      x = rcu(256, 3, x, f'mflow_conv_g{level}_b')
      if level < 4:
        x = conv(256, x, f'mflow_conv_g{level}_b3_joint_varout_dimred')
    if not light:
      x = dropout(x)
    logits = torch_conv(self.num_classes, 256, 3, use_bias=True, dtype=dtype,
                        name='clf_conv')(x)
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def _build(model: str, variant: str, num_classes: int, light: bool, dtype: Any,
           dropout_rate: float, overrides: dict) -> RefineNet:
  if variant not in REFINENET_VARIANTS:
    raise ValueError(f'Unknown {model} variant {variant!r}; expected one of '
                     f'{sorted(REFINENET_VARIANTS)}.')
  fields = {'depth': REFINENET_VARIANTS[variant], **overrides}
  return RefineNet(num_classes, light=light, dropout_rate=dropout_rate, dtype=dtype, **fields)


def refinenet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
              dropout_rate: float = 0.5, **overrides: Any) -> RefineNet:
  """RefineNet (4-cascaded) on ResNet-50/101/152 ('r50', 'r101' (the paper's main network),
  'r152'); `dropout_rate`: the encoder outputs' and the classifier's (0.5); `overrides`
  replace fields (depth: a ResNet-18 encoder for quick checks)."""
  return _build('RefineNet', variant, num_classes, False, dtype, dropout_rate, overrides)


def lw_refinenet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
                 dropout_rate: float = 0.5, **overrides: Any) -> RefineNet:
  """Light-Weight RefineNet on ResNet-50/101/152 ('r50', 'r101', 'r152'); `dropout_rate`:
  the encoder outputs' (0.5); `overrides` as `refinenet`'s."""
  return _build('Light-Weight RefineNet', variant, num_classes, True, dtype, dropout_rate,
                overrides)
