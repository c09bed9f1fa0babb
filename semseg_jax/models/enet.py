"""ENet (Paszke, Chaurasia, Kim, Culurciello, "ENet: A Deep Neural Network Architecture for
Real-Time Semantic Segmentation", arXiv:1606.02147, 2016; Table 1, Fig. 2, Sec. 3-4).

Reference implementation: the authors' Torch7 code, e-lab/ENet-training (train/models/encoder.lua
and decoder.lua), which the paper's numbers come from; davidtvs/PyTorch-ENet is a cross-check.

  initial       3x3/2 conv (13 filters, bias) || 2x2/2 max pool of the input -> 16 ch, BN, PReLU
  stage 1       bottleneck1_0 downsampling to 64, bottleneck1_{1..4} regular       (1/4)
  stage 2       bottleneck2_0 downsampling to 128, then 2_1 regular, 2_2 dilated 2, 2_3 asymmetric
                5, 2_4 dilated 4, 2_5 regular, 2_6 dilated 8, 2_7 asymmetric 5, 2_8 dilated 16
  stage 3       bottleneck3_{1..8}: stage 2 without the downsampling block           (1/8)
  stage 4       bottleneck4_0 upsampling to 64, bottleneck4_{1,2} regular            (1/4)
  stage 5       bottleneck5_0 upsampling to 16, bottleneck5_1 regular                (1/2)
  fullconv      2x2 stride-2 transposed conv to the classes, with bias               (1/1)

Bottleneck (Fig. 2b): extension branch = 1x1 projection to out/4 channels (a 2x2 stride-2 conv
in downsampling blocks), BN, activation, main conv (3x3 / dilated 3x3 / asymmetric 1x5 then 5x1;
a 3x3 stride-2 transposed conv in upsampling blocks), BN, activation, 1x1 expansion, BN, spatial
dropout; added to the shortcut, then the activation. Shortcuts: identity; 2x2 max pool (indices
kept) + zero channel padding when downsampling; 1x1 conv + BN then max unpooling with the indices
of the matching downsampling block when upsampling. Activation: per-channel PReLU in the initial
block and stages 1-3, ReLU in stages 4-5 (Torch7 decoder). Projections, expansions and the
decoder's shortcut convs have no bias; the main convs do (Torch7 code). BatchNorm eps 1e-3.
Spatial dropout p = dropout_rate / 10 (0.01) in stage 1, dropout_rate (0.1) in stages 2-3.

Parameters: 363,076 + 65 * num_classes (363,791 at 11 classes, 364,311 at 19); the paper quotes
0.37M. PyTorch-ENet has 348,924 + 144 * num_classes: it drops all biases, uses one PReLU slope per
layer, adds a PReLU after each expansion, projects downsampling/upsampling blocks to in/4 instead
of out/4 channels, uses a 3x3 max pool in the initial block, 2x2 transposed convs in its
upsampling blocks and a 3x3 one as fullconv.

Deviations from the Torch7 code:
  * Trained end to end: the authors first train the encoder alone (with a 1x1 classifier at 1/8
    resolution, dropped afterwards), then the decoder on top of it.
  * No spatial dropout in the decoder, as in the Torch7 code (the paper's "p = 0.1 afterwards"
    could be read to include it; PyTorch-ENet applies it there).
  * Inverted dropout (scale by 1/(1-p) when training) instead of Torch7's SpatialDropout, which
    scales by (1-p) at test time: the same function in expectation.
  * BN scales start at 1 (PyTorch); Torch7's nn drew them from U(0, 1). Convs keep Torch7's
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, PReLU slopes start at 0.25.
  * Odd sizes: max pooling pads with -inf and the downsampling 2x2/2 projection with zeros at the
    bottom/right, so stages have ceil(H / 2^k) rows (Torch7 floors; it trains on sizes divisible
    by 8). Upsampled maps are cropped to the matching encoder size and the logits to the input
    size (PyTorch's output_size for the transposed convs), so the logits equal the input size.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import (PReLU, batch_norm, conv_beside_max_pool, conv_transpose2d,
                                      max_pool_2x2_with_indices, max_unpool_2x2, torch_conv,
                                      torch_default_init)

ENET_VARIANTS = ('enet',)
BN_EPS = 1e-3  # Torch7 code: nn.SpatialBatchNormalization(n, 1e-3).
INITIAL_WIDTH = 16

# Stages 2 and 3 after the downsampling block: (dilation, asymmetric kernel or 0) per bottleneck.
DILATED_STAGE: tuple[tuple[int, int], ...] = (
    (1, 0), (2, 0), (1, 5), (4, 0), (1, 0), (8, 0), (1, 5), (16, 0))


def activation(prelu: bool, dtype: Any, name: str) -> Callable[[jax.Array], jax.Array]:
  """A PReLU module (encoder) or ReLU (decoder)."""
  return PReLU(dtype=dtype, name=name) if prelu else nn.relu


def spatial_dropout(x: jax.Array, rate: float, train: bool) -> jax.Array:
  """Dropout2d: drops whole channels of each sample."""
  return nn.Dropout(rate, broadcast_dims=(1, 2), deterministic=not train)(x)


class InitialBlock(nn.Module):
  """3x3 stride-2 conv with 16 - C_in filters concatenated with a 2x2 max pool of the input."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    y = conv_beside_max_pool(x, INITIAL_WIDTH, train, self.dtype, BN_EPS)
    return PReLU(dtype=self.dtype, name='prelu')(y)


class Bottleneck(nn.Module):
  """Regular, dilated (`dilation` > 1) or asymmetric (`asymmetric` = k > 0: 1xk then kx1)
  bottleneck with an identity shortcut; width unchanged."""
  dilation: int = 1
  asymmetric: int = 0
  prelu: bool = True
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    width = x.shape[-1]
    internal = width // 4
    y = torch_conv(internal, width, dtype=self.dtype, name='projection')(x)
    y = batch_norm(train, self.dtype, epsilon=BN_EPS, name='projection_bn')(y)
    y = activation(self.prelu, self.dtype, 'projection_prelu')(y)
    if self.asymmetric:
      k = self.asymmetric
      y = torch_conv(internal, internal, (1, k), dtype=self.dtype, name=f'conv_1x{k}')(y)
      y = torch_conv(internal, internal, (k, 1), use_bias=True, dtype=self.dtype,
                     name=f'conv_{k}x1')(y)
    else:
      y = torch_conv(internal, internal, 3, dilation=self.dilation, use_bias=True,
                     dtype=self.dtype, name='conv')(y)
    y = batch_norm(train, self.dtype, epsilon=BN_EPS, name='conv_bn')(y)
    y = activation(self.prelu, self.dtype, 'conv_prelu')(y)
    y = torch_conv(width, internal, dtype=self.dtype, name='expansion')(y)
    y = batch_norm(train, self.dtype, epsilon=BN_EPS, name='expansion_bn')(y)
    if self.dropout_rate:
      y = spatial_dropout(y, self.dropout_rate, train)
    return activation(self.prelu, self.dtype, 'output_prelu')(x + y)


class DownsamplingBottleneck(nn.Module):
  """Halves the resolution (ceil) and widens to `features`; returns the max-pool indices."""
  features: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    h, w, c_in = x.shape[1:]
    internal = self.features // 4
    main, indices = max_pool_2x2_with_indices(x)
    main = jnp.pad(main, ((0, 0), (0, 0), (0, 0), (0, self.features - c_in)))
    y = torch_conv(internal, c_in, 2, stride=2, padding=((0, h % 2), (0, w % 2)),
                   dtype=self.dtype, name='projection')(x)
    y = batch_norm(train, self.dtype, epsilon=BN_EPS, name='projection_bn')(y)
    y = PReLU(dtype=self.dtype, name='projection_prelu')(y)
    y = torch_conv(internal, internal, 3, use_bias=True, dtype=self.dtype, name='conv')(y)
    y = batch_norm(train, self.dtype, epsilon=BN_EPS, name='conv_bn')(y)
    y = PReLU(dtype=self.dtype, name='conv_prelu')(y)
    y = torch_conv(self.features, internal, dtype=self.dtype, name='expansion')(y)
    y = batch_norm(train, self.dtype, epsilon=BN_EPS, name='expansion_bn')(y)
    if self.dropout_rate:
      y = spatial_dropout(y, self.dropout_rate, train)
    return PReLU(dtype=self.dtype, name='output_prelu')(main.astype(y.dtype) + y), indices


class UpsamplingBottleneck(nn.Module):
  """Doubles the resolution (cropped to `output_hw`) and narrows to `features`; the shortcut
  unpools with the indices of the matching downsampling block. ReLU, no dropout (Torch7)."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, indices: jax.Array, output_hw: tuple[int, int],
               train: bool = False) -> jax.Array:
    c_in = x.shape[-1]
    internal = self.features // 4
    main = torch_conv(self.features, c_in, dtype=self.dtype, name='main_conv')(x)
    main = batch_norm(train, self.dtype, epsilon=BN_EPS, name='main_bn')(main)
    main = max_unpool_2x2(main, indices, output_hw)
    y = torch_conv(internal, c_in, dtype=self.dtype, name='projection')(x)
    y = nn.relu(batch_norm(train, self.dtype, epsilon=BN_EPS, name='projection_bn')(y))
    init = torch_default_init(3 * 3 * internal)  # Torch7's fan_in: kh * kw * C_in.
    y = conv_transpose2d(internal, 3, 2, padding=1, output_padding=1, kernel_init=init,
                         bias_init=init, dtype=self.dtype, name='conv')(y)
    y = y[:, :output_hw[0], :output_hw[1]]
    y = nn.relu(batch_norm(train, self.dtype, epsilon=BN_EPS, name='conv_bn')(y))
    y = torch_conv(self.features, internal, dtype=self.dtype, name='expansion')(y)
    y = batch_norm(train, self.dtype, epsilon=BN_EPS, name='expansion_bn')(y)
    return nn.relu(main + y)


class ENet(nn.Module):
  """ENet (Table 1); logits at the input's size. `stage1_blocks` (regular bottlenecks after
  bottleneck1_0) and `dilated_stages` (how many times the dilated sequence runs: stages 2 and 3)
  keep the paper's 4 and 2 unless overridden (smaller for quick checks)."""
  num_classes: int
  dropout_rate: float = 0.1
  stage1_blocks: int = 4
  dilated_stages: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    h, w = images.shape[1:3]
    x = InitialBlock(self.dtype, name='initial')(images, train)

    stage1_hw = x.shape[1:3]
    stage1_rate = self.dropout_rate / 10
    x, indices1 = DownsamplingBottleneck(64, stage1_rate, self.dtype, name='bottleneck1_0')(
        x, train)
    for i in range(1, self.stage1_blocks + 1):
      x = Bottleneck(dropout_rate=stage1_rate, dtype=self.dtype, name=f'bottleneck1_{i}')(
          x, train)

    stage2_hw = x.shape[1:3]
    x, indices2 = DownsamplingBottleneck(128, self.dropout_rate, self.dtype,
                                         name='bottleneck2_0')(x, train)
    for stage in range(2, 2 + self.dilated_stages):
      for i, (dilation, asymmetric) in enumerate(DILATED_STAGE, start=1):
        x = Bottleneck(dilation, asymmetric, dropout_rate=self.dropout_rate, dtype=self.dtype,
                       name=f'bottleneck{stage}_{i}')(x, train)

    x = UpsamplingBottleneck(64, self.dtype, name='bottleneck4_0')(x, indices2, stage2_hw, train)
    for i in (1, 2):
      x = Bottleneck(prelu=False, dtype=self.dtype, name=f'bottleneck4_{i}')(x, train)
    x = UpsamplingBottleneck(16, self.dtype, name='bottleneck5_0')(x, indices1, stage1_hw, train)
    x = Bottleneck(prelu=False, dtype=self.dtype, name='bottleneck5_1')(x, train)

    init = torch_default_init(2 * 2 * x.shape[-1])
    logits = conv_transpose2d(self.num_classes, 2, 2, kernel_init=init, bias_init=init,
                              dtype=self.dtype, name='fullconv')(x)
    return {'logits': logits[:, :h, :w].astype(jnp.float32), 'aux': []}


def enet(variant: str, num_classes: int, *, dtype: Any = jnp.float32, dropout_rate: float = 0.1,
         **overrides: Any) -> ENet:
  """ENet ('enet'); `dropout_rate` is the spatial dropout of stages 2-3 (stage 1: a tenth)."""
  if variant not in ENET_VARIANTS:
    raise ValueError(f'Unknown ENet variant {variant!r}; expected one of {list(ENET_VARIANTS)}.')
  return ENet(num_classes=num_classes, dtype=dtype, dropout_rate=dropout_rate, **overrides)
