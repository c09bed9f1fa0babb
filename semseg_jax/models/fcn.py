"""FCN, Fully Convolutional Networks (Long, Shelhamer, Darrell, "Fully Convolutional Networks
for Semantic Segmentation", CVPR 2015 / TPAMI 2016), in the two forms the zoo benchmarks:

- 'vgg16-32s' | 'vgg16-16s' | 'vgg16-8s': the paper's nets on VGG16 (`FCN` below), following
  the authors' Caffe nets (shelhamer/fcn.berkeleyvision.org, voc-fcn{32,16,8}s/net.py,
  surgery.py), whose layers wkentaro/pytorch-fcn (torchfcn) ports one to one;
- 'r50-d8' | 'r101-d8' | 'mv2-d8' | ...: mmsegmentation 1.x's FCN, the form of its FCN benchmark
  results (configs/_base_/models/fcn_r50-d8.py): a dilated ResNet or MobileNetV2 (output stride
  8) + FCNHead on stage 4 (two 3x3 ConvModules of 512 channels, the input concatenated and fused
  by a third, dropout 0.1, classifier; heads/fcn_head.py) and the auxiliary FCN head on stage 3.

The VGG nets: the VGG16 trunk (backbones/vgg.py) ends in fc6 (7x7 conv, 4096) and fc7 (1x1
conv, 4096), each with ReLU and dropout 0.5. Then (C = num_classes):
  32s: score_fr(fc7) -> upscore (x32)
  16s: upscore2(score_fr(fc7)) + score_pool4(pool4) -> upscore16 (x16)
  8s:  upscore2(score_fr(fc7)) + score_pool4(pool4) -> upscore_pool4 (x2)
       + score_pool3(pool3) -> upscore8 (x8)
score_*: 1x1 convs to C with bias, zero-initialised (Caffe's default filler, torchfcn's zero_()).
upscore*: transposed convs C -> C without bias, kernel 2f, stride f, initialised to bilinear
interpolation (surgery.interp; layers.BilinearConvTranspose). Skips are fused by addition.
Logits come at the input resolution (output stride 1). At 21 classes the nets hold exactly the
parameters of the Caffe nets (the same layers; padding changes no shape of a parameter):
136,152,917 (32s), 134,815,994 (16s), 134,489,759 (8s).

Alignment (the reference pads conv1_1 by 100, runs fc6 unpadded and crops each skip and the
output at offsets that `caffe.coord_map` computes). Here every conv keeps its map's size and
pooling rounds up, so pixel i of the stride-s map covers input pixels [s*i, s*i + s) and its
centre is at s*i + (s - 1) / 2 for every s; the maps of consecutive strides tile the same grid
from the top-left corner. An upsampling by f is PyTorch's ConvTranspose2d(k=2f, stride=f,
padding=f/2): its full output is cropped by f/2 at the start, so the bilinear kernel's centre
(f - 1/2) sits on the coarse pixel's centre and the result is exactly F.interpolate(bilinear,
align_corners=False) by f, except that it fades to zero over the outermost half coarse pixel
(zero padding, as in the reference). That gives f*h x f*w; its extra rows/columns at the bottom
and right (where the coarse map was rounded up) are cropped to the skip's size (16s, 8s) or to
the image size (final). The skips thus line up pixel for pixel with the map they are added to,
as Caffe's crops do for its own geometry (its 32s output crop of 19 is the same centring).

Deviations of the VGG nets from the reference:
- Same-size padding instead of pad 100 + crop (above); so the logits cover the whole image at
  any input size and the score maps are not computed on a 100-pixel border of padding.
- The reference nets train 32s, then 16s from 32s, then 8s from 16s, with every upscore layer
  frozen at bilinear (Caffe lr_mult 0; torchfcn leaves them out of the optimizer). Here the
  upscore kernels are ordinary parameters: freeze them with an lr multiplier of 0 on
  'decode_head/upscore' (the multiplier scales the whole update, weight decay included).
- torchfcn uses channel dropout (Dropout2d) after fc6/fc7; this follows Caffe's elementwise
  Dropout, whose nets the published numbers come from.
- `mc_dropout` (not in the reference) samples the fc6/fc7 dropout at inference: the Bayesian
  FCN of Kendall et al. (BMVC 2017, Table 5); see evaluators/mc_dropout.py.
The mmseg form departs from mmseg in nothing but the shared backbones' notes (backbones/).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones import dilated_backbone
from semseg_jax.models.backbones.vgg import FC_FEATURES, VGG16, VGG16_WIDTHS
from semseg_jax.models.heads.fcn_head import FCNHead, auxiliary_fcn_head
from semseg_jax.models.layers import BilinearConvTranspose, EncoderDecoder, conv2d

FCN_VARIANTS = ('32s', '16s', '8s')


def score_conv(num_classes: int, dtype: Any, name: str) -> nn.Conv:
  """A class-score layer: 1x1 conv with bias, zero-initialised."""
  return conv2d(num_classes, 1, use_bias=True, kernel_init=nn.initializers.zeros, dtype=dtype,
                name=name)


class FCNSkipHead(nn.Module):
  """Scores fc7 (and pool4, pool3 for 16s / 8s), fuses them coarse to fine and upsamples to
  `output_hw` (see the module docstring for the alignment)."""
  num_classes: int
  variant: str = '8s'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, fc7: jax.Array, pool4: jax.Array, pool3: jax.Array,
               output_hw: Sequence[int]) -> jax.Array:
    if self.variant not in FCN_VARIANTS:
      raise ValueError(f'FCN variant {self.variant!r}; expected one of {FCN_VARIANTS}.')
    score = score_conv(self.num_classes, self.dtype, 'score_fr')(fc7)
    if self.variant == '32s':
      return BilinearConvTranspose(32, self.dtype, name='upscore')(score, output_hw)
    score = (BilinearConvTranspose(2, self.dtype, name='upscore2')(score, pool4.shape[1:3])
             + score_conv(self.num_classes, self.dtype, 'score_pool4')(pool4))
    if self.variant == '16s':
      return BilinearConvTranspose(16, self.dtype, name='upscore16')(score, output_hw)
    score = (BilinearConvTranspose(2, self.dtype, name='upscore_pool4')(score, pool3.shape[1:3])
             + score_conv(self.num_classes, self.dtype, 'score_pool3')(pool3))
    return BilinearConvTranspose(8, self.dtype, name='upscore8')(score, output_hw)


class FCN(nn.Module):
  """FCN-32s / 16s / 8s on VGG16: {'logits': [N, H, W, C] at the input size, 'aux': []}."""
  num_classes: int
  variant: str = '8s'
  widths: Sequence[int] = VGG16_WIDTHS
  fc_features: int = FC_FEATURES
  dropout_rate: float = 0.5
  mc_dropout: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, Any]:
    features = VGG16(widths=self.widths, fully_conv=True, fc_features=self.fc_features,
                     dropout_rate=self.dropout_rate, mc_dropout=self.mc_dropout,
                     dtype=self.dtype, name='backbone')(images, train)
    _, _, pool3, pool4, _ = features.pools
    logits = FCNSkipHead(self.num_classes, self.variant, self.dtype, name='decode_head')(
        features.fc7, pool4, pool3, images.shape[1:3])
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def fcn_vgg16(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
              dropout_rate: float = 0.5, **overrides: Any) -> FCN:
  """FCN-`variant` ('32s', '16s' or '8s') on VGG16 with `num_classes` outputs; `overrides`
  replace FCN fields (e.g. widths, fc_features to shrink it)."""
  if variant not in FCN_VARIANTS:
    raise ValueError(f'Unknown FCN-VGG16 variant {variant!r}; expected one of {FCN_VARIANTS}.')
  return FCN(num_classes=num_classes, variant=variant, dropout_rate=dropout_rate, dtype=dtype,
             **overrides)


def fcn(variant: str, num_classes: int, *, dtype: Any = jnp.float32, dropout_rate: float = 0.1,
        aux_head: bool = True, multi_grid: Sequence[int] = (), **overrides: Any) -> nn.Module:
  """FCN at `variant` (see the module docstring); `overrides` replace FCNHead fields (or the
  VGG FCN's fields)."""
  if variant.startswith('vgg16-'):
    if multi_grid:
      raise ValueError(f'FCN {variant!r} has no ResNet backbone: multi_grid must be ().')
    # The VGG nets have no auxiliary head; aux_head means "where the model has one".
    return fcn_vgg16(variant.removeprefix('vgg16-'), num_classes, dtype=dtype,
                     dropout_rate=dropout_rate, **overrides)
  backbone, _ = dilated_backbone('FCN', variant, multi_grid, dtype)
  head = FCNHead(num_classes, **{'in_index': 3, 'channels': 512, 'num_convs': 2,
                                 'concat_input': True, 'dropout_rate': dropout_rate,
                                 'dtype': dtype, **overrides})
  aux = (auxiliary_fcn_head(num_classes, dtype=dtype),) if aux_head else ()
  return EncoderDecoder(backbone, head, aux)
