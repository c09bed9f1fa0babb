"""DeepLabV3 on MobileNetV2 as Hugging Face Transformers builds it (the checkpoints
google/deeplabv3_mobilenet_v2_<multiplier>_513, converted from TensorFlow's DeepLab model zoo).

Papers: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018);
Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation" (arXiv:1706.05587,
2017). Reference implementation: transformers' `models/mobilenet_v2/modeling_mobilenet_v2.py`
(`MobileNetV2ForSemanticSegmentation` = `MobileNetV2Model` + `MobileNetV2DeepLabV3Plus`), whose
weights `semseg_jax/convert/hf_mobilenet_v2.py` maps onto this model.

Backbone (HF's `MobileNetV2Model`): a stem (3x3 stride-2 conv to 32 channels, 3x3 depthwise,
linear 1x1 projection to 16) and 16 inverted residual blocks (1x1 expansion by 6, 3x3 depthwise,
linear 1x1 projection; the input is added back at stride 1 with equal widths). Every conv is
bias-free and followed by BatchNorm (eps 1e-3, TensorFlow's) and ReLU6, except the projections,
which are linear. Widths are multiplied by the depth multiplier and rounded to multiples of 8
(at least `min_depth`; one step up where rounding loses more than 10%). Output stride: once the
running stride reaches it, later blocks keep stride 1 and a stride they would have had multiplies
the dilation of the blocks AFTER it (so at output stride 8 the dilations are 1 through block 5,
2 for blocks 6-12 and 4 for blocks 13-15). `tf_padding` pads like TensorFlow's 'SAME' (flax's
'SAME', which also holds for the dilated stride-1 convs); without it, symmetric (k - 1) / 2 *
dilation.

Head (HF's `MobileNetV2DeepLabV3Plus`, despite its name DeepLabV3's ASPP reduced to two branches,
as TF's DeepLab builds it for MobileNetV2): image pooling -> 1x1 conv (256) -> broadcast back
(HF's align_corners upsampling of a 1x1 map), and a 1x1 conv (256) on the features; the two are
concatenated (pooling first), fused by a 1x1 conv (256), then Dropout2d (`dropout_rate`, HF's
classifier_dropout_prob, whose config default 0.8 is ImageNet classification's) and a 1x1
classifier with bias. The head's convs use BatchNorm eps 1e-5 and ReLU. Logits come at the
output stride, NOT upsampled (as HF's). Conv kernels start N(0, 0.02^2), biases 0, BN gamma 1 /
beta 0 (HF's init).

Parameter names are HF's (`layer_{i}` is HF's `layer.{i}`).

Deviations from HF:
- HF also builds the backbone's final 1x1 conv to 1280 channels (`conv_1x1`; its width is where
  `finegrained_output` matters) and runs it, but the head never reads its output. It is left out
  unless `final_conv=True`, which builds and runs it likewise (same parameters as HF's model).
- BatchNorm momentum (training only): HF passes TF's decay 0.997 as PyTorch's momentum, so its
  running statistics keep only 0.3% of their old value per training step. We keep TensorFlow's
  decay, 0.997 in flax terms (the default); HF's behaviour is `bn_momentum=0.003`. As everywhere
  in flax, the running variance is updated with the biased batch variance (PyTorch: unbiased).

Variants: '<depth multiplier>-os<8|16|32>', e.g. '1.0-os8' (the checkpoint
google/deeplabv3_mobilenet_v2_1.0_513), '0.5-os8', '1.0-os16'.
"""

import dataclasses
import re
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.mobilenet_v2 import make_divisible
from semseg_jax.models.layers import BatchNorm, conv2d, global_avg_pool

# Output widths of the stem and of the 16 inverted residual blocks, before the multiplier.
BLOCK_CHANNELS = (16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320)
# Depthwise strides of the 16 blocks at output stride 32.
BLOCK_STRIDES = (2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1)
STEM_CHANNELS = 32
STEM_STRIDE = 2
FINAL_CHANNELS = 1280
OUTPUT_STRIDES = (8, 16, 32)

BACKBONE_BN_EPSILON = 1e-3
HEAD_BN_EPSILON = 1e-5
TF_BN_MOMENTUM = 0.997  # TensorFlow DeepLab's BatchNorm decay (flax momentum); HF's is 0.003.

VARIANT_PATTERN = re.compile(r'(\d+(?:\.\d+)?)-os(\d+)')


@dataclasses.dataclass(frozen=True)
class Architecture:
  """The knobs of HF's MobileNetV2Config that shape the network, plus `final_conv`,
  `bn_momentum` (flax convention) and the head's width."""
  depth_multiplier: float = 1.0
  output_stride: int = 8
  min_depth: int = 8
  depth_divisible_by: int = 8
  expand_ratio: float = 6.0
  first_layer_is_expansion: bool = True
  finegrained_output: bool = True
  final_conv: bool = False
  tf_padding: bool = True
  bn_momentum: float = TF_BN_MOMENTUM
  head_channels: int = 256

  def width(self, channels: int) -> int:
    """`channels` times the depth multiplier, rounded (HF's apply_depth_multiplier)."""
    return make_divisible(int(round(channels * self.depth_multiplier)),
                          self.depth_divisible_by, min_value=self.min_depth)

  def expanded_width(self, in_channels: int) -> int:
    """The hidden width of a block reading `in_channels`."""
    return make_divisible(int(round(in_channels * self.expand_ratio)), self.depth_divisible_by,
                          min_value=self.min_depth)

  def final_width(self) -> int:
    """The width of the final 1x1 conv: 1280 unscaled when finegrained below multiplier 1."""
    if self.finegrained_output and self.depth_multiplier < 1.0:
      return FINAL_CHANNELS
    return self.width(FINAL_CHANNELS)

  def block_strides_and_dilations(self) -> list[tuple[int, int]]:
    """(stride, dilation) of each block's depthwise conv, as HF's MobileNetV2Model derives them
    from the output stride."""
    current_stride, dilation, settings = STEM_STRIDE, 1, []
    for stride in BLOCK_STRIDES:
      if current_stride == self.output_stride:
        settings.append((1, dilation))
        dilation *= stride  # Takes effect from the next block on.
      else:
        settings.append((stride, 1))
        current_stride *= stride
    return settings


class ConvLayer(nn.Module):
  """HF's MobileNetV2ConvLayer: conv ('convolution') -> [BatchNorm ('normalization')] ->
  [activation]. `bn_epsilon=None` leaves the norm out."""
  features: int
  arch: Architecture
  kernel_size: int = 1
  stride: int = 1
  dilation: int = 1
  groups: int = 1
  use_bias: bool = False
  bn_epsilon: float | None = BACKBONE_BN_EPSILON
  activation: Callable[[jax.Array], jax.Array] | None = nn.relu6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    # tf_padding: TensorFlow's 'SAME'; else symmetric dilation * (k - 1) / 2 (conv2d's default).
    x = conv2d(self.features, self.kernel_size, self.stride, self.dilation,
               padding='SAME' if self.arch.tf_padding else None, groups=self.groups,
               use_bias=self.use_bias, kernel_init=nn.initializers.normal(0.02),
               dtype=self.dtype, name='convolution')(x)
    if self.bn_epsilon is not None:
      x = BatchNorm(use_running_average=not train, momentum=self.arch.bn_momentum,
                    epsilon=self.bn_epsilon, dtype=self.dtype, name='normalization')(x)
    return x if self.activation is None else self.activation(x)


class InvertedResidual(nn.Module):
  """Expand (1x1) -> depthwise 3x3 (strided or dilated) -> linear 1x1 [+ input]."""
  features: int
  arch: Architecture
  stride: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    hidden = self.arch.expanded_width(x.shape[-1])
    y = ConvLayer(hidden, self.arch, dtype=self.dtype, name='expand_1x1')(x, train)
    y = ConvLayer(hidden, self.arch, 3, self.stride, self.dilation, groups=hidden,
                  dtype=self.dtype, name='conv_3x3')(y, train)
    y = ConvLayer(self.features, self.arch, activation=None, dtype=self.dtype,
                  name='reduce_1x1')(y, train)
    return x + y if self.stride == 1 and x.shape[-1] == self.features else y


class Stem(nn.Module):
  """HF's MobileNetV2Stem: 3x3 stride-2 conv, [1x1 expansion], 3x3 depthwise, linear 1x1."""
  features: int
  arch: Architecture
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    width = self.arch.width(STEM_CHANNELS)
    x = ConvLayer(width, self.arch, 3, STEM_STRIDE, dtype=self.dtype, name='first_conv')(
        x, train)
    if not self.arch.first_layer_is_expansion:
      x = ConvLayer(width, self.arch, dtype=self.dtype, name='expand_1x1')(x, train)
    x = ConvLayer(width, self.arch, 3, groups=width, dtype=self.dtype, name='conv_3x3')(
        x, train)
    return ConvLayer(self.features, self.arch, activation=None, dtype=self.dtype,
                     name='reduce_1x1')(x, train)


class MobileNetV2Backbone(nn.Module):
  """HF's MobileNetV2Model without pooling: returns the last block's features (320 x
  multiplier channels at the output stride)."""
  arch: Architecture
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    widths = [self.arch.width(c) for c in BLOCK_CHANNELS]
    x = Stem(widths[0], self.arch, self.dtype, name='conv_stem')(x, train)
    for i, (stride, dilation) in enumerate(self.arch.block_strides_and_dilations()):
      x = InvertedResidual(widths[i + 1], self.arch, stride, dilation, self.dtype,
                           name=f'layer_{i}')(x, train)
    if self.arch.final_conv:  # Run as HF does; its output is never read (see module doc).
      ConvLayer(self.arch.final_width(), self.arch, dtype=self.dtype, name='conv_1x1')(x, train)
    return x


class SegmentationHead(nn.Module):
  """HF's MobileNetV2DeepLabV3Plus: [image pooling branch, 1x1 branch] -> 1x1 fusion ->
  Dropout2d -> 1x1 classifier."""
  num_classes: int
  arch: Architecture
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  def branch(self, name: str) -> ConvLayer:
    return ConvLayer(self.arch.head_channels, self.arch, bn_epsilon=HEAD_BN_EPSILON,
                     activation=nn.relu, dtype=self.dtype, name=name)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    pooled = self.branch('conv_pool')(global_avg_pool(x), train)
    pooled = jnp.broadcast_to(pooled, x.shape[:3] + pooled.shape[3:])
    x = jnp.concatenate([pooled, self.branch('conv_aspp')(x, train)], axis=-1)
    x = self.branch('conv_projection')(x, train)
    x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    return ConvLayer(self.num_classes, self.arch, use_bias=True, bn_epsilon=None,
                     activation=None, dtype=self.dtype, name='classifier')(x, train)


class DeepLabV3MobileNetV2(nn.Module):
  """images [N, H, W, 3] -> {'logits': float32 [N, ceil(H / os), ceil(W / os), C], 'aux': []}."""
  backbone: nn.Module
  segmentation_head: nn.Module

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, Any]:
    logits = self.segmentation_head(self.backbone(images, train=train), train=train)
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def parse_variant(variant: str) -> tuple[float, int]:
  """'<depth multiplier>-os<output stride>' -> (multiplier, output stride)."""
  match = VARIANT_PATTERN.fullmatch(variant)
  if (match is None or float(match[1]) <= 0.0
      or int(match[2]) not in OUTPUT_STRIDES):
    raise ValueError(f'DeepLabV3-MobileNetV2 variant {variant!r}; expected '
                     f"'<depth multiplier>-os<output stride>' with a positive multiplier and "
                     f"output stride in {OUTPUT_STRIDES}, e.g. '1.0-os8' or '0.5-os8'.")
  return float(match[1]), int(match[2])


def deeplabv3_mobilenet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
                        dropout_rate: float = 0.1, **overrides: Any) -> nn.Module:
  """HF's MobileNetV2ForSemanticSegmentation of `variant` with `num_classes` outputs;
  `overrides` replace fields of `Architecture` (tf_padding, final_conv, bn_momentum, ...)."""
  depth_multiplier, output_stride = parse_variant(variant)
  arch = dataclasses.replace(Architecture(depth_multiplier, output_stride), **overrides)
  return DeepLabV3MobileNetV2(
      backbone=MobileNetV2Backbone(arch, dtype),
      segmentation_head=SegmentationHead(num_classes, arch, dropout_rate, dtype))
