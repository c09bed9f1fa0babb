"""TopFormer (Zhang et al., "TopFormer: Token Pyramid Transformer for Mobile Semantic
Segmentation", CVPR 2022), as the official implementation builds it (hustvl/TopFormer, on
mmseg 0.19: `mmseg/models/backbones/topformer.py`, `mmseg/models/decode_heads/simple_head.py`,
`local_configs/topformer/topformer_{tiny,small,base}.py`).

The architecture (Sec. 3 and Fig. 2 of the paper), in the reference's terms:
- Token Pyramid Module: a 3x3 stride-2 stem conv (16 ch) then MobileNetV2 inverted
  residual blocks given as (kernel k, expansion t, channels c, stride s); the outputs of four of
  them (`token_indices`) are the tokens at strides 4, 8, 16 and 32.
- Pyramid pooling: every token is average-pooled (PyTorch's adaptive pooling) to the size of
  the stride-32 token halved, ceil(h / 2) x ceil(w / 2) (stride 64), and the pooled tokens are
  concatenated along channels.
- Scale-aware Semantics Extractor: `depth` = 4 transformer blocks on the pooled
  tokens, x + DropPath(Attn(x)) then x + DropPath(MLP(x)), with no LayerNorm: every linear map
  is a 1x1 conv + BatchNorm (the reference's Conv2d_BN). Attention: q, k of key_dim = 16 per
  head, v of attn_ratio * key_dim = 32 per head, softmax(q k^T) over the keys, ReLU6, a 1x1
  conv + BN projection back to the width. MLP: 1x1 conv + BN to mlp_ratio = 2 times the width,
  3x3 depthwise conv with bias, ReLU6, 1x1 conv + BN back.
- Semantics Injection Module (the reference's InjectionMultiSum): the output is split
  back into the per-scale channel groups; for the tokens at strides 8, 16, 32 (`injected`),
  local = BN(conv1x1(token)), act = h_sigmoid(BN(conv1x1(semantics))),
  global = BN(conv1x1(semantics)); act and global are resized bilinearly to the token's size
  and the output is local * act + global, with `channels` channels.
- Segmentation head (the reference's SimpleHead): the injected features are resized
  bilinearly to the stride-8 one and summed, then a 1x1 ConvModule (conv, BN, ReLU; depthwise
  for TopFormer-T), Dropout2d(0.1) and the 1x1 classifier. Logits are at output stride 8.
All resizes are bilinear with align_corners=False.

Variants (TopFormer-T/S/B): the block lists of the configs, tokens of (16, 32, 64, 96),
(24, 48, 96, 128), (32, 64, 128, 160) channels, 4 / 6 / 8 heads, injection and head width
128 / 192 / 256. The reference's Cityscapes TopFormer-B config uses width 128
(override channels=128).

Initialisation (the reference's Topformer.init_weights, the mmcv ConvModule and mmseg's
decode-head defaults): convs N(0, 2 / fan_out) with fan_out = k * k * out / groups, conv biases
0; BN gamma 1 and beta 0, except the attention projection's BN, whose gamma starts at 0 (its
Conv2d_BN `bn_weight_init=0`; init_weights refills only nn.BatchNorm2d, which the benchmark's
SyncBN is not); classifier N(0, 0.01^2). The benchmark models start from ImageNet-pretrained
backbones.

Deviations and notes (all follow the reference, the source of the benchmark numbers):
- the Token Pyramid Module's activation is ReLU (TokenPyramidModule's default; Topformer does
  not pass its ReLU6 on), while the transformer blocks use ReLU6;
- the attention scores are not scaled by key_dim ** -0.5 (the reference computes the scale and
  never applies it);
- the injection gate is h_sigmoid = ReLU6(x + 3) / 6 (the paper speaks of a sigmoid);
- the MLP's dropout (rate 0) and the reference's width multiplier (1.0) are left out;
- SyncBN is our batch norm (global batch statistics under a sharded jit).

Parameter names are the reference's.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import (ConvBNAct, DropPath, SegClassifier, adaptive_avg_pool,
                                      attention, batch_norm, bilinear_resize, fan_out_conv)

# Inverted residual blocks as (kernel k, expansion t, channels c, stride s), after the stem.
_BLOCKS_T = ((3, 1, 16, 1), (3, 4, 16, 2), (3, 3, 16, 1), (5, 3, 32, 2), (5, 3, 32, 1),
             (3, 3, 64, 2), (3, 3, 64, 1), (5, 6, 96, 2), (5, 6, 96, 1))
_BLOCKS_S = ((3, 1, 16, 1), (3, 4, 24, 2), (3, 3, 24, 1), (5, 3, 48, 2), (5, 3, 48, 1),
             (3, 3, 96, 2), (3, 3, 96, 1), (5, 6, 128, 2), (5, 6, 128, 1), (3, 6, 128, 1))
_BLOCKS_B = ((3, 1, 16, 1), (3, 4, 32, 2), (3, 3, 32, 1), (5, 3, 64, 2), (5, 3, 64, 1),
             (3, 3, 128, 2), (3, 3, 128, 1), (5, 6, 160, 2), (5, 6, 160, 1), (3, 6, 160, 1))

TOPFORMER_VARIANTS: dict[str, dict] = {
    't': dict(blocks=_BLOCKS_T, token_indices=(2, 4, 6, 8), num_heads=4, channels=128,
              head_depthwise=True),
    's': dict(blocks=_BLOCKS_S, token_indices=(2, 4, 6, 9), num_heads=6, channels=192,
              head_depthwise=False),
    'b': dict(blocks=_BLOCKS_B, token_indices=(2, 4, 6, 9), num_heads=8, channels=256,
              head_depthwise=False),
}

STEM_WIDTH = 16


def h_sigmoid(x: jax.Array) -> jax.Array:
  """The reference's hard sigmoid: ReLU6(x + 3) / 6."""
  return jax.nn.relu6(x + 3.0) / 6.0


class ConvBN(nn.Module):
  """The reference's Conv2d_BN: a bias-free conv (init N(0, 2 / (k * k * out / groups))) and a
  BatchNorm whose gamma starts at 1, or at 0 with `zero_init_gamma`."""
  features: int
  kernel_size: int = 1
  stride: int = 1
  groups: int = 1
  zero_init_gamma: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = fan_out_conv(self.features, self.kernel_size, self.stride, groups=self.groups,
                     dtype=self.dtype, name='conv')(x)
    return batch_norm(train, self.dtype, zero_init=self.zero_init_gamma, name='bn')(x)


class InvertedResidual(nn.Module):
  """MobileNetV2 block: 1x1 expansion (t != 1) -> k x k depthwise (strided) -> 1x1 linear
  projection, each conv + BN, ReLU after the first two; the input is added back when the stride
  is 1 and the width is kept."""
  features: int
  kernel_size: int
  stride: int
  expand_ratio: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    in_features = x.shape[-1]
    hidden = int(round(in_features * self.expand_ratio))
    y = x
    if self.expand_ratio != 1:
      y = nn.relu(ConvBN(hidden, dtype=self.dtype, name='expand')(y, train))
    y = ConvBN(hidden, self.kernel_size, self.stride, groups=hidden, dtype=self.dtype,
               name='depthwise')(y, train)
    y = ConvBN(self.features, dtype=self.dtype, name='project')(nn.relu(y), train)
    return x + y if self.stride == 1 and in_features == self.features else y


class TokenPyramidModule(nn.Module):
  """Stem conv (3x3, stride 2, 16 ch, ReLU) and the inverted residual blocks; returns the
  outputs of the blocks in `token_indices` (0-based)."""
  blocks: Sequence[tuple[int, int, int, int]]
  token_indices: Sequence[int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    x = nn.relu(ConvBN(STEM_WIDTH, 3, 2, dtype=self.dtype, name='stem')(x, train))
    tokens = []
    for i, (kernel, expand, width, stride) in enumerate(self.blocks):
      x = InvertedResidual(width, kernel, stride, expand, dtype=self.dtype,
                           name=f'layer{i + 1}')(x, train)
      if i in self.token_indices:
        tokens.append(x)
    return tokens


class Attention(nn.Module):
  """Multi-head self-attention over all positions with BN-ed 1x1-conv projections; the scores
  are not scaled (as the reference). Projection: ReLU6 -> conv + BN (gamma 0 at init)."""
  key_dim: int
  num_heads: int
  attn_ratio: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    n, h, w, c = x.shape
    value_dim = int(self.attn_ratio * self.key_dim)
    qk_width = self.key_dim * self.num_heads
    query = ConvBN(qk_width, dtype=self.dtype, name='to_q')(x, train)
    key = ConvBN(qk_width, dtype=self.dtype, name='to_k')(x, train)
    value = ConvBN(value_dim * self.num_heads, dtype=self.dtype, name='to_v')(x, train)
    # Channel j of a projection is dimension j % d of head j // d (the reference's reshape).
    query = query.reshape(n, h * w, self.num_heads, self.key_dim)
    key = key.reshape(n, h * w, self.num_heads, self.key_dim)
    value = value.reshape(n, h * w, self.num_heads, value_dim)
    out = attention(query, key, value, 1.0, self.dtype).reshape(n, h, w, -1)  # No scale.
    return ConvBN(c, zero_init_gamma=True, dtype=self.dtype, name='proj')(jax.nn.relu6(out),
                                                                          train)


class Mlp(nn.Module):
  """1x1 conv + BN (to `hidden`) -> 3x3 depthwise conv with bias -> ReLU6 -> 1x1 conv + BN."""
  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c = x.shape[-1]
    x = ConvBN(self.hidden, dtype=self.dtype, name='fc1')(x, train)
    x = fan_out_conv(self.hidden, 3, groups=self.hidden, use_bias=True, dtype=self.dtype,
                     name='dwconv')(x)
    return ConvBN(c, dtype=self.dtype, name='fc2')(jax.nn.relu6(x), train)


class TransformerBlock(nn.Module):
  """x + DropPath(Attention(x)), then x + DropPath(Mlp(x)); no normalisation layers."""
  key_dim: int
  num_heads: int
  attn_ratio: float
  mlp_ratio: float
  drop_path: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    drop_path = DropPath(self.drop_path)
    y = Attention(self.key_dim, self.num_heads, self.attn_ratio, dtype=self.dtype,
                  name='attn')(x, train)
    x = x + drop_path(y, deterministic=not train)
    y = Mlp(int(x.shape[-1] * self.mlp_ratio), dtype=self.dtype, name='mlp')(x, train)
    return x + drop_path(y, deterministic=not train)


class SemanticsExtractor(nn.Module):
  """The Scale-aware Semantics Extractor: `depth` transformer blocks whose drop-path rates rise
  linearly from 0 to `drop_path_rate`."""
  depth: int
  key_dim: int
  num_heads: int
  attn_ratio: float
  mlp_ratio: float
  drop_path_rate: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for i in range(self.depth):
      rate = self.drop_path_rate * i / max(self.depth - 1, 1)
      x = TransformerBlock(self.key_dim, self.num_heads, self.attn_ratio, self.mlp_ratio, rate,
                           dtype=self.dtype, name=f'block{i}')(x, train)
    return x


class SemanticsInjection(nn.Module):
  """Semantics Injection Module: BN(conv(local)) * up(h_sigmoid(BN(conv(semantics))))
  + up(BN(conv(semantics))), all 1x1 convs to `features`; `up` resizes to the local size."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, local_tokens: jax.Array, semantics: jax.Array,
               train: bool = False) -> jax.Array:
    size = local_tokens.shape[1:3]
    local = ConvBN(self.features, dtype=self.dtype, name='local_embedding')(local_tokens, train)
    act = h_sigmoid(ConvBN(self.features, dtype=self.dtype, name='global_act')(semantics, train))
    embedding = ConvBN(self.features, dtype=self.dtype, name='global_embedding')(semantics,
                                                                                  train)
    return local * bilinear_resize(act, size) + bilinear_resize(embedding, size)


class TopFormerBackbone(nn.Module):
  """Token pyramid -> pooled tokens -> semantics extractor -> injection into the tokens in
  `injected` (indices into the four tokens); returns the injected features, finest first."""
  blocks: Sequence[tuple[int, int, int, int]]
  token_indices: Sequence[int]
  num_heads: int
  channels: int
  injected: Sequence[int] = (1, 2, 3)
  depth: int = 4
  key_dim: int = 16
  attn_ratio: float = 2.0
  mlp_ratio: float = 2.0
  pool_stride: int = 2
  drop_path_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    tokens = TokenPyramidModule(self.blocks, self.token_indices, dtype=self.dtype,
                                name='tpm')(x, train)
    h, w = tokens[-1].shape[1:3]
    pooled_hw = ((h - 1) // self.pool_stride + 1, (w - 1) // self.pool_stride + 1)
    pooled = jnp.concatenate([adaptive_avg_pool(t, pooled_hw) for t in tokens], axis=-1)
    semantics = SemanticsExtractor(self.depth, self.key_dim, self.num_heads, self.attn_ratio,
                                   self.mlp_ratio, self.drop_path_rate, dtype=self.dtype,
                                   name='trans')(pooled, train)
    splits = [sum(t.shape[-1] for t in tokens[:i + 1]) for i in range(len(tokens) - 1)]
    per_scale = jnp.split(semantics, splits, axis=-1)
    return [SemanticsInjection(self.channels, dtype=self.dtype, name=f'sim{i}')(
        tokens[i], per_scale[i], train) for i in self.injected]


class SimpleHead(nn.Module):
  """Resize every feature to the first one's size and sum, 1x1 ConvModule (conv, BN, ReLU;
  depthwise if `depthwise`), Dropout2d and the 1x1 classifier."""
  num_classes: int
  depthwise: bool = False
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array], train: bool = False) -> jax.Array:
    size = features[0].shape[1:3]
    x = features[0]
    for feature in features[1:]:
      x = x + bilinear_resize(feature, size)
    c = x.shape[-1]
    x = ConvBNAct(c, 1, groups=c if self.depthwise else 1, dtype=self.dtype,
                  name='linear_fuse')(x, train)
    return SegClassifier(self.num_classes, self.dropout_rate, dtype=self.dtype,
                         name='classifier')(x, train)


class TopFormer(nn.Module):
  """TopFormer: backbone + SimpleHead; logits at output stride 8, no auxiliary heads."""
  num_classes: int
  blocks: Sequence[tuple[int, int, int, int]] = _BLOCKS_T
  token_indices: Sequence[int] = (2, 4, 6, 8)
  num_heads: int = 4
  channels: int = 128
  head_depthwise: bool = True
  depth: int = 4
  key_dim: int = 16
  attn_ratio: float = 2.0
  mlp_ratio: float = 2.0
  drop_path_rate: float = 0.1
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    features = TopFormerBackbone(self.blocks, self.token_indices, self.num_heads, self.channels,
                                 depth=self.depth, key_dim=self.key_dim,
                                 attn_ratio=self.attn_ratio, mlp_ratio=self.mlp_ratio,
                                 drop_path_rate=self.drop_path_rate, dtype=self.dtype,
                                 name='backbone')(images, train)
    logits = SimpleHead(self.num_classes, self.head_depthwise, self.dropout_rate,
                        dtype=self.dtype, name='decode_head')(features, train)
    return {'logits': logits.astype(jnp.float32), 'aux': []}


def topformer(variant: str, num_classes: int, *, dtype: Any = jnp.float32,
              dropout_rate: float = 0.1, drop_path_rate: float = 0.1,
              **overrides: Any) -> TopFormer:
  """TopFormer-T/S/B ('t', 's', 'b') with `num_classes` outputs; `overrides` replace fields
  of TopFormer (e.g. channels=16, depth=1, blocks=..., token_indices=...)."""
  if variant not in TOPFORMER_VARIANTS:
    raise ValueError(f'Unknown TopFormer variant {variant!r}; expected one of '
                     f'{sorted(TOPFORMER_VARIANTS)}.')
  return TopFormer(num_classes=num_classes, dtype=dtype, dropout_rate=dropout_rate,
                   drop_path_rate=drop_path_rate,
                   **{**TOPFORMER_VARIANTS[variant], **overrides})
