"""DRN for semantic segmentation (Yu, Koltun, Funkhouser, "Dilated Residual Networks", CVPR
2017; Sec. 5), the authors' DRNSeg (fyu/drn, segment.py): a DRN-C / DRN-D trunk
(backbones/drn.py) without its classifier, a 1x1 conv with bias to the classes (`seg`; init
N(0, 2 / C), bias 0), and the frozen bilinear deconvolution x8 (`up`: the code's default,
ConvTranspose2d(C, C, 16, stride 8, padding 4, groups=C) fixed to bilinear weights, not
trained) to the input's size. The code's LogSoftmax is the loss's here.

Variants: c26, c42, c58, d22, d38, d54, d105 (the paper's DRN-C-26/42 and the code's DRN-D
simplifications; Table 1 and the README's Cityscapes results). Any input size: the upsampled
logits are cropped to the input (the reference needs multiples of 8).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.drn import DRN, DRN_VARIANTS, WIDTHS
from semseg_jax.models.layers import conv2d, fixed_bilinear_upsampling


class DRNSeg(nn.Module):
  """DRN trunk (`backbone`), `seg` classifier, frozen bilinear x8 upsampling."""
  num_classes: int
  variant: str = 'd22'
  widths: tuple[int, ...] = WIDTHS
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    x = DRN(self.variant, tuple(self.widths), self.dtype, name='backbone')(images, train)[-1]
    x = conv2d(self.num_classes, 1, use_bias=True, dtype=self.dtype, name='seg')(x)
    logits = fixed_bilinear_upsampling(x, 8, images.shape[1:3])
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def drn(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
        **overrides: Any) -> DRNSeg:
  """DRNSeg on DRN-`variant` (c26, c42, c58, d22, d38, d54, d105); `overrides` replace the
  trunk's widths."""
  if variant not in DRN_VARIANTS:
    raise ValueError(f'Unknown DRN variant {variant!r}; expected one of {sorted(DRN_VARIANTS)}.')
  return DRNSeg(num_classes, variant, dtype=dtype, **overrides)
