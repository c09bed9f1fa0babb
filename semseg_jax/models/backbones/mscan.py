"""MSCAN, the encoder of SegNeXt (Guo et al., "SegNeXt: Rethinking Convolutional Attention
Design for Semantic Segmentation", NeurIPS 2022, Sec. 3.1 and Table 2).

Reference implementation: mmsegmentation 1.x `mmseg/models/backbones/mscan.py` (MSCAN), which
holds the same layers, names and init as the official Visual-Attention-Network/SegNeXt
`mmseg/models/backbones/mscan.py` (written for mmseg 0.24).

Architecture (NHWC here):
- Stage 1 embedding (stem): conv3x3/s2 (C/2) -> BN -> GELU -> conv3x3/s2 (C) -> BN; stride 4.
- Stages 2..4 embedding: conv3x3/s2 with padding 1 -> BN.
- Each block (Fig. 2): x + ls1 * DropPath(SpatialAttention(BN(x))), then
  x + ls2 * DropPath(MLP(BN(x))), layer-scale vectors initialised to 0.01.
  SpatialAttention: 1x1 conv -> GELU -> MSCA -> 1x1 conv, plus its own shortcut.
  MSCA: a = dw5x5(u); a = a + dw7x1(dw1x7(a)) + dw11x1(dw1x11(a)) + dw21x1(dw1x21(a));
  out = conv1x1(a) * u (the attention multiplies the MSCA input u).
  MLP: 1x1 conv -> 3x3 depthwise conv -> GELU -> 1x1 conv (hidden = mlp_ratio * C).
- A LayerNorm (eps 1e-5) over channels ends every stage; all four stage outputs are returned
  (strides 4, 8, 16, 32; each conv with k=3, s=2, p=1 maps a size n to ceil(n / 2)).
- Stochastic depth rises linearly from 0 to drop_path_rate over all blocks (torch.linspace).

Every conv has a bias (PyTorch's nn.Conv2d default), also those followed by BatchNorm, as in the
reference. Init (the reference's `init_weights` without a checkpoint): conv weights
N(0, 2 / fan_out) with fan_out = kh * kw * out / groups, zero biases; norms 1 / 0.

Norms: the reference builds every BatchNorm from `norm_cfg` (SyncBN in the official configs, BN
in mmseg's single-GPU configs); `layers.batch_norm` is BatchNorm2d (eps 1e-5, momentum 0.1)
and is synchronised over a sharded batch under jit, i.e. SyncBN.

Parameter names are mmseg's where it has them; the stem BNs are `bn1`/`bn2`, which, like
mmseg's `proj.1`/`proj.4`, contain no 'norm', so a 'norm' no-decay regex selects the same
parameters as mmseg's `custom_keys={'norm': decay_mult 0}`.

Deviations: none in the computation. The reference's `drop_rate` (MLP dropout) is 0 in every
SegNeXt config and is not implemented.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from semseg_jax.models.layers import (DropPath, LayerNorm, batch_norm, fan_out_conv,
                                      repeated_blocks, stage_drop_path_rates)

# depths, widths, mlp ratios and the drop-path rate of the benchmark configs (Table 2 of the
# paper; official local_configs/segnext/*/ and mmseg configs/segnext/*).
MSCAN_VARIANTS: dict[str, dict[str, Any]] = {
    't': dict(widths=(32, 64, 160, 256), depths=(3, 3, 5, 2), mlp_ratios=(8, 8, 4, 4),
              drop_path_rate=0.1),
    's': dict(widths=(64, 128, 320, 512), depths=(2, 2, 4, 2), mlp_ratios=(8, 8, 4, 4),
              drop_path_rate=0.1),
    'b': dict(widths=(64, 128, 320, 512), depths=(3, 3, 12, 3), mlp_ratios=(8, 8, 4, 4),
              drop_path_rate=0.1),
    'l': dict(widths=(64, 128, 320, 512), depths=(3, 5, 27, 3), mlp_ratios=(8, 8, 4, 4),
              drop_path_rate=0.3),
}

LAYER_SCALE_INIT = 1e-2
LN_EPS = 1e-5  # nn.LayerNorm's default in the reference.


def gelu(x: jax.Array) -> jax.Array:
  """nn.GELU (the exact, erf form)."""
  return nn.gelu(x, approximate=False)


class StemConv(nn.Module):
  """Stage 1 embedding: two 3x3 stride-2 convs with BN, GELU between them (stride 4)."""
  width: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = fan_out_conv(self.width // 2, 3, 2, use_bias=True, dtype=self.dtype, name='conv1')(x)
    x = gelu(batch_norm(train, self.dtype, name='bn1')(x))
    x = fan_out_conv(self.width, 3, 2, use_bias=True, dtype=self.dtype, name='conv2')(x)
    return batch_norm(train, self.dtype, name='bn2')(x)


class OverlapPatchEmbed(nn.Module):
  """Stages 2..4 embedding: 3x3 stride-2 conv (padding 1) then BN."""
  width: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = fan_out_conv(self.width, 3, 2, use_bias=True, dtype=self.dtype, name='proj')(x)
    return batch_norm(train, self.dtype, name='norm')(x)


class MSCA(nn.Module):
  """Multi-scale convolutional attention (Eq. 1): depthwise 5x5, three depthwise strip-conv
  branches (1xk then kx1, k = 7, 11, 21) summed with it, a 1x1 channel mix, then the result
  multiplies the input."""
  strip_sizes: Sequence[int] = (7, 11, 21)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, u: jax.Array) -> jax.Array:
    c = u.shape[-1]
    attn = fan_out_conv(c, 5, groups=c, use_bias=True, dtype=self.dtype, name='conv0')(u)
    total = attn
    for i, k in enumerate(self.strip_sizes):
      branch = fan_out_conv(c, (1, k), groups=c, use_bias=True, dtype=self.dtype,
                            name=f'conv{i}_1')(attn)
      total = total + fan_out_conv(c, (k, 1), groups=c, use_bias=True, dtype=self.dtype,
                                   name=f'conv{i}_2')(branch)
    attn = fan_out_conv(c, 1, use_bias=True, dtype=self.dtype, name='conv3')(total)
    return attn * u


class SpatialAttention(nn.Module):
  """1x1 conv -> GELU -> MSCA -> 1x1 conv, with a shortcut around all of it."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    y = gelu(fan_out_conv(c, 1, use_bias=True, dtype=self.dtype, name='proj_1')(x))
    y = MSCA(dtype=self.dtype, name='spatial_gating_unit')(y)
    return fan_out_conv(c, 1, use_bias=True, dtype=self.dtype, name='proj_2')(y) + x


class ConvMlp(nn.Module):
  """1x1 conv (C -> hidden) -> 3x3 depthwise conv -> GELU -> 1x1 conv (hidden -> C)."""
  mlp_ratio: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    hidden = int(c * self.mlp_ratio)
    x = fan_out_conv(hidden, 1, use_bias=True, dtype=self.dtype, name='fc1')(x)
    x = gelu(fan_out_conv(hidden, 3, groups=hidden, use_bias=True, dtype=self.dtype,
                          name='dwconv')(x))
    return fan_out_conv(c, 1, use_bias=True, dtype=self.dtype, name='fc2')(x)


class MSCABlock(nn.Module):
  """x + ls1 * DropPath(attn(BN(x))); x + ls2 * DropPath(mlp(BN(x)))."""
  mlp_ratio: float
  drop_path: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c = x.shape[-1]
    init = nn.initializers.constant(LAYER_SCALE_INIT)
    scale_1 = self.param('layer_scale_1', init, (c,), jnp.float32).astype(self.dtype)
    scale_2 = self.param('layer_scale_2', init, (c,), jnp.float32).astype(self.dtype)
    drop_path = DropPath(self.drop_path)
    y = SpatialAttention(dtype=self.dtype, name='attn')(
        batch_norm(train, self.dtype, name='norm1')(x))
    x = x + drop_path(scale_1 * y, deterministic=not train)
    y = ConvMlp(self.mlp_ratio, dtype=self.dtype, name='mlp')(
        batch_norm(train, self.dtype, name='norm2')(x))
    return x + drop_path(scale_2 * y, deterministic=not train)


class MSCANStage(nn.Module):
  """Embedding (stem for stage 1), len(drop_path_rates) blocks (scanned from scan_min_depth
  blocks on, layers.repeated_blocks), LayerNorm over channels."""
  width: int
  mlp_ratio: float
  drop_path_rates: Sequence[float]
  is_first: bool
  scan_min_depth: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    embed = StemConv if self.is_first else OverlapPatchEmbed
    x = embed(self.width, dtype=self.dtype, name='patch_embed')(x, train)
    x = repeated_blocks(self, lambda rate, **kw: MSCABlock(self.mlp_ratio, rate, dtype=self.dtype,
                                                           **kw),
                        self.drop_path_rates, x, train, self.scan_min_depth)
    return LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='norm')(x)


class MSCAN(nn.Module):
  """The four-stage MSCAN; returns the stage outputs at strides 4, 8, 16, 32."""
  widths: Sequence[int] = (32, 64, 160, 256)
  depths: Sequence[int] = (3, 3, 5, 2)
  mlp_ratios: Sequence[float] = (8, 8, 4, 4)
  drop_path_rate: float = 0.1
  scan_min_depth: int = 0  # Stages this deep scan their blocks; 0: never.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    rates = stage_drop_path_rates(self.drop_path_rate, self.depths)
    features = []
    for s in range(len(self.depths)):
      x = MSCANStage(self.widths[s], self.mlp_ratios[s], rates[s], is_first=s == 0,
                     scan_min_depth=self.scan_min_depth, dtype=self.dtype,
                     name=f'stage{s + 1}')(x, train)
      features.append(x)
    return features


def mscan_from_variant(variant: str, drop_path_rate: float | None = None,
                       dtype: Any = jnp.float32, **overrides: Any) -> MSCAN:
  """MSCAN-T/S/B/L ('t', 's', 'b', 'l'); drop_path_rate None keeps the variant's benchmark rate.
  `overrides` replace the variant's widths, depths or mlp_ratios."""
  if variant not in MSCAN_VARIANTS:
    raise ValueError(f'Unknown MSCAN variant {variant!r}; expected one of {list(MSCAN_VARIANTS)}.')
  spec = {**MSCAN_VARIANTS[variant], **overrides}
  if drop_path_rate is not None:
    spec['drop_path_rate'] = drop_path_rate
  return MSCAN(dtype=dtype, **spec)
