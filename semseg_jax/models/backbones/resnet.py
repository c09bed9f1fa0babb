"""ResNet (He et al. 2016) as a segmentation backbone, in the two layouts the benchmarks use:

- v1 (torchvision): a 7x7 stride-2 stem conv, then 3x3 stride-2 max pooling;
- v1c (mmsegmentation's ResNetV1c, the backbone of its R-50-D8 / R-101-D8 results): the stem is
  three 3x3 convs (32, 32, 64 channels; the first at stride 2), then the same max pooling.

Both are the "pytorch" style: a Bottleneck's stride sits on its 3x3 conv, and the shortcut is a
1x1 conv at that stride + BatchNorm wherever the shape changes. The output stride is 32, 16 or 8,
obtained by replacing the strides of the last stages with dilation (Chen et al., DeepLab):
  OS 32: strides (1, 2, 2, 2), dilations (1, 1, 1, 1)
  OS 16: strides (1, 2, 2, 1), dilations (1, 1, 1, 2)   ("D16")
  OS 8:  strides (1, 2, 1, 1), dilations (1, 1, 2, 4)   ("D8")
The first block of a dilated stage uses half its stage's dilation (mmseg's contract_dilation,
torchvision's replace_stride_with_dilation), so a stage's dilation grows block by block.
Multi-grid (DeepLabV3, Sec. 3.2) gives the last stage's blocks the rates dilation x unit_rate,
e.g. unit rates (1, 2, 4) at OS 16 -> rates (2, 4, 8). (mmseg's `multi_grid` uses the listed
numbers as the rates themselves; ours follows the paper.)

Basic blocks follow mmseg: only their first 3x3 conv is dilated. Initialisation: He normal
(fan_out) convs, BatchNorm gamma 1 / beta 0, and the last BatchNorm of each residual branch at
gamma 0 (mmseg's zero_init_residual); training normally starts from ImageNet weights anyway.

"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import avg_pool, batch_norm, conv2d, max_pool

# depth -> (bottleneck?, blocks per stage)
RESNET_DEPTHS: dict[int, tuple[bool, tuple[int, ...]]] = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}

# output stride -> (per-stage strides, per-stage dilations)
STRIDES_AND_DILATIONS: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
}

STAGE_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
  """Two 3x3 convs (the first strided and dilated) + shortcut; ResNet-18/34."""
  width: int
  stride: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    y = conv2d(self.width, 3, self.stride, self.dilation, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(batch_norm(train, self.dtype, name='bn1')(y))
    y = conv2d(self.width, 3, dtype=self.dtype, name='conv2')(y)
    y = batch_norm(train, self.dtype, zero_init=True, name='bn2')(y)
    return nn.relu(y + _shortcut(x, self.width, self.stride, train, self.dtype))


class Bottleneck(nn.Module):
  """1x1 reduce -> 3x3 (strided, dilated) -> 1x1 expand (x4) + shortcut; ResNet-50/101/152."""
  width: int
  stride: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    y = conv2d(self.width, 1, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(batch_norm(train, self.dtype, name='bn1')(y))
    y = conv2d(self.width, 3, self.stride, self.dilation, dtype=self.dtype, name='conv2')(y)
    y = nn.relu(batch_norm(train, self.dtype, name='bn2')(y))
    y = conv2d(4 * self.width, 1, dtype=self.dtype, name='conv3')(y)
    y = batch_norm(train, self.dtype, zero_init=True, name='bn3')(y)
    return nn.relu(y + _shortcut(x, 4 * self.width, self.stride, train, self.dtype))


def _shortcut(x: jax.Array, features: int, stride: int, train: bool, dtype: Any) -> jax.Array:
  """Identity, or a strided 1x1 conv + BatchNorm where the shape changes (called inside the
  block's compact scope, so its layers belong to the block)."""
  if stride == 1 and x.shape[-1] == features:
    return x
  x = conv2d(features, 1, stride, dtype=dtype, name='downsample_conv')(x)
  return batch_norm(train, dtype, name='downsample_bn')(x)


def stem(x: jax.Array, deep_stem: bool, train: bool, dtype: Any,
         ceil_mode: bool = False) -> jax.Array:
  """The stem (stride 4), called inside a backbone's compact scope: v1c's three 3x3 convs or
  v1's 7x7 conv, then 3x3 stride-2 max pooling (rounding up with `ceil_mode`)."""
  if deep_stem:
    for i, width in enumerate((32, 32, 64)):
      x = conv2d(width, 3, 2 if i == 0 else 1, dtype=dtype, name=f'stem_conv{i + 1}')(x)
      x = nn.relu(batch_norm(train, dtype, name=f'stem_bn{i + 1}')(x))
  else:
    x = conv2d(64, 7, 2, dtype=dtype, name='conv1')(x)
    x = nn.relu(batch_norm(train, dtype, name='bn1')(x))
  return max_pool(x, 3, 2, padding=1, ceil_mode=ceil_mode)


def halve(x: jax.Array) -> jax.Array:
  """PyTorch's bilinear F.interpolate(scale_factor=0.5) (align_corners False): it samples at
  2 i + 0.5, the mean of each 2x2 block, so 2x2 average pooling (an odd last row or column is
  dropped: the size rounds down)."""
  return avg_pool(x, 2, 2)


class ResNet(nn.Module):
  """Returns the outputs of the four stages (strides 4, 8, 16|8, 32|16|8), preceded by the
  stem's (stride 4) with `stem_feature` (LinkNet links it to its last decoder).
  ICNet's form (mmseg's): `ceil_mode_pool` rounds the stem's max pooling up, and
  `halve_before_stage` s (1-4) halves the map before stage s (`halve`; strides then double from
  that stage on)."""
  depth: int = 50
  deep_stem: bool = True
  output_stride: int = 8
  multi_grid: Sequence[int] = ()
  stem_feature: bool = False
  ceil_mode_pool: bool = False
  halve_before_stage: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    if self.depth not in RESNET_DEPTHS:
      raise ValueError(f'ResNet depth {self.depth}; expected one of {sorted(RESNET_DEPTHS)}.')
    if self.output_stride not in STRIDES_AND_DILATIONS:
      raise ValueError(f'ResNet output stride {self.output_stride}; expected one of '
                       f'{sorted(STRIDES_AND_DILATIONS)}.')
    bottleneck, blocks = RESNET_DEPTHS[self.depth]
    block_cls = Bottleneck if bottleneck else BasicBlock
    strides, dilations = STRIDES_AND_DILATIONS[self.output_stride]
    if self.multi_grid and len(self.multi_grid) != blocks[-1]:
      raise ValueError(f'multi_grid={tuple(self.multi_grid)} needs one unit rate per block of '
                       f'the last stage ({blocks[-1]} blocks).')

    x = stem(x, self.deep_stem, train, self.dtype, self.ceil_mode_pool)

    features = [x] if self.stem_feature else []
    for s, (num_blocks, stride, dilation) in enumerate(zip(blocks, strides, dilations)):
      if s + 1 == self.halve_before_stage:
        x = halve(x)
      for j in range(num_blocks):
        if s == len(blocks) - 1 and self.multi_grid:
          rate = dilation * self.multi_grid[j]
        elif j == 0 and dilation > 1:
          rate = dilation // 2
        else:
          rate = dilation
        x = block_cls(STAGE_WIDTHS[s], stride if j == 0 else 1, rate, dtype=self.dtype,
                      name=f'layer{s + 1}_block{j}')(x, train)
      features.append(x)
    return features


def resnet_channels(depth: int) -> tuple[int, ...]:
  """Channels of the four stage outputs."""
  expansion = 4 if RESNET_DEPTHS[depth][0] else 1
  return tuple(expansion * w for w in STAGE_WIDTHS)


def resnet_from_variant(variant: str, multi_grid: Sequence[int] = (),
                        dtype: Any = jnp.float32) -> ResNet:
  """The ResNet that a model variant names: 'r<depth>[v1][-d<output stride>]'.

  'r50-d8' is the v1c layout (deep stem) at output stride 8, the backbone of mmseg's R-50-D8
  results; 'r101v1-d16' is torchvision's layout at output stride 16; 'r50' is v1c at output
  stride 32 (UPerNet's backbone).
  """
  backbone, _, stride = variant.partition('-d')
  stride = stride if '-d' in variant else '32'
  torchvision_stem = backbone.endswith('v1')
  depth = backbone[1:-2] if torchvision_stem else backbone[1:]
  if (not backbone.startswith('r') or not depth.isdigit() or int(depth) not in RESNET_DEPTHS
      or not stride.isdigit() or int(stride) not in STRIDES_AND_DILATIONS):
    raise ValueError(
        f'ResNet variant {variant!r}; expected r<depth>[v1][-d<output stride>] with depth in '
        f'{sorted(RESNET_DEPTHS)} and output stride in {sorted(STRIDES_AND_DILATIONS)}, e.g. '
        f"'r50-d8' (v1c deep stem) or 'r101v1-d16' (torchvision stem).")
  return ResNet(int(depth), deep_stem=not torchvision_stem, output_stride=int(stride),
                multi_grid=tuple(multi_grid), dtype=dtype)


def stride32_resnet_from_variant(model: str, variant: str, multi_grid: Sequence[int] = (),
                                 dtype: Any = jnp.float32) -> ResNet:
  """The output-stride-32 ResNet of a model that takes no '-d' ('r50', 'r152v1'...); errors
  name `model`."""
  if '-d' in variant:
    raise ValueError(f'{model} variant {variant!r}: the backbone runs at output stride 32, so '
                     "the variant is r<depth>[v1] without '-d', e.g. 'r50' or 'r152v1'.")
  try:
    return resnet_from_variant(variant, multi_grid, dtype)
  except ValueError as error:
    raise ValueError(f"{model} variant {variant!r}; expected r<depth>[v1], e.g. 'r50', 'r101' "
                     f"or 'r152v1'. ({error})") from error
