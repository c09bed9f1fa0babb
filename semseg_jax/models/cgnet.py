"""CGNet (Wu, Tang, Zhang, Cao, Zhang, "CGNet: A Light-weight Context Guided Network for
Semantic Segmentation", IEEE TIP 2021, arXiv:1811.08201; Fig. 2-4), network M3N21, following the
authors' PyTorch code (wutianyiRosun/CGNet, model/CGNet.py) and mmsegmentation's port of it
(mmseg/models/backbones/cgnet.py), whose module names the parameters take.

  stage 1 (1/2)  3 x ConvBNPReLU 3x3, 32 channels (the first at stride 2) -> `stem_{0,1,2}`;
                 concat with the image average-pooled once (3x3, stride 2, padding 1), BN,
                 PReLU -> `norm_prelu_0` (35 channels)
  stage 2 (1/4)  M = 3 CG blocks of 64 channels, dilation 2, reduction 8 (the first
                 downsamples) -> `level1_{i}`; concat [last, first, the image pooled twice],
                 BN, PReLU -> `norm_prelu_1` (131 channels)
  stage 3 (1/8)  N = 21 CG blocks of 128 channels, dilation 4, reduction 16 (the first
                 downsamples) -> `level2_{i}`; concat [first, last], BN, PReLU -> `norm_prelu_2`
                 (256 channels)
  classifier     1x1 conv 256 -> classes

CG block (Fig. 3): a 1x1 ConvBNPReLU to C/2 channels; the local feature (a 3x3 depthwise conv,
`f_loc`) beside the surrounding context (the same, dilated, `f_sur`), concatenated (the joint
feature), BN, PReLU; the global context (`f_glo`: global average pooling, FC C -> C/r, ReLU, FC
C/r -> C, sigmoid) re-weights its channels; plus the input. The downsampling block: the first
conv is a 3x3 stride-2 ConvBNPReLU to C channels, a 1x1 conv (`bottleneck`, no bias) reduces
the joint feature's 2C channels to C before the global context, and there is no residual. Convs
have no bias (the FCs have), BN eps 1e-3, PReLU slopes per channel.

Variants:
- 'paper': the authors' code: the classifier a 1x1 conv without bias, channel dropout before it
  (`dropout_rate`; the code's `dropout_flag`, off by default); logits bilinearly upsampled to
  the input. Init as its training script leaves it: convs N(0, 2 / fan_in), the FCs at
  PyTorch's default (U(+-1/sqrt(fan_in)), biases too), PReLU slopes 0.25.
- 'mmseg': mmsegmentation's cgnet config: the same backbone and mmseg's FCN head with no convs
  (FCNHead(num_convs=0, concat_input=False, dropout 0): the classifier alone, with bias, N(0,
  0.01) weights), logits at 1/8. Init as mmseg's CGNet.init_weights: convs and FCs N(0, 2 /
  fan_out) with zero biases, PReLU slopes 0. Its parameter names map to mmseg's
  (convert/mmseg.py), so `--config.model.pretrained` reads mmseg's Cityscapes weights.

Departures: none in the network. `num_blocks` (M, N) can be overridden (smaller for quick
checks).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.heads.fcn_head import FCNHead
from semseg_jax.models.layers import (EncoderDecoder, PReLU, avg_pool, batch_norm,
                                      bilinear_resize, conv2d, global_avg_pool,
                                      kaiming_normal_fan_out, torch_default_init)

CGNET_VARIANTS = ('paper', 'mmseg')
BN_EPS = 1e-3
WIDTHS = (32, 64, 128)  # Stage 1's convs, stage 2's and stage 3's CG blocks.
DILATIONS = (2, 4)  # Of the surrounding-context convs in stages 2 and 3.
REDUCTIONS = (8, 16)  # Of the global-context FCs in stages 2 and 3.


def _conv_init(reference: str) -> nn.initializers.Initializer:
  """The convs' init: N(0, 2 / fan_in) ('paper') or N(0, 2 / fan_out) ('mmseg')."""
  if reference == 'paper':
    return nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
  return kaiming_normal_fan_out()


def _prelu(reference: str, dtype: Any, name: str) -> PReLU:
  """PReLU with PyTorch's initial slope 0.25 ('paper'), or 0 (mmseg's init_weights)."""
  return PReLU(0.25 if reference == 'paper' else 0.0, dtype, name=name)


class ConvBNPReLU(nn.Module):
  """Conv (no bias), BN, PReLU: the code's ConvBNPReLU, mmcv's ConvModule with PReLU."""
  features: int
  kernel_size: int
  stride: int = 1
  reference: str = 'paper'  # Whose init: 'paper' (the authors' code) or 'mmseg'.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = conv2d(self.features, self.kernel_size, self.stride, kernel_init=_conv_init(self.reference),
               dtype=self.dtype, name='conv')(x)
    x = batch_norm(train, self.dtype, epsilon=BN_EPS, name='bn')(x)
    return _prelu(self.reference, self.dtype, 'activate')(x)


class BNPReLU(nn.Module):
  """BN, PReLU over concatenated features (mmseg's norm_prelu_{i}: a Sequential, hence '0' and
  '1' in its names)."""
  reference: str = 'paper'  # Whose init: 'paper' (the authors' code) or 'mmseg'.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = batch_norm(train, self.dtype, epsilon=BN_EPS, name='bn')(x)
    return _prelu(self.reference, self.dtype, 'prelu')(x)


class GlobalContext(nn.Module):
  """f_glo: channels re-weighted by sigmoid(FC(ReLU(FC(global average)))), C -> C/r -> C."""
  reduction: int
  reference: str = 'paper'  # Whose init: 'paper' (the authors' code) or 'mmseg'.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]

    def fc(features, fan_in, name):
      if self.reference == 'paper':  # PyTorch's nn.Linear default.
        init = torch_default_init(fan_in)
        return nn.Dense(features, kernel_init=init, bias_init=init, dtype=self.dtype, name=name)
      return nn.Dense(features, kernel_init=kaiming_normal_fan_out(), dtype=self.dtype,
                      name=name)

    y = nn.relu(fc(c // self.reduction, c, 'fc_0')(global_avg_pool(x)))
    y = nn.sigmoid(fc(c, c // self.reduction, 'fc_2')(y))
    return x * y


class ContextGuidedBlock(nn.Module):
  """Fig. 3's CG block to `features` channels; `downsample`: the stride-2 form (3x3 first conv
  to `features`, 1x1 bottleneck after the joint feature, no residual)."""
  features: int
  dilation: int
  reduction: int
  downsample: bool = False
  reference: str = 'paper'  # Whose init: 'paper' (the authors' code) or 'mmseg'.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c = self.features if self.downsample else self.features // 2
    y = ConvBNPReLU(c, 3 if self.downsample else 1, 2 if self.downsample else 1, self.reference,
                    self.dtype, name='conv1x1')(x, train)
    depthwise = lambda dilation, name: conv2d(c, 3, dilation=dilation, groups=c,
                                              kernel_init=_conv_init(self.reference),
                                              dtype=self.dtype, name=name)
    joint = jnp.concatenate([depthwise(1, 'f_loc')(y), depthwise(self.dilation, 'f_sur')(y)],
                            axis=-1)
    joint = batch_norm(train, self.dtype, epsilon=BN_EPS, name='bn')(joint)
    joint = _prelu(self.reference, self.dtype, 'activate')(joint)
    if self.downsample:
      joint = conv2d(self.features, 1, kernel_init=_conv_init(self.reference), dtype=self.dtype,
                     name='bottleneck')(joint)
    y = GlobalContext(self.reduction, self.reference, self.dtype, name='f_glo')(joint)
    return y if self.downsample else x + y


class CGNetBackbone(nn.Module):
  """Stages 1-3; returns [stage 1 (35 ch, 1/2), stage 2 (131 ch, 1/4), stage 3 (256 ch, 1/8)],
  mmseg's CGNet outputs."""
  num_blocks: tuple[int, int] = (3, 21)
  reference: str = 'paper'  # Whose init: 'paper' (the authors' code) or 'mmseg'.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> list[jax.Array]:
    x = images.astype(self.dtype)
    image_2x = avg_pool(x, 3, 2, padding=1)
    image_4x = avg_pool(image_2x, 3, 2, padding=1)
    for i in range(3):
      x = ConvBNPReLU(WIDTHS[0], 3, 2 if i == 0 else 1, self.reference, self.dtype,
                      name=f'stem_{i}')(x, train)
    x = BNPReLU(self.reference, self.dtype, name='norm_prelu_0')(
        jnp.concatenate([x, image_2x], axis=-1), train)
    outputs = [x]
    for stage, blocks in enumerate(self.num_blocks):
      block = lambda i: ContextGuidedBlock(WIDTHS[stage + 1], DILATIONS[stage],
                                           REDUCTIONS[stage], i == 0, self.reference, self.dtype,
                                           name=f'level{stage + 1}_{i}')
      first = x = block(0)(x, train)
      for i in range(1, blocks):
        x = block(i)(x, train)
      parts = [x, first, image_4x] if stage == 0 else [first, x]
      x = BNPReLU(self.reference, self.dtype, name=f'norm_prelu_{stage + 1}')(
          jnp.concatenate(parts, axis=-1), train)
      outputs.append(x)
    return outputs


class CGNet(nn.Module):
  """The authors' Context_Guided_Network: the backbone, (channel dropout,) a 1x1 conv without
  bias, bilinear upsampling to the input."""
  num_classes: int
  dropout_rate: float = 0.0
  num_blocks: tuple[int, int] = (3, 21)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    x = CGNetBackbone(self.num_blocks, 'paper', self.dtype, name='backbone')(images, train)[-1]
    if self.dropout_rate:
      x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    logits = conv2d(self.num_classes, 1, kernel_init=_conv_init('paper'), dtype=self.dtype,
                    name='classifier')(x)
    return {'logits': bilinear_resize(logits, images.shape[1:3]).astype(jnp.float32),
            'aux': []}


def cgnet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
          dropout_rate: float = 0.0, **overrides: Any) -> nn.Module:
  """CGNet M3N21, 'paper' (`dropout_rate`: channel dropout before the classifier, the code's
  0.1 with its dropout_flag) or 'mmseg' (`dropout_rate`: its FCN head's, 0 in its config);
  `overrides` replace num_blocks."""
  if variant not in CGNET_VARIANTS:
    raise ValueError(f'Unknown CGNet variant {variant!r}; expected one of '
                     f'{sorted(CGNET_VARIANTS)}.')
  if variant == 'paper':
    return CGNet(num_classes, dropout_rate, dtype=dtype, **overrides)
  backbone = CGNetBackbone(reference='mmseg', dtype=dtype, **overrides)
  head = FCNHead(num_classes, channels=256, num_convs=0, concat_input=False,
                 dropout_rate=dropout_rate, dtype=dtype)
  return EncoderDecoder(backbone, head)
