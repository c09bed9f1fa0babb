"""FCN-32s, FCN-16s and FCN-8s on VGG16 (Long, Shelhamer, Darrell, "Fully Convolutional Networks
for Semantic Segmentation", CVPR 2015 / TPAMI 2016).

Reference implementation: the authors' Caffe nets (shelhamer/fcn.berkeleyvision.org,
voc-fcn{32,16,8}s/net.py, surgery.py), whose layers wkentaro/pytorch-fcn (torchfcn) ports one to
one. The VGG16 trunk (backbones/vgg.py) ends in fc6 (7x7 conv, 4096) and fc7 (1x1 conv, 4096),
each with ReLU and dropout 0.5. Then (C = num_classes):
  32s: score_fr(fc7) -> upscore (x32)
  16s: upscore2(score_fr(fc7)) + score_pool4(pool4) -> upscore16 (x16)
  8s:  upscore2(score_fr(fc7)) + score_pool4(pool4) -> upscore_pool4 (x2)
       + score_pool3(pool3) -> upscore8 (x8)
score_*: 1x1 convs to C with bias, zero-initialised (Caffe's default filler, torchfcn's zero_()).
upscore*: transposed convs C -> C without bias, kernel 2f, stride f, initialised to bilinear
interpolation (surgery.interp: the bilinear filter on the channel diagonal, zero elsewhere).
Skips are fused by addition. Logits come at the input resolution (output stride 1).

Parameters:
  backbone/{conv1_1 .. conv5_3, fc6, fc7}/{kernel, bias}        (VGG16, torchvision names)
  decode_head/{score_fr, score_pool4, score_pool3}/{kernel, bias}
  decode_head/{upscore | upscore2, upscore16 | upscore2, upscore_pool4, upscore8}/kernel
An upscore kernel is [2f, 2f, C_in, C_out] = the torch/Caffe weight [C_in, C_out, 2f, 2f]
transposed (2, 3, 0, 1). At 21 classes the nets hold exactly the parameters of the Caffe nets
(the same layers; padding changes no shape of a parameter): 136,152,917 (32s), 134,815,994
(16s), 134,489,759 (8s); see tests/test_vgg_fcn_segnet.py for the arithmetic.

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

Deviations from the reference:
- Same-size padding instead of pad 100 + crop (above); so the logits cover the whole image at
  any input size and the score maps are not computed on a 100-pixel border of padding.
- The reference nets train 32s, then 16s from 32s, then 8s from 16s, with every upscore layer
  frozen at bilinear (Caffe lr_mult 0; torchfcn leaves them out of the optimizer). Here the
  upscore kernels are ordinary parameters: freeze them with an lr multiplier of 0 on
  'decode_head/upscore' (the multiplier scales the whole update, weight decay included).
- torchfcn uses channel dropout (Dropout2d) after fc6/fc7; this follows Caffe's elementwise
  Dropout, whose nets the published numbers come from.
- `mc_dropout` (not in the reference) samples the fc6/fc7 dropout at inference: the Bayesian
  FCN of Kendall et al. (BMVC 2017, Table 5); see segnet.mc_dropout_probabilities.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from semseg_jax.models.backbones.vgg import FC_FEATURES, VGG16, VGG16_WIDTHS
from semseg_jax.models.layers import conv2d

FCN_VARIANTS = ('32s', '16s', '8s')


def bilinear_filter(size: int) -> np.ndarray:
  """The [size, size] bilinear interpolation kernel of FCN's surgery.upsample_filt: for an even
  size 2f, weights 1 - |t - (f - 1/2)| / f along each axis."""
  factor = (size + 1) // 2
  center = factor - 1 if size % 2 == 1 else factor - 0.5
  taps = 1.0 - np.abs(np.arange(size) - center) / factor
  return np.outer(taps, taps)


def bilinear_upsampling_init(key: jax.Array, shape: tuple[int, ...],
                             dtype: Any = jnp.float32) -> jax.Array:
  """A [k, k, C, C] transposed-conv kernel that upsamples each channel on its own, bilinearly."""
  del key
  size, _, c_in, c_out = shape
  if c_in != c_out:
    raise ValueError(f'Bilinear upsampling maps C channels to C; got {c_in} -> {c_out}.')
  return jnp.asarray(bilinear_filter(size)[:, :, None, None] * np.eye(c_in), dtype)


class UpsampleConvTranspose(nn.Module):
  """PyTorch's ConvTranspose2d(C, C, 2f, stride=f, padding=f/2, bias=False), bilinear at init:
  [N, h, w, C] -> [N, f*h, f*w, C], then cropped to `output_hw` (at most f*h x f*w) at the
  bottom and right."""
  factor: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, output_hw: Sequence[int]) -> jax.Array:
    f, c = self.factor, x.shape[-1]
    if f % 2 or any(size > f * n for size, n in zip(output_hw, x.shape[1:3])):
      raise ValueError(f'Upsampling x{f} of {x.shape[1:3]} to {tuple(output_hw)}: the factor '
                       'must be even and the output at most factor x the input.')
    kernel = self.param('kernel', bilinear_upsampling_init, (2 * f, 2 * f, c, c), jnp.float32)
    # lax's transpose_kernel expects the kernel of the forward conv (HW, out, in); the torch
    # padding p = f/2 becomes 2f - 1 - p on each side of the stride-dilated input.
    pad = 2 * f - 1 - f // 2
    y = jax.lax.conv_transpose(x.astype(self.dtype), kernel.astype(self.dtype).swapaxes(2, 3),
                               strides=(f, f), padding=((pad, pad), (pad, pad)),
                               dimension_numbers=('NHWC', 'HWIO', 'NHWC'), transpose_kernel=True)
    return y[:, :output_hw[0], :output_hw[1]]


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
      return UpsampleConvTranspose(32, self.dtype, name='upscore')(score, output_hw)
    score = (UpsampleConvTranspose(2, self.dtype, name='upscore2')(score, pool4.shape[1:3])
             + score_conv(self.num_classes, self.dtype, 'score_pool4')(pool4))
    if self.variant == '16s':
      return UpsampleConvTranspose(16, self.dtype, name='upscore16')(score, output_hw)
    score = (UpsampleConvTranspose(2, self.dtype, name='upscore_pool4')(score, pool3.shape[1:3])
             + score_conv(self.num_classes, self.dtype, 'score_pool3')(pool3))
    return UpsampleConvTranspose(8, self.dtype, name='upscore8')(score, output_hw)


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
