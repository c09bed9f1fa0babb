"""SFNet (Li, You, Zhu, Zhao, Yang, Yang, Tan, Tong, "Semantic Flow for Fast and Accurate Scene
Parsing", ECCV 2020), as the authors' repository lxtGH/SFSegNets builds it
(network/sfnet_resnet.py: AlignNetResNet + UperNetAlignHead; network/nn/operators.py:
PSPModule, AlignedModule; network/resnet_d.py: the deep-stem ResNet), the code of its
Cityscapes results (scripts/cityscacpes/train_cityscapes_sfnet_res{18,101}.sh).

Backbone (`ResNetDeepBase`, resnet_d.py): a ResNet whose stem is three 3x3 convs of 64, 64 and
128 channels (the first at stride 2; the PSPNet "deep base" stem, wider than mmseg's V1c
32-32-64, so stage 1's first block has a 1x1 projection shortcut even in ResNet-18), then 3x3
stride-2 max pooling; four stages at strides 4, 8, 16, 32. AlignNetResNet's variant 'D' then
sets dilation 2 on every `conv2` of stage 3 and dilation 4 on every `conv2` of stage 4 but keeps
their strides, so the output stride stays 32 while those 3x3 convs are dilated (in Bottleneck
blocks conv2 is the strided 3x3; in BasicBlocks it is the second, unstrided 3x3).

Head (UperNetAlignHead; Sec. 3.3, Fig. 2 of the paper), `fpn_dim` = 128 (ResNet-18) or 256:
  - PPM on stage 4 (PSPModule): adaptive average pooling to 1, 2, 3, 6 bins, each through a
    1x1 conv + BN (no ReLU), upsampled (align_corners=True); [pooled..., stage 4] concatenated
    and fused by a 1x1 conv + BN + ReLU + Dropout2d(0.1): the top level P5.
  - Laterals `fpn_in_{i}` on stages 1-3: 1x1 conv (with bias) + BN + ReLU.
  - Top-down, coarsest first: the Flow Alignment Module (FAM, Sec. 3.2) warps the coarser level
    f onto lateral l's grid: down_l(l), down_h(f) are 1x1 convs to fpn_dim / 2, down_h(f) is
    upsampled (align_corners=True) to l's size, a 3x3 conv (`flow_make`) on
    [down_h(f), down_l(l)] predicts a 2-channel flow (x, y), and f itself is sampled bilinearly
    (F.grid_sample, zero padding, align_corners=True) at the identity grid of l's size shifted
    by flow / (out_w, out_h) in normalised coordinates. Then f = l + warped f.
  - `fpn_out_{i}`: 3x3 conv + BN + ReLU on each new f; P5 is used as it is.
  - Fusion: P3, P4, P5 upsampled (align_corners=True) to P2's size, [P2, P3, P4, P5]
    concatenated, `conv_last` (3x3 conv + BN + ReLU to fpn_dim) and a 1x1 classifier with bias:
    logits at stride 4 (stage 1's size: ceil(ceil(H / 2) / 2) by PyTorch's conv arithmetic).
  - Deep supervision (fpn_dsn, `aux_head=True`; train only): on each top-down f before fpn_out,
    a 3x3 conv (with bias) + BN + ReLU + Dropout2d(0.1) + 1x1 classifier; `aux` lists them
    coarsest first (strides 16, 8, 4), as the reference returns them.

Initialisation follows the reference: backbone convs He normal (fan_out); the head is not
re-initialised there, so its convs keep PyTorch's default (kernel and bias uniform in
+-1/sqrt(fan_in)), which keeps the initial flow small.

Parameter names are the reference's state_dict names where it has them (Sequential indices
as `_i`).

Deviations from the reference:
  - logits stay at stride 4; the reference upsamples them to the image (align_corners=True) in
    forward() and in the loss, our loss and evaluator resize with align_corners=False;
  - the last BatchNorm of each residual branch starts at gamma 0 (the zoo's ResNet convention,
    via the shared Bottleneck; the reference starts at 1); training starts from ImageNet
    weights, which replace both;
  - BatchNorm statistics are those of the global batch under jit (the reference's apex SyncBN).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.resnet import RESNET_DEPTHS, STAGE_WIDTHS, Bottleneck
from semseg_jax.models.layers import (adaptive_avg_pool, batch_norm, conv2d, max_pool,
                                      resize_align_corners, torch_conv)

VARIANTS = {'r18': 18, 'r50': 50, 'r101': 101}
STEM_WIDTHS = (64, 64, 128)
STAGE_STRIDES = (1, 2, 2, 2)
STAGE_DILATIONS = (1, 1, 2, 4)  # of every block's conv2 (variant 'D'); strides are kept.


# --- Grid sampling (the flow warp) ---------------------------------------------------------

def grid_sample(x: jax.Array, grid: jax.Array) -> jax.Array:
  """F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=True) in NHWC.

  x: [N, H, W, C]; grid: [N, Ho, Wo, 2] of (x, y) in [-1, 1], -1 and 1 being the centres of
  the first and last pixels. Each output is the bilinear blend of its four neighbouring input
  pixels; neighbours outside the image count as zero. Differentiable in x and grid. Returns
  [N, Ho, Wo, C] in x's dtype (blended in float32).
  """
  n, h, w, c = x.shape
  grid = grid.astype(jnp.float32)
  px = (grid[..., 0] + 1.0) * 0.5 * (w - 1)
  py = (grid[..., 1] + 1.0) * 0.5 * (h - 1)
  x0 = jnp.floor(px)
  y0 = jnp.floor(py)
  fx, fy = px - x0, py - y0  # Weights linear in px, py (torch's gradient at integer points).
  flat = x.reshape(n, h * w, c)
  out = jnp.zeros((n, *grid.shape[1:3], c), jnp.float32)
  for dy, wy in ((0, 1.0 - fy), (1, fy)):
    for dx, wx in ((0, 1.0 - fx), (1, fx)):
      xi, yi = x0 + dx, y0 + dy
      weight = wx * wy
      inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
      index = (jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)).astype(jnp.int32)
      values = jax.vmap(lambda f, i: f[i])(flat, index.reshape(n, -1))
      values = values.reshape(out.shape).astype(jnp.float32)
      out = out + values * jnp.where(inside, weight, 0.0)[..., None]
  return out.astype(x.dtype)


def flow_warp(x: jax.Array, flow: jax.Array) -> jax.Array:
  """AlignedModule.flow_warp: samples `x` at the identity grid of flow's size (torch.linspace
  -1..1 per axis) shifted by flow / (out_w, out_h); flow[..., 0] moves along x, [..., 1]
  along y. Output [N, Ho, Wo, C] at flow's spatial size."""
  _, out_h, out_w, _ = flow.shape
  flow = flow.astype(jnp.float32)
  base_x = jnp.linspace(-1.0, 1.0, out_w)[None, None, :]
  base_y = jnp.linspace(-1.0, 1.0, out_h)[None, :, None]
  grid = jnp.stack([base_x + flow[..., 0] / out_w, base_y + flow[..., 1] / out_h], axis=-1)
  return grid_sample(x, grid)


# --- Backbone: the deep-base ResNet of resnet_d.py, variant 'D' -------------------------------

class DeepBaseBasicBlock(nn.Module):
  """resnet_d.BasicBlock under variant 'D': conv1 (3x3, strided), conv2 (3x3, dilated)."""
  width: int
  stride: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    y = conv2d(self.width, 3, self.stride, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(batch_norm(train, self.dtype, name='bn1')(y))
    y = conv2d(self.width, 3, dilation=self.dilation, dtype=self.dtype, name='conv2')(y)
    y = batch_norm(train, self.dtype, zero_init=True, name='bn2')(y)
    if self.stride != 1 or x.shape[-1] != self.width:
      x = conv2d(self.width, 1, self.stride, dtype=self.dtype, name='downsample_conv')(x)
      x = batch_norm(train, self.dtype, name='downsample_bn')(x)
    return nn.relu(y + x)


class ResNetDeepBase(nn.Module):
  """Returns the four stage outputs (strides 4, 8, 16, 32)."""
  depth: int = 18
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    bottleneck, blocks = RESNET_DEPTHS[self.depth]
    block_cls = Bottleneck if bottleneck else DeepBaseBasicBlock
    for i, width in enumerate(STEM_WIDTHS):
      x = conv2d(width, 3, 2 if i == 0 else 1, dtype=self.dtype, name=f'stem_conv{i + 1}')(x)
      x = nn.relu(batch_norm(train, self.dtype, name=f'stem_bn{i + 1}')(x))
    x = max_pool(x, 3, 2, padding=1)
    features = []
    for s, (num_blocks, stride, dilation) in enumerate(
        zip(blocks, STAGE_STRIDES, STAGE_DILATIONS)):
      for j in range(num_blocks):
        x = block_cls(STAGE_WIDTHS[s], stride if j == 0 else 1, dilation, dtype=self.dtype,
                      name=f'layer{s + 1}_block{j}')(x, train)
      features.append(x)
    return features


# --- Head ---------------------------------------------------------------------------------

class HeadConvBN(nn.Module):
  """conv (PyTorch default init, bias optional) -> BatchNorm -> ReLU (optional)."""
  features: int
  kernel_size: int = 3
  use_bias: bool = False
  relu: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = torch_conv(self.features, x.shape[-1], self.kernel_size, use_bias=self.use_bias,
                   dtype=self.dtype, name='conv')(x)
    x = batch_norm(train, self.dtype, name='bn')(x)
    return nn.relu(x) if self.relu else x


class PyramidPooling(nn.Module):
  """operators.PSPModule: per bin count, pool -> 1x1 conv + BN, upsampled (align_corners);
  [pooled..., x] -> 1x1 conv + BN + ReLU + Dropout2d."""
  features: int
  pool_scales: Sequence[int] = (1, 2, 3, 6)
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    size = x.shape[1:3]
    priors = [resize_align_corners(
        HeadConvBN(self.features, 1, relu=False, dtype=self.dtype, name=f'stages_{i}')(
            adaptive_avg_pool(x, bins), train), size)
              for i, bins in enumerate(self.pool_scales)]
    x = HeadConvBN(self.features, 1, dtype=self.dtype, name='bottleneck')(
        jnp.concatenate([*priors, x], axis=-1), train)
    return nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)


class FlowAlignment(nn.Module):
  """operators.AlignedModule (FAM): warps the coarse `high` onto the grid of `low` by a flow
  predicted from both."""
  reduced_features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, low: jax.Array, high: jax.Array) -> jax.Array:
    low_reduced = torch_conv(self.reduced_features, low.shape[-1], dtype=self.dtype,
                             name='down_l')(low)
    high_reduced = torch_conv(self.reduced_features, high.shape[-1], dtype=self.dtype,
                              name='down_h')(high)
    high_reduced = resize_align_corners(high_reduced, low.shape[1:3])
    flow = torch_conv(2, 2 * self.reduced_features, 3, dtype=self.dtype, name='flow_make')(
        jnp.concatenate([high_reduced, low_reduced], axis=-1))
    return flow_warp(high, flow)


class DeepSupervisionHead(nn.Module):
  """The fpn_dsn branch: 3x3 conv (bias) + BN + ReLU, Dropout2d, 1x1 classifier (bias)."""
  num_classes: int
  features: int
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = HeadConvBN(self.features, 3, use_bias=True, dtype=self.dtype, name='conv_bn')(x, train)
    x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    return torch_conv(self.num_classes, self.features, use_bias=True, dtype=self.dtype,
                      name='classifier')(x)


class SFNetHead(nn.Module):
  """UperNetAlignHead: PPM + FAM top-down pathway + fusion; returns (logits at stage 1's size,
  deep-supervision logits coarsest first: only when `deep_supervision` and training)."""
  num_classes: int
  fpn_dim: int = 128
  pool_scales: Sequence[int] = (1, 2, 3, 6)
  dropout_rate: float = 0.1
  deep_supervision: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array],
               train: bool = False) -> tuple[jax.Array, list[jax.Array]]:
    f = PyramidPooling(self.fpn_dim, self.pool_scales, self.dropout_rate, self.dtype,
                       name='ppm')(features[-1], train)
    pyramid = [f]
    deep = []
    for i in reversed(range(len(features) - 1)):
      lateral = HeadConvBN(self.fpn_dim, 1, use_bias=True, dtype=self.dtype,
                           name=f'fpn_in_{i}')(features[i], train)
      f = lateral + FlowAlignment(self.fpn_dim // 2, self.dtype,
                                  name=f'fpn_out_align_{i}')(lateral, f)
      pyramid.append(HeadConvBN(self.fpn_dim, 3, dtype=self.dtype, name=f'fpn_out_{i}')(
          f, train))
      if self.deep_supervision and (train or self.is_initializing()):
        deep.append(DeepSupervisionHead(self.num_classes, self.fpn_dim, self.dropout_rate,
                                        self.dtype, name=f'dsn_{i}')(f, train))
    pyramid.reverse()  # [P2, P3, P4, P5]
    size = pyramid[0].shape[1:3]
    x = jnp.concatenate([resize_align_corners(p, size) for p in pyramid], axis=-1)
    x = HeadConvBN(self.fpn_dim, 3, dtype=self.dtype, name='conv_last')(x, train)
    logits = torch_conv(self.num_classes, self.fpn_dim, use_bias=True, dtype=self.dtype,
                        name='classifier')(x)
    return logits, deep


class SFNet(nn.Module):
  """Backbone + SFNetHead under the zoo's output contract."""
  backbone: nn.Module
  decode_head: nn.Module

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, Any]:
    logits, deep = self.decode_head(self.backbone(images, train=train), train=train)
    return {'logits': logits.astype(jnp.float32),
            'aux': [a.astype(jnp.float32) for a in deep] if train else []}


def sfnet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
          dropout_rate: float = 0.1, aux_head: bool = False, **overrides: Any) -> SFNet:
  """SFNet on the deep-base ResNet-D that `variant` names ('r18', 'r50', 'r101'); fpn_dim 128
  for 'r18' and 256 otherwise, as the reference. `dropout_rate` is the PPM's (and the dsn
  heads') Dropout2d; `aux_head` adds the three deep-supervision heads (the reference's fpn_dsn,
  off in its benchmark scripts); `overrides` replace SFNetHead fields (e.g. fpn_dim=16)."""
  if variant not in VARIANTS:
    raise ValueError(f'SFNet variant {variant!r}; expected one of {sorted(VARIANTS)} (the '
                     'deep-stem ResNet-D of lxtGH/SFSegNets at output stride 32).')
  depth = VARIANTS[variant]
  head = SFNetHead(**{'num_classes': num_classes, 'fpn_dim': 128 if depth == 18 else 256,
                      'dropout_rate': dropout_rate, 'deep_supervision': aux_head,
                      'dtype': dtype, **overrides})
  return SFNet(ResNetDeepBase(depth, dtype), head)
