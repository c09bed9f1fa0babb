"""FCN, Fully Convolutional Networks (Long, Shelhamer, Darrell, CVPR 2015), in two forms:

- 'vgg16-32s' | 'vgg16-16s' | 'vgg16-8s': the paper's nets on VGG16 (models/fcn_vgg.py);
- 'r50-d8' | 'r101-d8' | 'mv2-d8' | ...: mmsegmentation's FCN, the form of its FCN benchmark
  results: a dilated ResNet or MobileNetV2 (output stride 8) + FCNHead on stage 4 (two 3x3
  ConvModules of 512 channels, the input concatenated and fused by a third, dropout 0.1,
  classifier) and the auxiliary FCN head on stage 3 (configs/_base_/models/fcn_r50-d8.py).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from semseg_jax.models import fcn_vgg
from semseg_jax.models.backbones import dilated_backbone
from semseg_jax.models.encoder_decoder import EncoderDecoder
from semseg_jax.models.heads.fcn_head import FCNHead, auxiliary_fcn_head


def fcn(variant: str, num_classes: int, *, dtype: Any = jnp.float32, dropout_rate: float = 0.1,
        aux_head: bool = True, multi_grid: Sequence[int] = (), **overrides: Any) -> nn.Module:
  """FCN at `variant` (see the module docstring); `overrides` replace FCNHead fields (or the
  VGG FCN's fields)."""
  if variant.startswith('vgg16-'):
    if multi_grid:
      raise ValueError(f'FCN {variant!r} has no ResNet backbone: multi_grid must be ().')
    # The VGG nets have no auxiliary head; aux_head means "where the model has one".
    return fcn_vgg.fcn_vgg16(variant.removeprefix('vgg16-'), num_classes, dtype=dtype,
                             dropout_rate=dropout_rate, **overrides)
  backbone, _ = dilated_backbone('FCN', variant, multi_grid, dtype)
  head = FCNHead(num_classes, **{'in_index': 3, 'channels': 512, 'num_convs': 2,
                                 'concat_input': True, 'dropout_rate': dropout_rate,
                                 'dtype': dtype, **overrides})
  aux = (auxiliary_fcn_head(num_classes, dtype=dtype),) if aux_head else ()
  return EncoderDecoder(backbone, head, aux)
