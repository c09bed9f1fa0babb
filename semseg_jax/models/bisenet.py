"""BiSeNet V1 and V2, the two-pathway real-time segmenters, as mmsegmentation 1.x builds them
(`mmseg/models/backbones/bisenetv1.py` and `bisenetv2.py`; `configs/_base_/models/
bisenetv1_r18-d32.py` and `bisenetv2.py`; `configs/bisenetv1/*`, `configs/bisenetv2/*`), the
implementation behind the mmseg benchmark numbers.

BiSeNet V1 (Yu et al., "BiSeNet: Bilateral Segmentation Network for Real-time Semantic
Segmentation", ECCV 2018):
- Spatial Path (Sec. 3.1): three stride-2 ConvBNReLU (7x7, 3x3, 3x3) and a 1x1 ConvBNReLU:
  a 1/8 map of 128 (R-18) or 512 (R-50/101) channels.
- Context Path (Sec. 3.2): a ResNet at output stride 32 (mmseg's `ResNet`: torchvision's 7x7
  stem, not V1c); global average pooling of stage 4 -> 1x1 ConvBNReLU is the global context;
  an Attention Refinement Module (ARM: 3x3 ConvBNReLU, then GAP -> 1x1 conv -> BN -> sigmoid
  re-weighting) on stages 4 and 3. Top-down: (ARM32 + context) -> nearest x2 -> 3x3 ConvBNReLU
  (`conv_head32`, the 1/16 output) -> + ARM16 -> nearest x2 -> 3x3 ConvBNReLU (`conv_head16`,
  the 1/8 output).
- Feature Fusion Module (Sec. 3.3): concat(spatial, context 1/8) -> 1x1 ConvBNReLU -> GAP ->
  1x1 ConvBNReLU -> sigmoid; out = x + x * attention.
- Heads (the mmseg config): FCN head (one 3x3 ConvBNReLU of 256 | 1024 channels, dropout 0.1,
  1x1 classifier) on the FFM output; in training two auxiliary FCN heads (64 | 256 channels,
  loss weight 1.0 each) on the context path's 1/8 and 1/16 outputs, the paper's two auxiliary
  losses (Sec. 3.3, alpha = 1).
Widths by variant (mmseg configs): 'r18': spatial (64, 64, 64, 128), context 128, FFM 256,
head 256, aux 64; 'r50' / 'r101': spatial (256, 256, 256, 512), context 512, FFM 1024,
head 1024, aux 256.

BiSeNet V2 (Yu et al., "BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time
Semantic Segmentation", IJCV 2021; Table 1, Figs. 4-6):
- Detail Branch: stages of (2, 3, 3) 3x3 ConvBNReLU, the first of each at stride 2; widths
  (64, 64, 128): a 1/8 map.
- Semantic Branch: Stem Block (3x3/2 conv; then [1x1 conv -> 3x3/2 conv] beside a 3x3/2 max
  pool, concatenated, 3x3 conv: 16 channels at 1/4), then Gather-and-Expand layers
  (expansion 6): stage 3: GE/2 + GE (32 channels, 1/8), stage 4: GE/2 + GE (64, 1/16),
  stage 5: GE/2 + 3 GE (128, 1/32), then the Context Embedding Block (GAP -> BN -> 1x1
  ConvBNReLU, added to the input, -> 3x3 ConvBNReLU).
- Bilateral Guided Aggregation: detail (dw3x3-BN -> 1x1) x sigmoid(upsampled semantic
  3x3conv-BN) + upsampled[ (3x3/2 conv-BN -> 3x3/2 avg pool)(detail) x sigmoid(semantic
  dw3x3-BN -> 1x1) ] -> 3x3 ConvBNReLU: 128 channels at 1/8.
- Heads: FCN head (one 3x3 ConvBNReLU of 1024, dropout 0.1) on the aggregation; in training
  the four "booster" FCN heads (two 3x3 ConvBNReLU each, widths 16, 64, 256, 1024, loss weight
  1.0) on the stem and stages 3, 4, 5 (mmseg in_index 1..4).

Resizing: V1's top-down path upsamples with PyTorch's 'nearest' mode (`resize_nearest` here,
exact to PyTorch's float32 index arithmetic); V2's aggregation uses bilinear,
align_corners=False (`layers.bilinear_resize`). Logits come at 1/8 (ceil(H/8) x ceil(W/8)).

Deviations and notes:
- Where paper and mmseg differ, mmseg is followed (its numbers are the benchmark): V1's FFM
  attention has BN and a single 1x1 conv (paper: two 1x1 convs, no BN); V2's GE layers have a
  ReLU after the (second) depthwise conv and its CE block's last conv is ConvBNReLU (paper:
  plain conv); V2's heads are mmseg's FCN heads (paper: 3x3 conv -> 1x1 conv, see Fig. 6).
- BatchNorm statistics are over the global batch (mmseg uses plain BN inside both backbones,
  i.e. per-GPU statistics of 4 images, and SyncBN in ResNet and the heads).
- mmseg's `context_channels=(c, c2, c3)`: only `c` is a width; c2 and c3 are the ResNet's
  stage-3/4 widths, which flax infers, so `context_channels` here is the single int `c`.
- Initialisation as mmcv/mmseg: He normal (fan out) convs, BN gamma 1 / beta 0, ResNet's last
  BN of each residual branch at 0, classifiers N(0, 0.01).

Parameter names are mmseg's (nn.Sequential indices become _<i> suffixes).
"""

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.resnet import ResNet
from semseg_jax.models.heads.fcn_head import FCNHead
from semseg_jax.models.layers import (AttentionRefinement, ConvBNAct, DepthwiseSeparableConvBNAct,
                                      EncoderDecoder, avg_pool, batch_norm, bilinear_resize,
                                      global_avg_pool, max_pool, resize_nearest)

# --- BiSeNet V1 ---------------------------------------------------------------------------------

class SpatialPath(nn.Module):
  """7x7/2, 3x3/2, 3x3/2 and 1x1 ConvBNReLU: a 1/8 map of `channels[-1]` channels."""
  channels: Sequence[int] = (64, 64, 64, 128)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    kernels_and_strides = ((7, 2), (3, 2), (3, 2), (1, 1))
    for i, (width, (kernel, stride)) in enumerate(zip(self.channels, kernels_and_strides)):
      x = ConvBNAct(width, kernel, stride, dtype=self.dtype, name=f'layer{i + 1}')(x, train)
    return x


class ContextPath(nn.Module):
  """ResNet (output stride 32) + global context + ARMs, fused top-down; returns the 1/8 and
  1/16 context maps (both `channels` wide)."""
  depth: int = 18
  deep_stem: bool = False
  channels: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    _, x_8, x_16, x_32 = ResNet(self.depth, deep_stem=self.deep_stem, output_stride=32,
                                dtype=self.dtype, name='backbone')(x, train)
    context = ConvBNAct(self.channels, 1, dtype=self.dtype, name='gap_conv')(
        global_avg_pool(x_32), train)
    x_32 = AttentionRefinement(self.channels, self.dtype, name='arm32')(x_32, train) + context
    up_32 = ConvBNAct(self.channels, 3, dtype=self.dtype, name='conv_head32')(
        resize_nearest(x_32, x_16.shape[1:3]), train)
    x_16 = AttentionRefinement(self.channels, self.dtype, name='arm16')(x_16, train) + up_32
    up_16 = ConvBNAct(self.channels, 3, dtype=self.dtype, name='conv_head16')(
        resize_nearest(x_16, x_8.shape[1:3]), train)
    return up_16, up_32


class FeatureFusion(nn.Module):
  """FFM: concat -> 1x1 ConvBNReLU = f; f + f * sigmoid(1x1 ConvBNReLU(GAP(f)))."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, spatial: jax.Array, context: jax.Array,
               train: bool = False) -> jax.Array:
    fused = ConvBNAct(self.features, 1, dtype=self.dtype, name='conv1')(
        jnp.concatenate([spatial, context], axis=-1), train)
    attention = ConvBNAct(self.features, 1, dtype=self.dtype, name='conv_atten')(
        global_avg_pool(fused), train)
    return fused + fused * nn.sigmoid(attention)


class BiSeNetV1Backbone(nn.Module):
  """Returns [FFM output (1/8), context 1/8, context 1/16] (mmseg's out_indices (0, 1, 2))."""
  depth: int = 18
  deep_stem: bool = False
  spatial_channels: Sequence[int] = (64, 64, 64, 128)
  context_channels: int = 128
  out_channels: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    context_8, context_16 = ContextPath(self.depth, self.deep_stem, self.context_channels,
                                        self.dtype, name='context_path')(x, train)
    spatial = SpatialPath(tuple(self.spatial_channels), self.dtype, name='spatial_path')(
        x, train)
    fused = FeatureFusion(self.out_channels, self.dtype, name='ffm')(spatial, context_8, train)
    return [fused, context_8, context_16]


# --- BiSeNet V2 ---------------------------------------------------------------------------------

class DetailBranch(nn.Module):
  """Stages of 3x3 ConvBNReLU (the first at stride 2): 2 convs in stage 1, 3 after."""
  channels: Sequence[int] = (64, 64, 128)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for i, width in enumerate(self.channels):
      for j in range(2 if i == 0 else 3):
        x = ConvBNAct(width, 3, 2 if j == 0 else 1, dtype=self.dtype,
                      name=f'stage{i + 1}_{j}')(x, train)
    return x


class StemBlock(nn.Module):
  """3x3/2 conv; [1x1 (half width) -> 3x3/2] beside 3x3/2 max pooling; concat -> 3x3 conv."""
  features: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = ConvBNAct(self.features, 3, 2, dtype=self.dtype, name='conv_first')(x, train)
    left = ConvBNAct(self.features // 2, 1, dtype=self.dtype, name='convs_0')(x, train)
    left = ConvBNAct(self.features, 3, 2, dtype=self.dtype, name='convs_1')(left, train)
    right = max_pool(x, 3, 2, padding=1)
    return ConvBNAct(self.features, 3, dtype=self.dtype, name='fuse_last')(
        jnp.concatenate([left, right], axis=-1), train)


class GatherExpand(nn.Module):
  """GE layer: 3x3 ConvBNReLU -> depthwise expansion (x `expansion`; at stride 2 a strided
  depthwise conv-BN then a depthwise ConvBNReLU) -> 1x1 conv-BN; plus the identity or, at
  stride 2, a depthwise-separable shortcut; ReLU."""
  features: int
  stride: int = 1
  expansion: int = 6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    in_channels = x.shape[-1]
    mid = in_channels * self.expansion
    y = ConvBNAct(in_channels, 3, dtype=self.dtype, name='conv1')(x, train)
    if self.stride == 1:
      y = ConvBNAct(mid, 3, groups=in_channels, dtype=self.dtype, name='dwconv')(y, train)
      shortcut = x
    else:
      y = ConvBNAct(mid, 3, self.stride, groups=in_channels, activation=None, dtype=self.dtype,
                    name='dwconv_0')(y, train)
      y = ConvBNAct(mid, 3, groups=mid, dtype=self.dtype, name='dwconv_1')(y, train)
      shortcut = DepthwiseSeparableConvBNAct(self.features, stride=self.stride, activation=None,
                                             dtype=self.dtype, name='shortcut')(x, train)
    y = ConvBNAct(self.features, 1, activation=None, dtype=self.dtype, name='conv2')(y, train)
    return nn.relu(y + shortcut)


class ContextEmbedding(nn.Module):
  """CE block: x + 1x1 ConvBNReLU(BN(GAP(x))), then a 3x3 ConvBNReLU."""
  features: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    context = batch_norm(train, self.dtype, name='gap_bn')(global_avg_pool(x))
    context = ConvBNAct(self.features, 1, dtype=self.dtype, name='conv_gap')(context, train)
    return ConvBNAct(self.features, 3, dtype=self.dtype, name='conv_last')(x + context, train)


class SemanticBranch(nn.Module):
  """Stem (1/4), GE stages (1/8, 1/16, 1/32: 2, 2, 4 layers), CE block; returns all five
  outputs."""
  channels: Sequence[int] = (16, 32, 64, 128)
  expansion: int = 6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    x = StemBlock(self.channels[0], self.dtype, name='stage1')(x, train)
    outputs = [x]
    last = len(self.channels) - 1
    for i, width in enumerate(self.channels[1:], start=1):
      for j in range(4 if i == last else 2):
        x = GatherExpand(width, 2 if j == 0 else 1, self.expansion, self.dtype,
                         name=f'stage{i + 1}_{j}')(x, train)
      outputs.append(x)
    outputs.append(ContextEmbedding(self.channels[-1], self.dtype, name='ce_block')(x, train))
    return outputs


class BilateralGuidedAggregation(nn.Module):
  """BGA: each branch gates the other (sigmoid), at 1/8 and at 1/32, summed at 1/8, then a
  3x3 ConvBNReLU."""
  features: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, detail: jax.Array, semantic: jax.Array,
               train: bool = False) -> jax.Array:
    detail_keep = DepthwiseSeparableConvBNAct(self.features, activation=None,
                                              pointwise_norm=False, dtype=self.dtype,
                                              name='detail_dwconv')(detail, train)
    detail_down = avg_pool(ConvBNAct(self.features, 3, 2, activation=None, dtype=self.dtype,
                                     name='detail_down')(detail, train), 3, 2, padding=1)
    semantic_up = ConvBNAct(self.features, 3, activation=None, dtype=self.dtype,
                            name='semantic_conv')(semantic, train)
    semantic_keep = DepthwiseSeparableConvBNAct(self.features, activation=None,
                                                pointwise_norm=False, dtype=self.dtype,
                                                name='semantic_dwconv')(semantic, train)
    size = detail_keep.shape[1:3]
    high = detail_keep * nn.sigmoid(bilinear_resize(semantic_up, size))
    low = bilinear_resize(detail_down * nn.sigmoid(semantic_keep), size)
    return ConvBNAct(self.features, 3, dtype=self.dtype, name='conv')(high + low, train)


class BiSeNetV2Backbone(nn.Module):
  """Returns [aggregation (1/8), stem (1/4), stage 3 (1/8), stage 4 (1/16), stage 5 (1/32)]
  (mmseg's out_indices (0, 1, 2, 3, 4))."""
  detail_channels: Sequence[int] = (64, 64, 128)
  semantic_channels: Sequence[int] = (16, 32, 64, 128)
  expansion: int = 6
  bga_channels: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    detail = DetailBranch(tuple(self.detail_channels), self.dtype, name='detail')(x, train)
    semantic = SemanticBranch(tuple(self.semantic_channels), self.expansion, self.dtype,
                              name='semantic')(x, train)
    fused = BilateralGuidedAggregation(self.bga_channels, self.dtype, name='bga')(
        detail, semantic[-1], train)
    return [fused] + semantic[:-1]


# --- Constructors -------------------------------------------------------------------------------

# variant -> (ResNet depth, backbone widths, decode head channels, aux head channels)
BISENETV1_VARIANTS: dict[str, tuple[int, dict[str, Any], int, int]] = {
    'r18': (18, dict(spatial_channels=(64, 64, 64, 128), context_channels=128,
                     out_channels=256), 256, 64),
    'r50': (50, dict(spatial_channels=(256, 256, 256, 512), context_channels=512,
                     out_channels=1024), 1024, 256),
    'r101': (101, dict(spatial_channels=(256, 256, 256, 512), context_channels=512,
                       out_channels=1024), 1024, 256),
}

# (in_index, channels) of V2's four booster heads.
BISENETV2_BOOSTERS = ((1, 16), (2, 64), (3, 256), (4, 1024))


def _split_overrides(backbone_cls: type, overrides: dict[str, Any]
                     ) -> tuple[dict[str, Any], dict[str, Any], Any]:
  """Overrides naming a field of `backbone_cls` go to the backbone, 'aux_channels' (one width
  per auxiliary head) to the auxiliary heads, all others to the decode head."""
  backbone_fields = {f.name for f in dataclasses.fields(backbone_cls)} - {'name', 'parent'}
  backbone = {k: v for k, v in overrides.items() if k in backbone_fields}
  head = {k: v for k, v in overrides.items()
          if k not in backbone_fields and k != 'aux_channels'}
  return backbone, head, overrides.get('aux_channels')


def _aux_heads(num_classes: int, specs: Sequence[tuple[int, int]], num_convs: int,
               aux_channels: Sequence[int] | None, dtype: Any) -> tuple[FCNHead, ...]:
  if aux_channels is not None:
    if len(aux_channels) != len(specs):
      raise ValueError(f'aux_channels={tuple(aux_channels)}: expected {len(specs)} widths.')
    specs = [(index, width) for (index, _), width in zip(specs, aux_channels)]
  return tuple(FCNHead(num_classes, in_index=index, channels=width, num_convs=num_convs,
                       concat_input=False, dropout_rate=0.1, dtype=dtype)
               for index, width in specs)


def bisenetv1(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
              dropout_rate: float = 0.1, aux_head: bool = True,
              **overrides: Any) -> EncoderDecoder:
  """BiSeNet V1 on ResNet-18/50/101 ('r18', 'r50', 'r101'), mmseg's widths.

  `overrides`: fields of BiSeNetV1Backbone (spatial_channels, context_channels, out_channels,
  deep_stem) go to the backbone, `aux_channels` (2 widths) to the auxiliary heads, the rest
  (channels, ...) to the decode FCNHead. `aux_head` adds the two auxiliary FCN heads on the
  context path's 1/8 and 1/16 outputs (loss weight 1.0 each in mmseg's configs).
  """
  if variant not in BISENETV1_VARIANTS:
    raise ValueError(f'BiSeNetV1 variant {variant!r}; expected one of '
                     f'{sorted(BISENETV1_VARIANTS)}.')
  depth, widths, head_channels, aux_channels = BISENETV1_VARIANTS[variant]
  backbone_overrides, head_overrides, aux_override = _split_overrides(BiSeNetV1Backbone,
                                                                      overrides)
  backbone = BiSeNetV1Backbone(depth, **{**widths, **backbone_overrides}, dtype=dtype)
  head = FCNHead(**{'num_classes': num_classes, 'in_index': 0, 'channels': head_channels,
                    'num_convs': 1, 'concat_input': False, 'dropout_rate': dropout_rate,
                    'dtype': dtype, **head_overrides})
  aux = _aux_heads(num_classes, ((1, aux_channels), (2, aux_channels)), 1, aux_override,
                   dtype) if aux_head else ()
  return EncoderDecoder(backbone, head, aux)


def bisenetv2(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
              dropout_rate: float = 0.1, aux_head: bool = True,
              **overrides: Any) -> EncoderDecoder:
  """BiSeNet V2 ('bisenetv2'), mmseg's widths.

  `overrides`: fields of BiSeNetV2Backbone (detail_channels, semantic_channels, expansion,
  bga_channels) go to the backbone, `aux_channels` (4 widths) to the booster heads, the rest
  (channels, ...) to the decode FCNHead. `aux_head` adds the four booster FCN heads (two 3x3
  convs each) on the stem and semantic stages 3-5 (loss weight 1.0 each in mmseg's config).
  """
  if variant != 'bisenetv2':
    raise ValueError(f"BiSeNetV2 variant {variant!r}; expected 'bisenetv2'.")
  backbone_overrides, head_overrides, aux_override = _split_overrides(BiSeNetV2Backbone,
                                                                      overrides)
  backbone = BiSeNetV2Backbone(**backbone_overrides, dtype=dtype)
  head = FCNHead(**{'num_classes': num_classes, 'in_index': 0, 'channels': 1024,
                    'num_convs': 1, 'concat_input': False, 'dropout_rate': dropout_rate,
                    'dtype': dtype, **head_overrides})
  aux = _aux_heads(num_classes, BISENETV2_BOOSTERS, 2, aux_override,
                   dtype) if aux_head else ()
  return EncoderDecoder(backbone, head, aux)
