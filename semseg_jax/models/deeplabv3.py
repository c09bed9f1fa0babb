"""DeepLabV3 (Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation",
arXiv:1706.05587), as mmsegmentation 1.x configures it (`configs/_base_/models/
deeplabv3_r50-d8.py`, `configs/deeplabv3/*r101-d16-mg124*`, `configs/mobilenet_v2/*deeplabv3_*`).

A dilated backbone (ResNetV1c-D8 / -D16 or MobileNetV2-D8), the ASPP head (`heads/
aspp_head.py`: image pooling, 1x1 and three dilated 3x3 branches of 512 channels, a 3x3 fusion
conv, dropout 0.1, classifier) on the last feature map, and an auxiliary FCN head (3x3 conv of
256 channels on ResNet stage 3 / MobileNetV2 layer 5, loss weight 0.4 in the configs), used in
training only. Logits come at the backbone's output stride.

ASPP rates follow the backbone's output stride unless `dilations=` is passed: (1, 6, 12, 18) at
16 (the paper, Sec. 3.3) and (1, 12, 24, 36) at 8 (doubled, the paper's and mmseg's D8 setting).
Multi-grid (Sec. 3.2) is the backbone's `multi_grid` unit rates, e.g. (1, 2, 4) for mmseg's
'r101-d16-mg124' (see backbones/resnet.py on how the rates are applied).

Differences from the paper, following mmseg: 512-wide branches (paper 256), a 3x3 fusion conv
(paper 1x1), Dropout2d before the classifier, the auxiliary head, and mmseg's V1c deep stem.

Variants: 'r<depth>[v1]-d<8|16>' (depth 18/34/50/101/152) and 'mv2-d<8|16>'; the benchmark
settings are 'r50-d8', 'r101-d8', 'r101-d16' (with multi_grid=(1, 2, 4)) and 'mv2-d8'.
"""

from typing import Any, Sequence

import jax.numpy as jnp

from semseg_jax.models.backbones import dilated_backbone
from semseg_jax.models.heads.aspp_head import ASPPHead, aspp_dilations
from semseg_jax.models.heads.fcn_head import auxiliary_fcn_head
from semseg_jax.models.layers import EncoderDecoder


def deeplabv3(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
              dropout_rate: float = 0.1, aux_head: bool = True, multi_grid: Sequence[int] = (),
              **overrides: Any) -> EncoderDecoder:
  """DeepLabV3 with `num_classes` outputs; `overrides` replace fields of the ASPPHead
  (channels, dilations, ...). `aux_head` adds the auxiliary FCN head on stage 3."""
  backbone, output_stride = dilated_backbone('DeepLabV3', variant, multi_grid, dtype)
  dilations = aspp_dilations('DeepLabV3', variant, output_stride, overrides)
  head = ASPPHead(**{'num_classes': num_classes, 'dropout_rate': dropout_rate, 'dtype': dtype,
                     **overrides, 'dilations': dilations})
  aux = (auxiliary_fcn_head(num_classes, dtype=dtype),) if aux_head else ()
  return EncoderDecoder(backbone, head, aux)
