"""SegFormer (Xie et al. 2021): the Mix Transformer (MiT) encoder and the all-MLP decode head.

Follows the paper and its reference implementations (NVlabs/SegFormer, mmsegmentation's
`mit.py` + `segformer_head.py`, Hugging Face's `modeling_segformer.py`); a model built here holds
exactly the parameters of HF's `SegformerForSemanticSegmentation` of the same size.

LayerNorm epsilon: every LayerNorm here uses PyTorch's default 1e-5, because HF's port (into
which the released weights were converted) builds all of them with the default; its config's
`layer_norm_eps=1e-6` is never read. NVlabs' original MiT instead uses 1e-6 for the blocks'
norm1/norm2 and each stage's output norm (1e-5 in the patch embeddings and the sequence
reduction), and mmsegmentation uses 1e-6 for all of them. Matching HF makes converted weights
reproduce HF's outputs.

Parameter names follow HF's; the optimizer's regexes rely on them: every norm has `norm` in
its name, the Mix-FFN's positional depthwise conv is `dwconv`, the whole head lives under
`decode_head` (tests/models/test_segformer.py checks the tree).

Departure in the order of computation only: the decode head folds its fuse conv into the
per-stage Linear layers before upsampling (equal up to float rounding; B0 at 512x512: 4.1 G
instead of 8.4 G multiply-adds), see SegFormerHead.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models import layers
from semseg_jax.models.layers import (DropPath, attention, batch_norm, bilinear_resize, conv2d,
                                      conv_fan_out_init, fan_out_conv, repeated_blocks,
                                      stage_drop_path_rates, trunc_normal_init)

SEGFORMER_VARIANTS: dict[str, dict] = {
    'b0': dict(depths=(2, 2, 2, 2), widths=(32, 64, 160, 256), decoder_dim=256),
    'b1': dict(depths=(2, 2, 2, 2), widths=(64, 128, 320, 512), decoder_dim=256),
    'b2': dict(depths=(3, 4, 6, 3), widths=(64, 128, 320, 512), decoder_dim=768),
    'b3': dict(depths=(3, 4, 18, 3), widths=(64, 128, 320, 512), decoder_dim=768),
    'b4': dict(depths=(3, 8, 27, 3), widths=(64, 128, 320, 512), decoder_dim=768),
    'b5': dict(depths=(3, 6, 40, 3), widths=(64, 128, 320, 512), decoder_dim=768),
}

LN_EPS = 1e-5  # See the module docstring.
MLP_RATIO = 4

# Linear layers: trunc_normal(std=0.02) weights, zero biases (as the references).
LINEAR_KERNEL_INIT = trunc_normal_init(0.02)
Dense = functools.partial(nn.Dense, kernel_init=LINEAR_KERNEL_INIT,
                          bias_init=nn.initializers.zeros)
# Two-pass variance (like PyTorch); statistics in float32 whatever the compute dtype.
LayerNorm = functools.partial(layers.LayerNorm, epsilon=LN_EPS)


class OverlapPatchEmbed(nn.Module):
  """Overlapping patch merging (Sec. 3.1): a strided conv with padding k // 2, then LayerNorm."""
  width: int
  patch_size: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = fan_out_conv(self.width, self.patch_size, self.stride, padding=self.patch_size // 2,
                     use_bias=True, dtype=self.dtype, name='proj')(x)
    return LayerNorm(dtype=self.dtype, name='norm')(x)


class EfficientSelfAttention(nn.Module):
  """Multi-head self-attention whose keys/values come from a sequence reduced by sr_ratio^2
  (Eq. 2): a conv with kernel = stride = sr_ratio, then LayerNorm."""
  num_heads: int
  sr_ratio: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    head_dim = c // self.num_heads
    query = Dense(c, dtype=self.dtype, name='query')(x).reshape(n, h * w, self.num_heads, head_dim)
    kv = x
    if self.sr_ratio > 1:
      kv = fan_out_conv(c, self.sr_ratio, self.sr_ratio, padding=0, use_bias=True,
                        dtype=self.dtype, name='sr')(kv)
      kv = LayerNorm(dtype=self.dtype, name='sr_norm')(kv)
    kv = kv.reshape(n, -1, c)
    key = Dense(c, dtype=self.dtype, name='key')(kv).reshape(n, -1, self.num_heads, head_dim)
    value = Dense(c, dtype=self.dtype, name='value')(kv).reshape(n, -1, self.num_heads, head_dim)
    out = attention(query, key, value, head_dim**-0.5, self.dtype).reshape(n, h, w, c)
    return Dense(c, dtype=self.dtype, name='proj')(out)


class MixFFN(nn.Module):
  """Mix-FFN (Eq. 3): Linear(C, 4C) -> 3x3 depthwise conv -> GELU -> Linear(4C, C)."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    hidden = MLP_RATIO * c
    x = Dense(hidden, dtype=self.dtype, name='fc1')(x)
    x = fan_out_conv(hidden, 3, groups=hidden, use_bias=True, dtype=self.dtype,
                     name='dwconv')(x)
    x = nn.gelu(x, approximate=False)
    return Dense(c, dtype=self.dtype, name='fc2')(x)


class MixBlock(nn.Module):
  """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MixFFN(LN(x)))."""
  num_heads: int
  sr_ratio: int
  drop_path: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    drop_path = DropPath(self.drop_path)
    y = LayerNorm(dtype=self.dtype, name='norm1')(x)
    y = EfficientSelfAttention(self.num_heads, self.sr_ratio, dtype=self.dtype, name='attn')(y)
    x = x + drop_path(y, deterministic=not train)
    y = LayerNorm(dtype=self.dtype, name='norm2')(x)
    y = MixFFN(dtype=self.dtype, name='mlp')(y)
    return x + drop_path(y, deterministic=not train)


class MixStage(nn.Module):
  """One encoder stage: overlapping patch embedding, len(drop_path_rates) blocks (scanned from
  scan_min_depth blocks on, layers.repeated_blocks), a final LayerNorm."""
  width: int
  num_heads: int
  sr_ratio: int
  patch_size: int
  stride: int
  drop_path_rates: Sequence[float]
  scan_min_depth: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = OverlapPatchEmbed(self.width, self.patch_size, self.stride, dtype=self.dtype,
                          name='patch_embed')(x)
    x = repeated_blocks(self, lambda rate, **kw: MixBlock(self.num_heads, self.sr_ratio, rate,
                                                          dtype=self.dtype, **kw),
                        self.drop_path_rates, x, train, self.scan_min_depth)
    return LayerNorm(dtype=self.dtype, name='norm')(x)


class MixTransformer(nn.Module):
  """The MiT encoder: four stages at strides 4, 8, 16, 32; returns their NHWC outputs."""
  depths: Sequence[int] = (2, 2, 2, 2)
  widths: Sequence[int] = (32, 64, 160, 256)
  num_heads: Sequence[int] = (1, 2, 5, 8)
  sr_ratios: Sequence[int] = (8, 4, 2, 1)
  drop_path_rate: float = 0.1
  scan_min_depth: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    rates = stage_drop_path_rates(self.drop_path_rate, self.depths)
    features = []
    for s in range(len(self.depths)):
      patch_size, stride = (7, 4) if s == 0 else (3, 2)
      x = MixStage(self.widths[s], self.num_heads[s], self.sr_ratios[s], patch_size, stride,
                   rates[s], self.scan_min_depth, dtype=self.dtype,
                   name=f'stage{s + 1}')(x, train)
      features.append(x)
    return features


class LinearParams(nn.Module):
  """The kernel [in, out] and bias [out] of a `Dense` layer of this file (same names, shapes and
  init), returned for the head to fold instead of applied."""
  in_features: int
  features: int

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array]:
    return (self.param('kernel', LINEAR_KERNEL_INIT, (self.in_features, self.features)),
            self.param('bias', nn.initializers.zeros, (self.features,)))


class FuseKernel(nn.Module):
  """The kernel [1, 1, in, out] of `fan_out_conv(out, 1)` (same name, shape and init),
  returned for the head to fold instead of applied."""
  in_features: int
  features: int

  @nn.compact
  def __call__(self) -> jax.Array:
    return self.param('kernel', conv_fan_out_init(1, self.features),
                      (1, 1, self.in_features, self.features))


class SegFormerHead(nn.Module):
  """All-MLP decoder (Eq. 4): per-stage Linear(C_i, E), upsample to 1/4, concatenate, fuse with a
  1x1 conv + BatchNorm + ReLU, dropout, 1x1 conv classifier.

  Computed in an equal, cheaper order: the fuse conv's kernel is a stack of four [E, E] blocks,
  one per concatenated stage, and both it and the upsampling are linear (bilinear weights sum
  to 1, so biases pass through), so each stage's Linear is folded with its block into one
  [C_i, E] matrix applied at the stage's own resolution, and the four results are upsampled and
  summed. At 512x512 this is 4.3 G fewer multiply-adds than the written form's 8.4 G for B0.
  The parameters are the written form's (names, shapes, init), so checkpoints convert as they are.
  """
  num_classes: int
  decoder_dim: int = 256
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    size = features[0].shape[1:3]
    dim = self.decoder_dim
    # The references concatenate the deepest stage first: [c4, c3, c2, c1].
    fuse = FuseKernel(len(features) * dim, dim, name='linear_fuse')()[0, 0]
    # The fold is weight-sized: in full float32 precision on every backend (TPUs and TF32
    # GPUs would otherwise round it before the product with the features does).
    fold = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
    x = None
    for i, feature in enumerate(features):
      kernel, bias = LinearParams(feature.shape[-1], dim, name=f'linear_c{i + 1}')()
      block = fuse[(len(features) - 1 - i) * dim:(len(features) - i) * dim]
      y = jnp.dot(feature.astype(self.dtype), fold(kernel, block).astype(self.dtype)) + (
          fold(bias, block).astype(self.dtype))
      y = bilinear_resize(y, size)
      x = y if x is None else x + y
    x = batch_norm(train, self.dtype, name='fuse_norm')(x)
    x = nn.relu(x)
    # NVlabs and mmsegmentation drop whole channels (nn.Dropout2d); HF's elementwise nn.Dropout
    # only matters for training, which follows the former.
    x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    # mmsegmentation's decode heads init the classifier with N(0, 0.01^2).
    return conv2d(self.num_classes, 1, use_bias=True, kernel_init=nn.initializers.normal(0.01),
                  dtype=self.dtype, name='classifier')(x)


class SegFormer(nn.Module):
  """SegFormer: MiT encoder + all-MLP head; logits at output stride 4."""
  num_classes: int
  depths: Sequence[int] = (2, 2, 2, 2)
  widths: Sequence[int] = (32, 64, 160, 256)
  num_heads: Sequence[int] = (1, 2, 5, 8)
  sr_ratios: Sequence[int] = (8, 4, 2, 1)
  decoder_dim: int = 256
  drop_path_rate: float = 0.1
  dropout_rate: float = 0.1
  scan_min_depth: int = 0  # Stages this deep scan their blocks; 0: never.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    features = MixTransformer(self.depths, self.widths, self.num_heads, self.sr_ratios,
                              self.drop_path_rate, self.scan_min_depth, dtype=self.dtype,
                              name='backbone')(images, train)
    logits = SegFormerHead(self.num_classes, self.decoder_dim, self.dropout_rate, dtype=self.dtype,
                           name='decode_head')(features, train)
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def segformer(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
              drop_path_rate: float = 0.1, dropout_rate: float = 0.1,
              **overrides: Any) -> SegFormer:
  """SegFormer-B0..B5 ('b0'..'b5') with `num_classes` outputs; `overrides` replace fields."""
  if variant not in SEGFORMER_VARIANTS:
    raise ValueError(f'Unknown SegFormer variant {variant!r}; expected one of '
                     f'{sorted(SEGFORMER_VARIANTS)}.')
  return SegFormer(num_classes=num_classes, dtype=dtype, drop_path_rate=drop_path_rate,
                   dropout_rate=dropout_rate, **{**SEGFORMER_VARIANTS[variant], **overrides})
