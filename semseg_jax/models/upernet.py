"""UPerNet (Xiao, Liu, Zhou, Jiang, Sun, "Unified Perceptual Parsing for Scene Understanding",
ECCV 2018) in mmsegmentation 1.x's form, the form of its UPerNet benchmark results
(configs/_base_/models/upernet_r50.py):

  backbone: ResNetV1c (deep stem) at output stride 32, strides (1, 2, 2, 2), no dilation;
  decode_head: UPerHead (heads/uper_head.py) on all four stages: pyramid pooling (bins 1, 2, 3,
    6) on stage 4, FPN laterals on stages 1-3, fusion at stride 4, 512 channels, dropout 0.1;
  auxiliary_heads_0: the FCN head on stage 3 (one 3x3 ConvModule of 256 channels, dropout 0.1;
    loss weight 0.4 in the configs).

Logits at stride 4 (stage 1's size: ceil(H / 4) x ceil(W / 4) by PyTorch's conv arithmetic).

Variants: 'r<depth>' (ResNetV1c, mmseg's backbone; 'r50' and 'r101' are its benchmarks) or
'r<depth>v1' (torchvision's 7x7 stem), depth in 18, 34, 50, 101, 152. The authors' own code
(CSAILVision/semantic-segmentation-pytorch) differs in details (e.g. a 64-64-128 deep stem);
the benchmark numbers compared here come from mmseg, which this follows.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from semseg_jax.models.backbones.resnet import stride32_resnet_from_variant
from semseg_jax.models.heads.fcn_head import auxiliary_fcn_head
from semseg_jax.models.heads.uper_head import UPerHead
from semseg_jax.models.layers import EncoderDecoder


def upernet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
            dropout_rate: float = 0.1, aux_head: bool = True, multi_grid: Sequence[int] = (),
            **overrides: Any) -> nn.Module:
  """UPerNet on the ResNet that `variant` names ('r50', 'r101', 'r50v1', ...; output stride
  32); `multi_grid` gives stage 4's blocks those dilation rates (none in mmseg's UPerNet);
  `overrides` replace UPerHead fields (e.g. channels=16)."""
  backbone = stride32_resnet_from_variant('UPerNet', variant, multi_grid, dtype)
  head = UPerHead(num_classes, **{'channels': 512, 'pool_scales': (1, 2, 3, 6),
                                  'dropout_rate': dropout_rate, 'dtype': dtype, **overrides})
  aux = (auxiliary_fcn_head(num_classes, dtype=dtype),) if aux_head else ()
  return EncoderDecoder(backbone, head, aux)
