"""DUC-HDC: Wang, Chen, Yuan, Liu, Huang, Hou, Cottrell, "Understanding Convolution for Semantic
Segmentation", WACV 2018 (Sec. 3): a dilated ResNet with Hybrid Dilated Convolution (HDC) and a
Dense Upsampling Convolution (DUC) head. Reference: the official TuSimple/TuSimple-DUC (MXNet),
tusimple_duc/networks/{resnet.py, network_duc_hdc.py} and configs/train/train_cityscapes.cfg,
the source of the paper's Cityscapes result (ResNet-101-DUC-HDC, 79.1 test mIoU single-scale).

Backbone: ResNet at output stride 8 (strides (1, 2, 1, 1)); every 3x3 conv of res4 and res5 (our
stages 3 and 4) has its own dilation rate. HDC rates of the official ResNet-101-HDC:
  res4 (23 blocks): 2, 2, 5, 9, then (1, 2, 5, 9) repeated: 1, 2, 5, 9, 1, 2, 5, 9, 1, 2, 5, 9,
    1, 2, 5, 9, 1, 2, 5  -- i.e. the group (1, 2, 5, 9) cycled, except block 0 at 2;
  res5 (3 blocks): 5, 9, 17.
Other depths take the same sequences' first blocks ('r50-hdc': res4 2, 2, 5, 9, 1, 2). Without
HDC ('r101'), the rates are DeepLab-v2's uniform 2 (res4) and 4 (res5), the dilated ResNet the
paper starts from (the zoo's ResNet-D8 instead halves the first block's rate).

DUC head (official): four parallel 3x3 convs on res5, dilations 6, 12, 18, 24 (aspp_num 4,
aspp_stride 6), each with biases and num_classes * r^2 outputs, summed (no BatchNorm, no ReLU),
then depth-to-space by r: channel c * r^2 + i * r + j goes to class c at sub-pixel (i, j)
(PyTorch's PixelShuffle order, the official label/prediction reshapes). The official Cityscapes
model uses cell_width 2, i.e. r = 8 / 2 = 4: logits at stride 2 (labels nearest-downsampled by 2
in training, probabilities bilinearly resized at test); that is the default here. The paper's
Sec. 3.1 describes r = d = 8 (full resolution): `upscale_factor=8`.

Sizes: the official pads images to a multiple of 8 at the bottom/right and crops the stride-2
map to the image; here the depth-to-space map (r * ceil(H / 8) rows) is cropped at the
bottom/right to ceil(H / (8 / r)) rows (same for columns), so the logits cover the image exactly.

Deviations from the official code, for the zoo's shared backbones and recipe:
  - Stem and layout: ResNetV1c's deep stem (32, 32, 64 channels; 'r<depth>v1': torchvision's
    7x7 stem) and the stride on the 3x3 conv of a block (PyTorch style), so ImageNet weights of
    the zoo's ResNets load; the official trunk has a 64, 64, 128 deep stem, an unpadded max pool,
    and res3a's stride on its 1x1 convs (Caffe style).
  - BatchNorm: trained (SyncBN, eps 1e-5) by the recipe; the official freezes BN statistics
    (use_global_stats, eps 1e-6) and trains at batch 1.
  - Initialisation of the DUC convs as the official's MXNet Xavier(factor_type='in',
    magnitude=2.34): U(-sqrt(2.34 / fan_in), +sqrt(2.34 / fan_in)), zero biases; trunk convs
    He-normal (fan_out) as the zoo's ResNet.
  No auxiliary head and no dropout (the official has none).

The backbone's parameter names are those of backbones/resnet.py's ResNet, so its weights load
unchanged.
"""

import re
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.resnet import (RESNET_DEPTHS, STAGE_WIDTHS, BasicBlock,
                                                Bottleneck, stem)
from semseg_jax.models.layers import EncoderDecoder, conv2d

HDC_RES4_GROUP = (1, 2, 5, 9)
HDC_RES4_FIRST = 2  # The official res4a (conv4_1) is at 2, not the group's 1.
HDC_RES5_RATES = (5, 9, 17)
PLAIN_RATES = (2, 4)  # res4, res5 without HDC.
STAGE_STRIDES = (1, 2, 1, 1)  # Output stride 8.
FEATURE_STRIDE = 8

# The official MXNet Xavier(factor_type='in', magnitude=2.34): U(+-sqrt(2.34 / fan_in)).
DUC_KERNEL_INIT = nn.initializers.variance_scaling(2.34 / 3, 'fan_in', 'uniform')


def block_rates(depth: int, hdc: bool) -> tuple[tuple[int, ...], ...]:
  """The dilation rate of every block's 3x3 conv, per stage (see the module docstring)."""
  blocks = RESNET_DEPTHS[depth][1]
  if hdc:
    res4 = [HDC_RES4_GROUP[j % len(HDC_RES4_GROUP)] for j in range(blocks[2])]
    res4[0] = HDC_RES4_FIRST
    res5 = [HDC_RES5_RATES[j % len(HDC_RES5_RATES)] for j in range(blocks[3])]
  else:
    res4, res5 = [PLAIN_RATES[0]] * blocks[2], [PLAIN_RATES[1]] * blocks[3]
  return (1,) * blocks[0], (1,) * blocks[1], tuple(res4), tuple(res5)


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
  """PyTorch's PixelShuffle in NHWC: [N, h, w, C * r^2] -> [N, h * r, w * r, C], where input
  channel c * r^2 + i * r + j lands at (h * r + i, w * r + j) of channel c."""
  n, h, w, channels = x.shape
  c = channels // (factor * factor)
  x = x.reshape(n, h, w, c, factor, factor).transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(n, h * factor, w * factor, c)


class DilatedResNet(nn.Module):
  """ResNet at output stride 8 with a given dilation rate for every block (HDC); the stem,
  blocks and parameter names of backbones/resnet.py's ResNet. Returns the four stage outputs."""
  depth: int = 101
  rates: Sequence[Sequence[int]] = ()
  deep_stem: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    bottleneck, blocks = RESNET_DEPTHS[self.depth]
    if tuple(len(r) for r in self.rates) != blocks:
      raise ValueError(f'rates {self.rates} need one rate per block of each stage {blocks}.')
    block_cls = Bottleneck if bottleneck else BasicBlock
    x = stem(x, self.deep_stem, train, self.dtype)
    features = []
    for s, (stage_rates, stride) in enumerate(zip(self.rates, STAGE_STRIDES)):
      for j, rate in enumerate(stage_rates):
        x = block_cls(STAGE_WIDTHS[s], stride if j == 0 else 1, rate, dtype=self.dtype,
                      name=f'layer{s + 1}_block{j}')(x, train)
      features.append(x)
    return features


class DUCHead(nn.Module):
  """Dense Upsampling Convolution on the last feature (stride 8): summed dilated 3x3 convs to
  num_classes * r^2 channels, depth-to-space by r; logits at stride 8 / r, cropped to cover the
  `output_hw` image exactly."""
  num_classes: int
  upscale_factor: int = 4
  aspp_rates: Sequence[int] = (6, 12, 18, 24)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], output_hw: tuple[int, int],
               train: bool = False) -> jax.Array:
    del train  # No BatchNorm or dropout in the head.
    r = self.upscale_factor
    if FEATURE_STRIDE % r:
      raise ValueError(f'upscale_factor={r} must divide the backbone stride {FEATURE_STRIDE}.')
    x = features[-1]
    x = sum(conv2d(self.num_classes * r * r, 3, dilation=rate, use_bias=True,
                   kernel_init=DUC_KERNEL_INIT, dtype=self.dtype, name=f'aspp_convs_{i}')(x)
            for i, rate in enumerate(self.aspp_rates))
    x = pixel_shuffle(x, r)
    stride = FEATURE_STRIDE // r
    return x[:, :-(-output_hw[0] // stride), :-(-output_hw[1] // stride)]


def duc_hdc(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
            **overrides: Any) -> EncoderDecoder:
  """DUC-HDC on the ResNet that `variant` names: 'r<depth>[v1][-hdc]' ('r101-hdc': the paper's
  ResNet-101-DUC-HDC, 'r101': DUC without HDC, 'v1': torchvision's stem instead of ResNetV1c's);
  `overrides` replace DUCHead fields (e.g. upscale_factor=8)."""
  match = re.fullmatch(r'r(\d+)(v1)?(-hdc)?', variant)
  if not match or int(match.group(1)) not in RESNET_DEPTHS:
    raise ValueError(f'DUC-HDC variant {variant!r}; expected r<depth>[v1][-hdc] with depth in '
                     f"{sorted(RESNET_DEPTHS)}, e.g. 'r101-hdc', 'r50-hdc' or 'r101'.")
  depth = int(match.group(1))
  backbone = DilatedResNet(depth, block_rates(depth, hdc=bool(match.group(3))),
                           deep_stem=not match.group(2), dtype=dtype)
  head = DUCHead(num_classes, **{'upscale_factor': 4, 'aspp_rates': (6, 12, 18, 24),
                                 'dtype': dtype, **overrides})
  return EncoderDecoder(backbone, head, decode_head_takes_image_hw=True)
