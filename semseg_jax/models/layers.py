"""Small building blocks shared by the models (NHWC layout throughout)."""

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Initializer = Callable[..., jax.Array]

# Resizes and pools written as matrix products run under this name scope, so that the
# multiply-add count (models/stats.py) leaves them out, as the papers' counters do.
RESAMPLING_SCOPE = 'resampling'


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


def stage_drop_path_rates(rate: float, depths: Sequence[int]) -> list[tuple[float, ...]]:
  """Stochastic depth rising linearly from 0 to `rate` over all blocks of all stages
  (torch.linspace(0, rate, sum(depths))), split into one tuple per stage."""
  total = sum(depths)
  rates = [rate * i / max(total - 1, 1) for i in range(total)]
  starts = [sum(depths[:s]) for s in range(len(depths))]
  return [tuple(rates[start:start + depth]) for start, depth in zip(starts, depths)]


def bilinear_resize(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Resizes NHWC `x` to spatial `size` = (H, W) like PyTorch's
  `F.interpolate(mode='bilinear', align_corners=False)` with an explicit output size.

  Both sample at (i + 0.5) * in / out - 0.5 and clamp at the borders; without antialiasing,
  downsampling also uses the plain 2-tap kernel, as PyTorch does.
  """
  n, h, w, c = x.shape
  if (h, w) == tuple(size):
    return x
  with jax.named_scope(RESAMPLING_SCOPE):  # jax.image.resize contracts with weight matrices.
    return jax.image.resize(x, (n, *size, c), method='bilinear', antialias=False)


def resize_align_corners(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Resizes NHWC `x` to spatial `size` = (H, W) like PyTorch's
  `F.interpolate(mode='bilinear', align_corners=True)`: output i samples input position
  i * (in - 1) / (out - 1) (0 when out == 1); blended in float32, returned in x's dtype."""
  y = x.astype(jnp.float32)
  for axis, out_size in zip((1, 2), size):
    in_size = y.shape[axis]
    if in_size == out_size:
      continue
    scale = np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else 0.0
    src = np.arange(out_size, dtype=np.float32) * np.float32(scale)
    low = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    shape = [1] * y.ndim
    shape[axis] = out_size
    weight = jnp.asarray((src - low).astype(np.float32)).reshape(shape)
    y = (jnp.take(y, jnp.asarray(low), axis=axis) * (1.0 - weight)
         + jnp.take(y, jnp.asarray(high), axis=axis) * weight)
  return y.astype(x.dtype)


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
  """Source index of each output position of PyTorch's `F.interpolate(mode='nearest')` with an
  explicit size: floor(dst * scale), scale = float32(in / out) (its float32 rounding is part of
  the result, e.g. 2 -> 82 row 41 reads row 0), clamped to in - 1."""
  scale = np.float32(in_size) / np.float32(out_size)
  src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
  return np.minimum(src, in_size - 1)


def resize_nearest(x: jax.Array, size: tuple[int, int], axes: tuple[int, int] = (1, 2)
                   ) -> jax.Array:
  """PyTorch's 'nearest' (not 'nearest-exact') resize of the two spatial `axes` of `x` to
  `size` = (H, W)."""
  for axis, out_size in zip(axes, size):
    if x.shape[axis] != out_size:
      x = jnp.take(x, jnp.asarray(nearest_indices(x.shape[axis], out_size)), axis=axis)
  return x


def global_avg_pool(x: jax.Array) -> jax.Array:
  """AdaptiveAvgPool2d(1) on NHWC, keeping the 1 x 1 spatial axes."""
  return jnp.mean(x, axis=(1, 2), keepdims=True)


def avg_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """PyTorch's AvgPool2d(3, stride=2, padding=1): zero padding counted in the mean (/ 9)."""
  return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                     count_include_pad=True)


def torch_default_init(fan_in: int) -> Initializer:
  """PyTorch's default Conv2d init of weights (kaiming_uniform_, a=sqrt(5)) and biases:
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = kh * kw * C_in / groups (for references that
  leave their convs at PyTorch's defaults)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def torch_conv(features: int, in_features: int, kernel_size: int = 1, stride: int = 1,
               dilation: int = 1, groups: int = 1, use_bias: bool = False,
               dtype: Any = jnp.float32, name: str | None = None) -> nn.Conv:
  """A PyTorch `nn.Conv2d` left at its default init (weights and biases U(+-1/sqrt(fan_in)),
  `torch_default_init`), with symmetric zero padding dilation * (k - 1) / 2."""
  pad = dilation * (kernel_size - 1) // 2
  init = torch_default_init(kernel_size * kernel_size * in_features // groups)
  return nn.Conv(features, (kernel_size, kernel_size), strides=stride,
                 padding=((pad, pad), (pad, pad)), kernel_dilation=dilation,
                 feature_group_count=groups, use_bias=use_bias, kernel_init=init,
                 bias_init=init, dtype=dtype, name=name)


# --- Convolutional building blocks (the CNN models; PyTorch/mmcv conventions) ---------------

def kaiming_normal_fan_out() -> Initializer:
  """PyTorch's `kaiming_normal_(mode='fan_out', nonlinearity='relu')`: N(0, 2 / fan_out), the
  init of torchvision's ResNet convs and of mmcv's ConvModule."""
  return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
  return (value, value) if isinstance(value, int) else tuple(value)


def conv2d(features: int, kernel_size: int | tuple[int, int], stride: int = 1,
           dilation: int = 1, padding: int | tuple[int, int] | None = None, groups: int = 1,
           use_bias: bool = False, kernel_init: Initializer | None = None,
           dtype: Any = jnp.float32, name: str | None = None) -> nn.Conv:
  """A PyTorch `nn.Conv2d`: explicit symmetric zero padding (default dilation * (k - 1) // 2 per
  side, which keeps the size at stride 1), no bias by default (a norm follows), He init."""
  kh, kw = _pair(kernel_size)
  if padding is None:
    padding = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
  ph, pw = _pair(padding)
  return nn.Conv(features, (kh, kw), strides=stride, padding=((ph, ph), (pw, pw)),
                 kernel_dilation=dilation, feature_group_count=groups, use_bias=use_bias,
                 kernel_init=kernel_init or kaiming_normal_fan_out(),
                 bias_init=nn.initializers.zeros, dtype=dtype, name=name)


def batch_norm(train: bool, dtype: Any = jnp.float32, zero_init: bool = False,
               epsilon: float = 1e-5, name: str | None = None) -> nn.BatchNorm:
  """PyTorch's BatchNorm2d (momentum 0.1 = flax 0.9, eps 1e-5). Under jit over a sharded batch
  its statistics are those of the global batch (SyncBN). `zero_init` starts gamma at 0."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon,
                      dtype=dtype, scale_init=nn.initializers.zeros if zero_init else
                      nn.initializers.ones, name=name)


class ConvBNAct(nn.Module):
  """mmcv's ConvModule: conv (no bias) -> BatchNorm -> activation (None: linear)."""
  features: int
  kernel_size: int | tuple[int, int] = 3
  stride: int = 1
  dilation: int = 1
  groups: int = 1
  activation: Callable[[jax.Array], jax.Array] | None = nn.relu
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = conv2d(self.features, self.kernel_size, self.stride, self.dilation, groups=self.groups,
               dtype=self.dtype, name='conv')(x)
    x = batch_norm(train, self.dtype, name='bn')(x)
    return x if self.activation is None else self.activation(x)


class SegClassifier(nn.Module):
  """mmseg's BaseDecodeHead.cls_seg: channel dropout (Dropout2d) then a 1x1 conv with bias,
  weights N(0, 0.01^2)."""
  num_classes: int
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
    return conv2d(self.num_classes, 1, use_bias=True, kernel_init=nn.initializers.normal(0.01),
                  dtype=self.dtype, name='conv_seg')(x)


def max_pool(x: jax.Array, window: int, stride: int, padding: int = 0,
             ceil_mode: bool = False) -> jax.Array:
  """PyTorch's MaxPool2d: padding counts as -inf; ceil_mode adds the partial last window."""
  pads = []
  for size in x.shape[1:3]:
    extra = 0
    if ceil_mode:
      out = -(-(size + 2 * padding - window) // stride) + 1
      if (out - 1) * stride >= size + padding:  # PyTorch drops a window starting in the padding.
        out -= 1
      extra = max((out - 1) * stride + window - (size + 2 * padding), 0)
    pads.append((padding, padding + extra))
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pads)


def max_pool_2x2_with_indices(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """2x2 max pooling at stride 2 that also returns where each maximum was (0..3 within its
  window, row-major; the first maximum on ties), for max-unpooling (SegNet, ENet).

  Odd sizes are padded with -inf to the next even size (Caffe's and ceil_mode's rounding), so no
  row or column is dropped; `max_unpool_2x2` crops back to the input size.
  """
  n, h, w, c = x.shape
  x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
  windows = x.reshape(n, (h + 1) // 2, 2, (w + 1) // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  windows = windows.reshape(n, (h + 1) // 2, (w + 1) // 2, 4, c)
  indices = jnp.argmax(windows, axis=3).astype(jnp.int8)
  pooled = jnp.take_along_axis(windows, indices[:, :, :, None].astype(jnp.int32), axis=3)
  return pooled[:, :, :, 0], indices


def max_unpool_2x2(x: jax.Array, indices: jax.Array, output_hw: tuple[int, int]) -> jax.Array:
  """Inverse of `max_pool_2x2_with_indices`: each value goes back to where its maximum was, the
  other three places of its window are zero (PyTorch's MaxUnpool2d); output cropped to
  `output_hw`."""
  n, hp, wp, c = x.shape
  onehot = jax.nn.one_hot(indices, 4, axis=3, dtype=x.dtype)  # [n, hp, wp, 4, c]
  windows = (onehot * x[:, :, :, None]).reshape(n, hp, wp, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  full = windows.reshape(n, 2 * hp, 2 * wp, c)
  return full[:, :output_hw[0], :output_hw[1]]
