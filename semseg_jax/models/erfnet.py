"""ERFNet (Romera, Alvarez, Bergasa, Arroyo, "ERFNet: Efficient Residual Factorized ConvNet for
Real-Time Semantic Segmentation", IEEE T-ITS 2018; Table 1, Fig. 2-3), following the authors'
PyTorch code (Eromera/erfnet_pytorch, train/erfnet.py).

Table 1, layer by layer (`layer1` .. `layer23` here, the parameters' names):
  1     downsampler 3 -> 16          9-16   non-bt-1D, 128, dilations 2, 4, 8, 16, 2, 4, 8, 16
  2     downsampler 16 -> 64         17     deconvolution (upsampler) 128 -> 64
  3-7   5 x non-bt-1D, 64            18-19  2 x non-bt-1D, 64
  8     downsampler 64 -> 128        20     deconvolution (upsampler) 64 -> 16
                                     21-22  2 x non-bt-1D, 16
                                     23     deconvolution 16 -> classes (2x2, stride 2)
Downsampler (ENet's initial block): a 3x3 stride-2 conv to (out - in) channels beside 2x2
stride-2 max pooling, concatenated (conv first), BN, ReLU. Non-bottleneck-1D (Fig. 2c): 3x1
conv, ReLU, 1x3 conv, BN, ReLU, 3x1 conv, ReLU, 1x3 conv, BN (the second pair dilated), channel
dropout (Dropout2d), then ReLU(input + branch). Upsampler: 3x3 stride-2 transposed conv
(output padding 1), BN, ReLU. Every conv has a bias; BN eps 1e-3. Dropout: 0.03 in layers 3-7
and 0.3 in layers 9-16 (`dropout_rate` sets the latter, the former is a tenth of it, as the
code's), none in the decoder. Logits at the input's resolution. Init: PyTorch's defaults
(weights and biases U(+-1/sqrt(fan_in)), fan_in of a transposed conv = kh * kw * C_out).

Variant 'mmseg': mmsegmentation 1.x's ERFNet (configs/_base_/models/erfnet_fcn.py), the form
of its Cityscapes weights: layers 1-22 as the backbone (16 channels at stride 2; element-wise
dropout 0.1 in every encoder non-bt-1D, none in the decoder's; a downsampler's pooled half
bilinearly resized to its conv's size where a side is odd) and its FCN head (one 3x3
ConvModule of 128 channels, dropout 0.1, 1x1 classifier; heads/fcn_head.py) instead of layer
23; logits at stride 2. Its parameter names map to mmseg's (convert/mmseg.py).

Departures:
- Any input size: the max pooling of a downsampler rounds up like its conv (ceil mode) where a
  side is odd, and the logits are cropped to the input (the reference needs multiples of 8).
- The encoder's own 1x1 classifier (the code's first training stage predicts at 1/8 from it)
  is not built: one network is trained at once (see configs/cityscapes_erfnet.py).
- The reference outputs a 20th class for void pixels (weight 0 in its loss); here void pixels
  carry the ignore label and have no output.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.heads.fcn_head import FCNHead
from semseg_jax.models.layers import (EncoderDecoder, batch_norm, conv_beside_max_pool,
                                      conv_transpose2d, torch_conv, torch_default_init)

ERFNET_VARIANTS = ('paper', 'mmseg')
BN_EPS = 1e-3
# Table 1's layers 9-16: the sequence of dilations (of the second 3x1 / 1x3 pair of each
# non-bt-1D) that runs twice.
DILATED_SEQUENCE = (2, 4, 8, 16)


class Downsampler(nn.Module):
  """3x3 stride-2 conv to `features - C_in` channels || 2x2 stride-2 max pooling, BN, ReLU.
  At an odd side the pooling rounds up (ceil mode), or with `resize_pooled` (mmseg) rounds down
  and is bilinearly resized to the conv's size."""
  features: int
  resize_pooled: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return nn.relu(conv_beside_max_pool(x, self.features, train, self.dtype, BN_EPS,
                                        self.resize_pooled))


class NonBottleneck1D(nn.Module):
  """Fig. 2c: two factorised 3x3 convs (3x1 then 1x3), the second dilated, dropout (of whole
  channels, or with `channel_dropout` False of elements, as mmseg), residual."""
  dilation: int = 1
  dropout_rate: float = 0.0
  channel_dropout: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c, d = x.shape[-1], self.dilation
    conv = lambda kernel, dilation, padding, name: torch_conv(
        c, c, kernel, dilation=dilation, padding=padding, use_bias=True, dtype=self.dtype,
        name=name)
    y = nn.relu(conv((3, 1), 1, (1, 0), 'conv3x1_1')(x))
    y = conv((1, 3), 1, (0, 1), 'conv1x3_1')(y)
    y = nn.relu(batch_norm(train, self.dtype, epsilon=BN_EPS, name='bn1')(y))
    y = nn.relu(conv((3, 1), (d, 1), (d, 0), 'conv3x1_2')(y))
    y = conv((1, 3), (1, d), (0, d), 'conv1x3_2')(y)
    y = batch_norm(train, self.dtype, epsilon=BN_EPS, name='bn2')(y)
    if self.dropout_rate:
      y = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2) if self.channel_dropout else (),
                     deterministic=not train)(y)
    return nn.relu(x + y)


class Upsampler(nn.Module):
  """3x3 stride-2 transposed conv (padding 1, output padding 1), BN, ReLU."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    init = torch_default_init(3 * 3 * self.features)  # PyTorch's fan_in of a transposed conv.
    x = conv_transpose2d(self.features, 3, 2, padding=1, output_padding=1, kernel_init=init,
                         bias_init=init, dtype=self.dtype, name='conv')(x)
    return nn.relu(batch_norm(train, self.dtype, epsilon=BN_EPS, name='bn')(x))


def erfnet_layers(x: jax.Array, train: bool, dropout_rates: tuple[float, float],
                  channel_dropout: bool, resize_pooled: bool, stage1_blocks: int,
                  dilated_sequences: int, dtype: Any) -> jax.Array:
  """Table 1's layers but the classifier, called inside a module's compact scope (so they are
  its `layer<i>`, numbered in order): 128 -> 16 channels at stride 2. `dropout_rates`: the
  64-channel and the dilated non-bt-1Ds' (the decoder's have none)."""
  names = (f'layer{i}' for i in range(1, 1000))
  x = Downsampler(16, resize_pooled, dtype, name=next(names))(x, train)
  x = Downsampler(64, resize_pooled, dtype, name=next(names))(x, train)
  for _ in range(stage1_blocks):
    x = NonBottleneck1D(1, dropout_rates[0], channel_dropout, dtype, name=next(names))(x, train)
  x = Downsampler(128, resize_pooled, dtype, name=next(names))(x, train)
  for dilation in DILATED_SEQUENCE * dilated_sequences:
    x = NonBottleneck1D(dilation, dropout_rates[1], channel_dropout, dtype, name=next(names))(
        x, train)
  for features in (64, 16):
    x = Upsampler(features, dtype, name=next(names))(x, train)
    for _ in range(2):
      x = NonBottleneck1D(dtype=dtype, name=next(names))(x, train)
  return x


class ERFNet(nn.Module):
  """ERFNet, Table 1; logits at the input's size. `stage1_blocks` (non-bt-1Ds at 64 channels)
  and `dilated_sequences` (how many times layers 9-12 run) keep the paper's 5 and 2 unless
  overridden (smaller for quick checks). Layers are numbered in order: Table 1's numbers at the
  paper's depths."""
  num_classes: int
  dropout_rate: float = 0.3
  stage1_blocks: int = 5
  dilated_sequences: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    h, w = images.shape[1:3]
    x = erfnet_layers(images, train, (self.dropout_rate / 10, self.dropout_rate), True, False,
                      self.stage1_blocks, self.dilated_sequences, self.dtype)
    classifier = 10 + self.stage1_blocks + len(DILATED_SEQUENCE) * self.dilated_sequences
    init = torch_default_init(2 * 2 * self.num_classes)
    logits = conv_transpose2d(self.num_classes, 2, 2, kernel_init=init, bias_init=init,
                              dtype=self.dtype, name=f'layer{classifier}')(x)
    return {'logits': logits[:, :h, :w].astype(jnp.float32), 'aux': []}


class MMSegERFNetBackbone(nn.Module):
  """mmseg's ERFNet backbone: layers 1-22, element-wise dropout in the encoder; returns
  [16 channels at stride 2]."""
  dropout_rate: float = 0.1
  stage1_blocks: int = 5
  dilated_sequences: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> list[jax.Array]:
    return [erfnet_layers(images, train, (self.dropout_rate,) * 2, False, True,
                          self.stage1_blocks, self.dilated_sequences, self.dtype)]


def erfnet(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
           dropout_rate: float | None = None, **overrides: Any) -> nn.Module:
  """ERFNet 'paper' (`dropout_rate`, default 0.3: the channel dropout of layers 9-16, a tenth
  of it in 3-7) or 'mmseg' (`dropout_rate`, default 0.1: every encoder block's; its head's
  is 0.1); `overrides` replace fields (stage1_blocks, dilated_sequences)."""
  if variant not in ERFNET_VARIANTS:
    raise ValueError(f'Unknown ERFNet variant {variant!r}; expected one of '
                     f'{sorted(ERFNET_VARIANTS)}.')
  if variant == 'paper':
    rate = 0.3 if dropout_rate is None else dropout_rate
    return ERFNet(num_classes, rate, dtype=dtype, **overrides)
  rate = 0.1 if dropout_rate is None else dropout_rate
  backbone = MMSegERFNetBackbone(rate, dtype=dtype, **overrides)
  head = FCNHead(num_classes, channels=128, num_convs=1, concat_input=False, dropout_rate=0.1,
                 dtype=dtype)
  return EncoderDecoder(backbone, head)
