"""RegSeg (Gao, "Rethinking Dilated Convolution for Real-time Semantic Segmentation",
arXiv:2111.09957, 2021/2023; Sec. 3: the D block, the backbone, the decoder).

Reference implementation: the official code, RolandGao/RegSeg (`model.py`: `RegSeg`;
`blocks.py`: `ConvBnAct`, `SEModule`, `Shortcut`, `DilatedConv`, `DBlock`, `RegSegBody`,
`RegSegBody2`, `Exp2_Decoder4/14/26/29`), which the paper's numbers come from. "RegSeg" in the
paper is `exp48_decoder26`; `exp53_decoder29` is the larger model of the repository's README.

  stem      3x3/2 conv 3 -> 32, BN, ReLU                                           (1/2)
  stage4    D block 32 -> 48, stride 2 (exp53: + one 48 -> 48 block)               (1/4)
  stage8    D block 48 -> 128, stride 2, then 2 blocks 128 -> 128 (exp53: 120, 5)   (1/8)
  stage16   D block 128 -> 256, stride 2, then one block per entry of the dilation list: all
            256 -> 256 except the last, 256 -> 320 (exp53: 336, 384).              (1/16)
            exp48's list: (1), (1, 2), 4 x (1, 4), 7 x (1, 14), so 14 blocks in stage16.
  decoder26 1x1 ConvBnAct heads: 1/16 -> 128, 1/8 -> 128, 1/4 -> 8; upsample 1/16 to 1/8 and
            add; 3x3 ConvBnAct 128 -> 64; upsample to 1/4, concat [1/8 path, 1/4 head];
            3x3 ConvBnAct 72 -> 64; 1x1 classifier with bias                       (1/4)

D block (Fig. 4 of the paper, `DBlock`): 1x1 conv in -> out, BN, ReLU; 3x3 group conv (group
width 16, stride 1 or 2) whose channels are split evenly between the dilations of its list,
one grouped conv per dilation (padding = dilation), outputs concatenated; BN, ReLU; SE (global
average, 1x1 conv with bias to in // 4, ReLU, 1x1 conv with bias back, sigmoid, scale; the
squeeze width is a quarter of the block's INPUT width, as the code has it); 1x1 conv, BN; plus
the shortcut; ReLU. Shortcut: identity, or 1x1 conv + BN when the width changes, preceded by a
2x2/2 average pool (ceil_mode, partial windows average their valid pixels) when striding.

Decoders: decoder26/29 as above (decoder29: heads 256, 256, 16, convs 128, 128); decoder14
(sum, Table "sum+3x3 conv"): heads 128, 128, add, 3x3 ConvBnAct 128, classifier (1/8);
decoder4 (concat): heads 1/16 -> 128, 1/8 -> 32, concat [1/8, 1/16], 3x3 ConvBnAct 128,
classifier (1/8). Upsampling is bilinear with align_corners=False throughout.

Parameter names are the reference's state_dict names (Sequential indices as `_i`; a
single-block stage4, `body.stage4.*` there, is `body/stage4_0`).

Parameters: 3,333,716 + 65 * num_classes for exp48_decoder26 (3,334,951 at 19 classes, the
paper's 3.34M; equal to the official PyTorch module). BatchNorm: PyTorch defaults (momentum
0.1, eps 1e-5). Init: PyTorch's defaults, as the reference sets none: conv weights and biases
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BN scale 1, bias 0.

Deviations from the reference:
  * The logits are returned at 1/4 of the input (decoder4/14: 1/8), ceil-rounded as the strided
    convs round; `RegSeg.forward` resizes them bilinearly to the input size, which here the loss
    and the evaluator do (to the label size, equal to the input size in the reference's recipe).
  * No auxiliary heads and no dropout exist in the reference, so `aux` is always empty.
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import (avg_pool, batch_norm, bilinear_resize, global_avg_pool,
                                      torch_conv)

# The stage16 dilation lists after its strided block (`RegSeg.__init__` in model.py).
EXP48_DILATIONS: tuple[tuple[int, ...], ...] = (
    ((1,), (1, 2)) + 4 * ((1, 4),) + 7 * ((1, 14),))

# Body: stage16 dilations, widths (stem, 1/4, 1/8, 1/16, last block), blocks at 1/4 and 1/8,
# group width (`RegSegBody` for exp48, `RegSegBody2` for exp53).
BODIES: dict[str, dict[str, Any]] = {
    'exp48': dict(stage16_dilations=EXP48_DILATIONS, widths=(32, 48, 128, 256, 320),
                  depths=(1, 3), group_width=16),
    'exp53': dict(stage16_dilations=EXP48_DILATIONS, widths=(32, 48, 120, 336, 384),
                  depths=(2, 6), group_width=24),
}
# Decoder: kind and widths (decoder26/29: head16 = head8, head4, conv8, conv4; decoder4/14:
# head16, head8, conv).
DECODERS: dict[str, dict[str, Any]] = {
    'decoder26': dict(decoder='decoder26', decoder_widths=(128, 8, 64, 64)),
    'decoder29': dict(decoder='decoder26', decoder_widths=(256, 16, 128, 128)),
    'decoder14': dict(decoder='sum', decoder_widths=(128, 128, 128)),
    'decoder4': dict(decoder='concat', decoder_widths=(128, 32, 128)),
}
REGSEG_VARIANTS = tuple(f'{body}_{decoder}' for body in BODIES for decoder in DECODERS)


class ConvBnAct(nn.Module):
  """The reference's ConvBnAct: conv (no bias, PyTorch init) -> BatchNorm -> ReLU."""
  features: int
  kernel_size: int = 1
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = torch_conv(self.features, x.shape[-1], self.kernel_size, self.stride, dtype=self.dtype,
                   name='conv')(x)
    return nn.relu(batch_norm(train, self.dtype, name='bn')(x))


class SqueezeExcite(nn.Module):
  """SE: global average -> 1x1 conv (bias) to `squeeze_features` -> ReLU -> 1x1 conv (bias)
  back -> sigmoid, scaling the channels of the input."""
  squeeze_features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    width = x.shape[-1]
    y = global_avg_pool(x)
    y = nn.relu(torch_conv(self.squeeze_features, width, use_bias=True, dtype=self.dtype,
                           name='conv1')(y))
    y = nn.sigmoid(torch_conv(width, self.squeeze_features, use_bias=True, dtype=self.dtype,
                              name='conv2')(y))
    return x * y


class DilatedGroupConv(nn.Module):
  """The reference's DilatedConv: the channels are split into len(dilations) equal chunks, each
  convolved by its own 3x3 group conv (group width `group_width`) at its dilation; the outputs
  are concatenated in order."""
  dilations: Sequence[int]
  group_width: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chunks = jnp.split(x, len(self.dilations), axis=-1)
    width = chunks[0].shape[-1]
    return jnp.concatenate([
        torch_conv(width, width, 3, self.stride, dilation, groups=width // self.group_width,
                   dtype=self.dtype, name=f'convs_{i}')(chunk)
        for i, (dilation, chunk) in enumerate(zip(self.dilations, chunks))], axis=-1)


class Shortcut(nn.Module):
  """The projection shortcut: 2x2/2 average pool (ceil mode) when striding, 1x1 conv, BN."""
  features: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.stride != 1:
      x = avg_pool(x, 2, 2, ceil_mode=True)
    x = torch_conv(self.features, x.shape[-1], dtype=self.dtype, name='conv')(x)
    return batch_norm(train, self.dtype, name='bn')(x)


class DBlock(nn.Module):
  """The D block: 1x1 conv-BN-ReLU, dilated 3x3 group conv-BN-ReLU (the stride is here), SE,
  1x1 conv-BN, add the shortcut, ReLU."""
  features: int
  dilations: Sequence[int]
  group_width: int = 16
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    in_features, width = x.shape[-1], self.features
    shortcut = x
    if self.stride != 1 or in_features != width:
      shortcut = Shortcut(width, self.stride, self.dtype, name='shortcut')(x, train)
    y = torch_conv(width, in_features, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(batch_norm(train, self.dtype, name='bn1')(y))
    if len(self.dilations) == 1:
      y = torch_conv(width, width, 3, self.stride, self.dilations[0],
                     groups=width // self.group_width, dtype=self.dtype, name='conv2')(y)
    else:
      y = DilatedGroupConv(self.dilations, self.group_width, self.stride, self.dtype,
                           name='conv2')(y)
    y = nn.relu(batch_norm(train, self.dtype, name='bn2')(y))
    y = SqueezeExcite(in_features // 4, self.dtype, name='se')(y)
    y = torch_conv(width, width, dtype=self.dtype, name='conv3')(y)
    y = batch_norm(train, self.dtype, name='bn3')(y)
    return nn.relu(y + shortcut)


class RegSegBody(nn.Module):
  """The backbone after the stem: three stages of D blocks whose first block strides by 2;
  returns the 1/4, 1/8 and 1/16 features."""
  stage16_dilations: Sequence[Sequence[int]]
  widths: Sequence[int]
  depths: Sequence[int]
  group_width: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    _, w4, w8, w16, w_last = self.widths
    def block(features: int, dilations: Sequence[int], stride: int, name: str) -> DBlock:
      return DBlock(features, tuple(dilations), self.group_width, stride, self.dtype, name=name)

    features = []
    for stage, width, depth in (('stage4', w4, self.depths[0]), ('stage8', w8, self.depths[1])):
      for i in range(depth):
        x = block(width, (1,), 2 if i == 0 else 1, f'{stage}_{i}')(x, train)
      features.append(x)
    x = block(w16, (1,), 2, 'stage16_0')(x, train)
    last = len(self.stage16_dilations)
    for i, dilations in enumerate(self.stage16_dilations, start=1):
      x = block(w_last if i == last else w16, dilations, 1, f'stage16_{i}')(x, train)
    features.append(x)
    return features


class Decoder26(nn.Module):
  """The paper's decoder (Sec. 3.4, `Exp2_Decoder26`; `Exp2_Decoder29` with wider widths):
  1/16 and 1/8 heads added, a 3x3 conv, upsampled and concatenated with a thin 1/4 head, a 3x3
  conv and the classifier, at 1/4."""
  num_classes: int
  widths: Sequence[int] = (128, 8, 64, 64)  # head16 = head8, head4, conv8, conv4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    x4, x8, x16 = features
    head, head4, conv8, conv4 = self.widths
    x16 = ConvBnAct(head, dtype=self.dtype, name='head16')(x16, train)
    x8 = ConvBnAct(head, dtype=self.dtype, name='head8')(x8, train)
    x4 = ConvBnAct(head4, dtype=self.dtype, name='head4')(x4, train)
    x8 = x8 + bilinear_resize(x16, x8.shape[1:3])
    x8 = ConvBnAct(conv8, 3, dtype=self.dtype, name='conv8')(x8, train)
    x4 = jnp.concatenate([bilinear_resize(x8, x4.shape[1:3]), x4], axis=-1)
    x4 = ConvBnAct(conv4, 3, dtype=self.dtype, name='conv4')(x4, train)
    return torch_conv(self.num_classes, conv4, use_bias=True, dtype=self.dtype,
                      name='classifier')(x4)


class TwoScaleDecoder(nn.Module):
  """The ablation decoders at 1/8: 1x1 heads on 1/16 and 1/8, the 1/16 one upsampled, then
  summed (`Exp2_Decoder14`) or concatenated [1/8, 1/16] (`Exp2_Decoder4`), a 3x3 conv and the
  classifier."""
  num_classes: int
  fuse: str = 'sum'  # 'sum' | 'concat'
  widths: Sequence[int] = (128, 128, 128)  # head16, head8, conv
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    _, x8, x16 = features
    head16, head8, conv = self.widths
    x16 = ConvBnAct(head16, dtype=self.dtype, name='head16')(x16, train)
    x16 = bilinear_resize(x16, x8.shape[1:3])
    x8 = ConvBnAct(head8, dtype=self.dtype, name='head8')(x8, train)
    x = x8 + x16 if self.fuse == 'sum' else jnp.concatenate([x8, x16], axis=-1)
    x = ConvBnAct(conv, 3, dtype=self.dtype, name='conv')(x, train)
    return torch_conv(self.num_classes, conv, use_bias=True, dtype=self.dtype,
                      name='classifier')(x)


class RegSeg(nn.Module):
  """stem -> body (D blocks) -> decoder; returns {'logits': [N, ceil(H/4), ceil(W/4), C]
  (decoder4/14: 1/8), 'aux': []}."""
  num_classes: int
  stage16_dilations: Sequence[Sequence[int]] = EXP48_DILATIONS
  widths: Sequence[int] = (32, 48, 128, 256, 320)  # stem, 1/4, 1/8, 1/16, last block
  depths: Sequence[int] = (1, 3)  # D blocks at 1/4 and at 1/8
  group_width: int = 16
  decoder: str = 'decoder26'  # 'decoder26' (also decoder29) | 'sum' | 'concat'
  decoder_widths: Sequence[int] = (128, 8, 64, 64)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, Any]:
    x = ConvBnAct(self.widths[0], 3, 2, self.dtype, name='stem')(images.astype(self.dtype),
                                                                 train)
    features = RegSegBody(self.stage16_dilations, self.widths, self.depths, self.group_width,
                          self.dtype, name='body')(x, train)
    decoder: Callable[..., nn.Module]
    if self.decoder == 'decoder26':
      decoder = Decoder26(self.num_classes, tuple(self.decoder_widths), self.dtype,
                          name='decoder')
    else:
      decoder = TwoScaleDecoder(self.num_classes, self.decoder, tuple(self.decoder_widths),
                                self.dtype, name='decoder')
    logits = decoder(features, train)
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def regseg(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
           **overrides: Any) -> RegSeg:
  """RegSeg `variant` = '<body>_<decoder>' ('exp48_decoder26' is the paper's RegSeg,
  'exp53_decoder29' the README's larger one); `overrides` replace fields of `RegSeg`
  (stage16_dilations, widths, depths, group_width, decoder_widths, ...)."""
  body, _, decoder = variant.partition('_')
  if body not in BODIES or decoder not in DECODERS:
    raise ValueError(f'Unknown RegSeg variant {variant!r}; expected one of {REGSEG_VARIANTS}.')
  fields = {**BODIES[body], **DECODERS[decoder], **overrides}
  return RegSeg(num_classes=num_classes, dtype=dtype, **fields)
