"""EDANet (Lo, Hang, Chan, Lin, "Efficient Dense Modules of Asymmetric Convolution for Real-Time
Semantic Segmentation", ACM MM Asia 2019, arXiv:1809.06323; Fig. 2-3, Table 1). The authors did
not release code; their repository (shaoyuanlo/EDANet) gives the layer table, the module
diagrams and the training setting, and points to Pengfei Wang's PyTorch re-implementation
(wpf535236337/pytorch_EDANet), which fills in what they leave open (biases, init, BN) and whose
module names the parameters take.

Table 1 (`layers_{i}` here, the re-implementation's ModuleList indices):
  0      downsampling block 3 -> 15                        1/2
  1      downsampling block 15 -> 60                       1/4
  2-6    EDA modules 1-1..1-5, dilations 1, 1, 1, 2, 2     60 + 40 i channels -> 260
  7      downsampling block 260 -> 130 (conv only)         1/8
  8-15   EDA modules 2-1..2-8, dilations 2, 2, 4, 4, 8, 8, 16, 16  -> 450
  projection: 1x1 conv 450 -> classes, then bilinear upsampling x8 to the input.
Downsampling block (Fig. 3b): a 3x3 stride-2 conv to W_out - W_in channels beside 2x2 stride-2
max pooling where W_in < W_out, else the conv alone to W_out; BN, ReLU. EDA module (Fig. 3a):
1x1 conv to k = 40 (the growth rate), BN, ReLU; 3x1 then 1x3 conv, BN, ReLU; 3x1 then 1x3 conv
dilated, BN, ReLU; channel dropout 0.02; concatenated with its input (output first) — dense
connectivity, so the width grows by 40 per module. Convs have biases; BN eps 1e-5. Init (the
re-implementation's): conv weights N(0, 0.02^2) (biases at PyTorch's default), BN gamma
N(1, 0.02^2), beta 0.

Departures:
- Any input size: a downsampling block's pooling rounds up (ceil mode) like its conv where a
  side is odd, and the logits are resized to the input's size (x8 exactly at multiples of 8).
  The upsampling keeps the re-implementation's align_corners=True.
- The paper's inference-only x2 upsampling (it tests on 512x1024 inputs against 1024x2048
  labels) is the evaluation's resize to the labels here (config.eval.resize_scale).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import (BatchNorm, conv2d, conv_beside_max_pool,
                                      resize_align_corners, torch_default_init)

EDANET_VARIANTS = ('edanet',)
GROWTH_RATE = 40
STAGE1_DILATIONS = (1, 1, 1, 2, 2)
STAGE2_DILATIONS = (2, 2, 4, 4, 8, 8, 16, 16)


def _weight_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  """The re-implementation's conv weights: N(0, 0.02^2)."""
  return 0.02 * jax.random.normal(key, shape, dtype)


def _bn_scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  """The re-implementation's BN gamma: N(1, 0.02^2)."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _bn(train: bool, dtype: Any, name: str) -> BatchNorm:
  return BatchNorm(use_running_average=not train, dtype=dtype, scale_init=_bn_scale_init,
                   name=name)


def _conv(features: int, in_features: int, kernel_size: tuple[int, int], dilation: int = 1,
          stride: int = 1, dtype: Any = jnp.float32, name: str | None = None) -> nn.Conv:
  """A conv with bias: weights N(0, 0.02^2), bias at PyTorch's default."""
  kh, kw = kernel_size
  return conv2d(features, kernel_size, stride,
                (dilation if kh > 1 else 1, dilation if kw > 1 else 1), use_bias=True,
                kernel_init=_weight_init, bias_init=torch_default_init(kh * kw * in_features),
                dtype=dtype, name=name)


class DownsamplingBlock(nn.Module):
  """Fig. 3b: conv || max pooling (W_in < W_out) or conv alone, BN, ReLU."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.shape[-1] < self.features:
      return nn.relu(conv_beside_max_pool(x, self.features, train, self.dtype, 1e-5,
                                          kernel_init=_weight_init,
                                          bn_scale_init=_bn_scale_init))
    x = _conv(self.features, x.shape[-1], (3, 3), stride=2, dtype=self.dtype, name='conv')(x)
    return nn.relu(_bn(train, self.dtype, 'bn')(x))


class EDAModule(nn.Module):
  """Fig. 3a: the asymmetric-conv bottleneck to `growth_rate` channels, concatenated with the
  input (output first)."""
  dilation: int = 1
  growth_rate: int = GROWTH_RATE
  dropout_rate: float = 0.02
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    k, d = self.growth_rate, self.dilation
    conv = lambda c_in, kernel, dilation, name: _conv(k, c_in, kernel, dilation,
                                                      dtype=self.dtype, name=name)
    y = nn.relu(_bn(train, self.dtype, 'bn0')(conv(x.shape[-1], (1, 1), 1, 'conv1x1')(x)))
    y = conv(k, (1, 3), 1, 'conv1x3_1')(conv(k, (3, 1), 1, 'conv3x1_1')(y))
    y = nn.relu(_bn(train, self.dtype, 'bn1')(y))
    y = conv(k, (1, 3), d, 'conv1x3_2')(conv(k, (3, 1), d, 'conv3x1_2')(y))
    y = nn.relu(_bn(train, self.dtype, 'bn2')(y))
    if self.dropout_rate:
      y = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(y)
    return jnp.concatenate([y, x.astype(y.dtype)], axis=-1)


class EDANet(nn.Module):
  """Table 1; logits at the input's size. `stage1_dilations` / `stage2_dilations` (one EDA
  module each) keep the paper's unless overridden (fewer for quick checks)."""
  num_classes: int
  dropout_rate: float = 0.02
  stage1_dilations: tuple[int, ...] = STAGE1_DILATIONS
  stage2_dilations: tuple[int, ...] = STAGE2_DILATIONS
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    names = (f'layers_{i}' for i in range(100))
    x = DownsamplingBlock(15, self.dtype, name=next(names))(images.astype(self.dtype), train)
    x = DownsamplingBlock(60, self.dtype, name=next(names))(x, train)
    for d in self.stage1_dilations:
      x = EDAModule(d, dropout_rate=self.dropout_rate, dtype=self.dtype, name=next(names))(
          x, train)
    x = DownsamplingBlock(130, self.dtype, name=next(names))(x, train)
    for d in self.stage2_dilations:
      x = EDAModule(d, dropout_rate=self.dropout_rate, dtype=self.dtype, name=next(names))(
          x, train)
    logits = _conv(self.num_classes, x.shape[-1], (1, 1), dtype=self.dtype,
                   name='project_layer')(x)
    logits = resize_align_corners(logits, images.shape[1:3])
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def edanet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
           dropout_rate: float = 0.02, **overrides: Any) -> EDANet:
  """EDANet ('edanet'); `dropout_rate`: the EDA modules' channel dropout (0.02);
  `overrides` replace stage1_dilations / stage2_dilations."""
  if variant not in EDANET_VARIANTS:
    raise ValueError(f'Unknown EDANet variant {variant!r}; expected one of '
                     f'{sorted(EDANET_VARIANTS)}.')
  return EDANet(num_classes, dropout_rate, dtype=dtype, **overrides)
