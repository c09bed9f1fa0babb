"""PSPNet (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017), as mmsegmentation 1.x
configures it (`configs/_base_/models/pspnet_r50-d8.py`, `configs/mobilenet_v2/*pspnet*`).

A dilated backbone at output stride 8 (ResNetV1c-50/101-D8: deep stem, stages 3 and 4 dilated
2 and 4; or MobileNetV2-D8), the pyramid pooling head (`heads/psp_head.py`: bins 1, 2, 3, 6,
512 channels) on the last feature map, and an auxiliary FCN head (one 3x3 conv of 256 channels,
dropout 0.1, loss weight 0.4 in the configs) on ResNet stage 3 / MobileNetV2 layer 5, used in
training only. Logits come at the backbone's output stride (the loss resizes them).

The paper's deep-supervision loss (Sec. 3.3) is this auxiliary head on res4b22 with weight 0.4.
Its released models' ResNets have a deep (three 3x3 convs) stem, as mmseg's V1c; see
`heads/psp_head.py` for the head's differences from the paper.

Variants: 'r<depth>[v1]-d<8|16|32>' (depth 18/34/50/101/152; 'v1': torchvision stem) and
'mv2-d<8|16|32>'; the benchmark settings are 'r50-d8', 'r101-d8' and 'mv2-d8'.
"""

from typing import Any, Sequence

import jax.numpy as jnp

from semseg_jax.models.backbones import dilated_backbone
from semseg_jax.models.heads.fcn_head import auxiliary_fcn_head
from semseg_jax.models.heads.psp_head import PSPHead
from semseg_jax.models.layers import EncoderDecoder


def pspnet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
           dropout_rate: float = 0.1, aux_head: bool = True, multi_grid: Sequence[int] = (),
           **overrides: Any) -> EncoderDecoder:
  """PSPNet with `num_classes` outputs; `overrides` replace fields of the PSPHead (channels,
  pool_scales, ...). `aux_head` adds the auxiliary FCN head on stage 3."""
  backbone, _ = dilated_backbone('PSPNet', variant, multi_grid, dtype)
  head = PSPHead(**{'num_classes': num_classes, 'dropout_rate': dropout_rate, 'dtype': dtype,
                    **overrides})
  aux = (auxiliary_fcn_head(num_classes, dtype=dtype),) if aux_head else ()
  return EncoderDecoder(backbone, head, aux)
