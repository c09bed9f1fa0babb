"""DeepLabV3+ (Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation", ECCV 2018), as mmsegmentation 1.x configures it (`configs/_base_/models/
deeplabv3plus_r50-d8.py`, `configs/mobilenet_v2/*deeplabv3plus*`).

Encoder: a dilated backbone (ResNetV1c-D8 / -D16 or MobileNetV2-D8) and the ASPP whose dilated
branches are depthwise-separable (`heads/aspp_head.py`, DepthwiseSeparableASPPHead; 512
channels, rates chosen from the output stride by `aspp_dilations`). Decoder (Sec. 3.1, Fig. 2):
the stride-4 backbone feature (ResNet stage 1, 256 ch; MobileNetV2 layer 2, 24 ch) reduced to
48 channels, concatenated with the upsampled encoder output, two depthwise-separable 3x3
ConvModules of 512 channels, dropout 0.1 and the classifier: logits at stride 4. An auxiliary
FCN head (3x3 conv of 256 channels on ResNet stage 3 / MobileNetV2 layer 5, stride = the
output stride; loss weight 0.4 in the configs) is used in training only.

Differences from the paper, following mmseg: 512-wide ASPP and decoder (paper 256), a 3x3
ASPP fusion conv (paper 1x1), output stride 8 in training (paper's main setting 16), a ResNet
(V1c deep stem) or MobileNetV2 rather than the modified Xception, Dropout2d before the
classifier and the auxiliary head.

Variants: 'r<depth>[v1]-d<8|16>' (depth 18/34/50/101/152) and 'mv2-d<8|16>'; the benchmark
settings are 'r50-d8', 'r101-d8' and 'mv2-d8'.
"""

from typing import Any, Sequence

import jax.numpy as jnp

from semseg_jax.models.backbones import dilated_backbone
from semseg_jax.models.heads.aspp_head import DepthwiseSeparableASPPHead, aspp_dilations
from semseg_jax.models.heads.fcn_head import auxiliary_fcn_head
from semseg_jax.models.layers import EncoderDecoder


def deeplabv3plus(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
                  dropout_rate: float = 0.1, aux_head: bool = True,
                  multi_grid: Sequence[int] = (), **overrides: Any) -> EncoderDecoder:
  """DeepLabV3+ with `num_classes` outputs; `overrides` replace fields of the
  DepthwiseSeparableASPPHead (channels, c1_channels, dilations, ...). `aux_head` adds the
  auxiliary FCN head on stage 3."""
  backbone, output_stride = dilated_backbone('DeepLabV3+', variant, multi_grid, dtype)
  dilations = aspp_dilations('DeepLabV3+', variant, output_stride, overrides)
  head = DepthwiseSeparableASPPHead(**{'num_classes': num_classes, 'dropout_rate': dropout_rate,
                                       'dtype': dtype, **overrides, 'dilations': dilations})
  aux = (auxiliary_fcn_head(num_classes, dtype=dtype),) if aux_head else ()
  return EncoderDecoder(backbone, head, aux)
