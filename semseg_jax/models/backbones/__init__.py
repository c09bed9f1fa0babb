"""Backbones: modules that map images to a list of feature maps, finest first."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from semseg_jax.models.backbones.mobilenet_v2 import mobilenet_v2_from_variant
from semseg_jax.models.backbones.resnet import resnet_from_variant

VARIANT_FORMS = ("r<depth>[v1][-d<output stride>] (ResNet: depth 18, 34, 50, 101 or 152; 'v1' "
                 "= torchvision's stem instead of the deep stem; output stride 8, 16 or 32), "
                 "e.g. 'r50-d8', 'r101-d16', or mv2[-d<output stride>] (MobileNetV2), e.g. "
                 "'mv2-d8'")


def dilated_backbone(model: str, variant: str, multi_grid: Sequence[int] = (),
                     dtype: Any = jnp.float32) -> tuple[nn.Module, int]:
  """The backbone a CNN model's variant names (ResNet or MobileNetV2) and its output stride.

  Both return four feature maps: strides 4, 8, then the output stride twice (stage 3 feeds the
  auxiliary head, the last one the decode head). `model` names the caller in error messages.
  """
  try:
    if variant.startswith('mv2'):
      backbone = mobilenet_v2_from_variant(variant, dtype)
    else:
      backbone = resnet_from_variant(variant, multi_grid, dtype)
  except ValueError:
    raise ValueError(f'{model} variant {variant!r}; expected {VARIANT_FORMS}.') from None
  if multi_grid and variant.startswith('mv2'):
    raise ValueError(f'multi_grid={tuple(multi_grid)} applies to ResNet backbones only, not '
                     f'to {variant!r}.')
  return backbone, backbone.output_stride
