"""SegNet (Badrinarayanan, Kendall, Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", TPAMI 2017) and Bayesian SegNet (Kendall, Badrinarayanan,
Cipolla, "Bayesian SegNet: Model Uncertainty in Deep Convolutional Encoder-Decoder Architectures
for Scene Understanding", BMVC 2017).

Reference implementation: the authors' Caffe nets, alexgkendall/SegNet-Tutorial
Models/segnet_train.prototxt and Models/bayesian_segnet_{train,inference}.prototxt.
- Encoder: the 13 convs of VGG16 with BatchNorm (backbones/vgg.py), each conv -> BN -> ReLU;
  each block ends in 2x2 max pooling at stride 2 that keeps its argmax indices (Caffe's
  ceil-rounded pooling; odd sizes are padded, see layers.max_pool_2x2_with_indices).
- Decoder: mirrors it. Decoder block b (5 down to 1) first max-unpools with encoder pool b's
  indices back to the size of encoder block b's maps (Caffe's Upsample with upsample_h/w), then
  runs as many 3x3 conv -> BN -> ReLU as encoder block b has convs: all at block b's width
  except the last, which goes to the width of block b - 1 (conv4_1_D: 512 -> 256). The last
  conv of block 1 (conv1_1_D) maps 64 channels to the classes, with no BN and no ReLU: its
  output is the logits. No fully connected layers.
- Bayesian SegNet ("central" encoder-decoder, Sec. 3.1 of the BMVC paper; the prototxt's
  encdrop3..5 and decdrop5..3): dropout p = 0.5 (elementwise, Caffe's Dropout) on the outputs
  of pool3, pool4 and pool5 (after taking their indices) and after the last ReLU of decoder
  blocks 5, 4 and 3. With `mc_dropout` these layers sample at inference too (the inference
  prototxt's sample_weights_test) while BatchNorm uses its running averages (bn_mode:
  INFERENCE); `mc_dropout_probabilities` turns such samples into the prediction and the model
  uncertainty.
- All convs have biases; Caffe initialises them MSRA (He normal, fan_in) with zero biases, as
  here; BatchNorm gamma 1.

Parameter names are the Caffe layers' (`conv{b}_{j}_D_bn` as `bn{b}_{j}_D`).

29,449,355 parameters at 11 classes (the paper: 29.5M; its trainable encoder, 14.7M, is our
backbone's 14,723,136); Bayesian SegNet has the same.

Deviations from the reference:
- BatchNorm is PyTorch's (momentum 0.1, eps 1e-5, running averages kept during training); the
  SegNet Caffe fork's BN layer uses batch statistics in training and statistics recomputed over
  the training set afterwards (Scripts/compute_bn_statistics.py), and initialises beta to 0.001
  (here 0).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.backbones.vgg import VGG16, VGG16_DEPTHS, VGG16_WIDTHS, VGGFeatures
from semseg_jax.models.layers import batch_norm, conv2d, max_unpool_2x2

# variant -> (encoder blocks whose pooled output is dropped out, decoder blocks followed by
# dropout)
SEGNET_VARIANTS: dict[str, dict[str, tuple[int, ...]]] = {
    'vgg16': dict(encoder_dropout=(), decoder_dropout=()),
    'bayesian': dict(encoder_dropout=(3, 4, 5), decoder_dropout=(5, 4, 3)),
}

# Caffe's "msra" filler: N(0, 2 / fan_in).
msra_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


class SegNetDecoder(nn.Module):
  """Unpools with the encoder's indices and convolves, block 5 down to block 1; returns logits
  at the input size."""
  num_classes: int
  widths: Sequence[int] = VGG16_WIDTHS
  dropout_blocks: Sequence[int] = ()
  dropout_rate: float = 0.5
  mc_dropout: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, encoded: VGGFeatures, image_hw: Sequence[int],
               train: bool = False) -> jax.Array:
    # Encoder block b's maps have the size of pool b-1's output (block 1: the image's).
    block_hw = [tuple(image_hw)] + [p.shape[1:3] for p in encoded.pools[:-1]]
    x = encoded.pools[-1]
    for b in range(len(VGG16_DEPTHS), 0, -1):
      x = max_unpool_2x2(x, encoded.indices[b - 1], block_hw[b - 1])
      for j in range(VGG16_DEPTHS[b - 1], 0, -1):
        if j > 1:
          width = self.widths[b - 1]
        else:
          width = self.widths[b - 2] if b > 1 else self.num_classes
        x = conv2d(width, 3, use_bias=True, kernel_init=msra_init, dtype=self.dtype,
                   name=f'conv{b}_{j}_D')(x)
        if b > 1 or j > 1:  # conv1_1_D gives the logits.
          x = nn.relu(batch_norm(train, self.dtype, name=f'bn{b}_{j}_D')(x))
      if b in self.dropout_blocks:
        x = nn.Dropout(self.dropout_rate, deterministic=not (train or self.mc_dropout))(x)
    return x


class SegNet(nn.Module):
  """SegNet / Bayesian SegNet: {'logits': [N, H, W, C] at the input size, 'aux': []}."""
  num_classes: int
  widths: Sequence[int] = VGG16_WIDTHS
  encoder_dropout: Sequence[int] = ()
  decoder_dropout: Sequence[int] = ()
  dropout_rate: float = 0.5
  mc_dropout: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, Any]:
    encoded = VGG16(batch_norm=True, widths=self.widths, with_indices=True,
                    pool_dropout=self.encoder_dropout, dropout_rate=self.dropout_rate,
                    mc_dropout=self.mc_dropout, kernel_init=msra_init, dtype=self.dtype,
                    name='backbone')(images, train)
    logits = SegNetDecoder(self.num_classes, self.widths, self.decoder_dropout,
                           self.dropout_rate, self.mc_dropout, self.dtype, name='decode_head')(
                               encoded, images.shape[1:3], train)
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def segnet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
           dropout_rate: float = 0.5, **overrides: Any) -> SegNet:
  """SegNet ('vgg16') or Bayesian SegNet ('bayesian') with `num_classes` outputs; `overrides`
  replace SegNet fields (e.g. widths to shrink it). dropout_rate is that of Bayesian SegNet's
  dropout layers (SegNet has none)."""
  if variant not in SEGNET_VARIANTS:
    raise ValueError(f'Unknown SegNet variant {variant!r}; expected one of '
                     f'{sorted(SEGNET_VARIANTS)}.')
  return SegNet(num_classes=num_classes, dropout_rate=dropout_rate, dtype=dtype,
                **{**SEGNET_VARIANTS[variant], **overrides})
