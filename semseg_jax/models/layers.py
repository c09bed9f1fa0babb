"""Small building blocks shared by the models (NHWC layout throughout)."""

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def trunc_normal_init(std: float = 0.02, bound: float = 2.0) -> Initializer:
  """timm's `trunc_normal_(std=std)`: N(0, std^2) cut at the absolute values +-bound.

  Unlike `nn.initializers.truncated_normal`, the cut is in absolute units (timm's a=-2, b=2), so
  for std=0.02 it is effectively a plain normal, as in the PyTorch references.
  """
  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return std * jax.random.truncated_normal(key, -bound / std, bound / std, shape, dtype)
  return init


def conv_fan_out_init(kernel_size: int, out_channels: int, groups: int = 1) -> Initializer:
  """N(0, 2 / fan_out), fan_out = k * k * out_channels / groups: the MiT/SegFormer conv init."""
  fan_out = kernel_size * kernel_size * out_channels // groups
  return nn.initializers.normal(stddev=math.sqrt(2.0 / fan_out))


class DropPath(nn.Module):
  """Stochastic depth: zeroes whole samples of a residual branch with probability `rate`.

  Survivors are scaled by 1 / (1 - rate). Identity when deterministic or rate == 0. Draws from
  the 'dropout' rng.
  """
  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    keep_prob = 1.0 - self.rate
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = jax.random.bernoulli(self.make_rng('dropout'), keep_prob, mask_shape)
    return jnp.where(keep, x / jnp.asarray(keep_prob, x.dtype), jnp.zeros((), x.dtype))


def bilinear_resize(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Resizes NHWC `x` to spatial `size` = (H, W) like PyTorch's
  `F.interpolate(mode='bilinear', align_corners=False)` with an explicit output size.

  Both sample at (i + 0.5) * in / out - 0.5 and clamp at the borders; without antialiasing,
  downsampling also uses the plain 2-tap kernel, as PyTorch does.
  """
  n, h, w, c = x.shape
  if (h, w) == tuple(size):
    return x
  return jax.image.resize(x, (n, *size, c), method='bilinear', antialias=False)
