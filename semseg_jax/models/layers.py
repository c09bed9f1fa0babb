"""The building blocks that more than one model uses (NHWC layout throughout): initialisers, the
convolution factories, norm-conv blocks, the backbone + heads composition, stochastic depth,
resizes and pools. Everything here follows PyTorch's conventions (padding, pooling windows,
resize arithmetic), bit for bit where the docstring says so.

A piece that only one paper's network has lives in that model's file; a backbone or decode head
that several models share lives in backbones/ or heads/.
"""

import contextlib
import contextvars
import functools
import math
from typing import Any, Callable, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Initializer = Callable[..., jax.Array]
Padding = int | Sequence[int] | Sequence[tuple[int, int]] | str | None

# Resizes and pools written as matrix products run under this name scope, so that the
# multiply-add count (tools/model_stats.py) leaves them out, as the papers' counters do.
RESAMPLING_SCOPE = 'resampling'


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
  return (value, value) if isinstance(value, int) else tuple(value)


# --- Initialisers -------------------------------------------------------------------------------

def trunc_normal_init(std: float = 0.02, bound: float = 2.0) -> Initializer:
  """timm's `trunc_normal_(std=std)`: N(0, std^2) cut at the absolute values +-bound.

  Unlike `nn.initializers.truncated_normal`, the cut is in absolute units (timm's a=-2, b=2), so
  for std=0.02 it is effectively a plain normal, as in the PyTorch references.
  """
  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return std * jax.random.truncated_normal(key, -bound / std, bound / std, shape, dtype)
  return init


def he_normal_init(fan: int) -> Initializer:
  """N(0, 2 / fan) for a fan the caller counts (fan_in or fan_out, groups divided out): U-Net's
  and Caffe's MSRA init, and the `normal_(0, sqrt(2 / fan_out))` of MiT, MSCAN and TopFormer."""
  return nn.initializers.normal(stddev=math.sqrt(2.0 / fan))


def conv_fan_out_init(kernel_size: int | tuple[int, int], out_channels: int,
                      groups: int = 1) -> Initializer:
  """N(0, 2 / fan_out), fan_out = kh * kw * out_channels / groups: the conv init of MiT
  (SegFormer), MSCAN (SegNeXt) and TopFormer."""
  kh, kw = _pair(kernel_size)
  return he_normal_init(kh * kw * out_channels // groups)


def kaiming_normal_fan_out() -> Initializer:
  """PyTorch's `kaiming_normal_(mode='fan_out', nonlinearity='relu')`: N(0, 2 / fan_out) with
  fan_out read off the kernel's shape; the init of torchvision's ResNet convs and of mmcv's
  ConvModule."""
  return nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def torch_default_init(fan_in: int) -> Initializer:
  """PyTorch's default Conv2d init of weights (kaiming_uniform_, a=sqrt(5)) and biases, which is
  also Torch7's: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = kh * kw * C_in / groups (for
  references that leave their convs at the framework's defaults)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


# --- Convolutions -------------------------------------------------------------------------------

# How convolutions are lowered: 'xla' hands every one to XLA's convolution; 'cpu' computes a
# depthwise convolution as shifted multiply-adds, a 1x1 convolution as a matrix product and a
# wide dense convolution's kernel gradient as matrix products, the forms that XLA:CPU runs (and
# differentiates) fastest; 'auto' picks 'cpu' on the CPU backend and 'xla' elsewhere, at trace
# time. `conv_lowering` sets it.
_CONV_LOWERING = contextvars.ContextVar('conv_lowering', default='auto')
CONV_LOWERINGS = ('auto', 'cpu', 'xla')


@contextlib.contextmanager
def conv_lowering(kind: str) -> Iterator[None]:
  """Within it, models trace their convolutions as `kind` ('auto', 'cpu' or 'xla'; see
  `grouped_conv`). The results agree to float rounding; tools/model_stats.py counts
  multiply-adds on 'xla'."""
  if kind not in CONV_LOWERINGS:
    raise ValueError(f'conv lowering {kind!r}: expected one of {CONV_LOWERINGS}.')
  token = _CONV_LOWERING.set(kind)
  try:
    yield
  finally:
    _CONV_LOWERING.reset(token)


def _tap_window(x: jax.Array, i: int, j: int, strides: tuple[int, int],
                dilation: tuple[int, int], out_hw: tuple[int, int]) -> jax.Array:
  """The [N, out_h, out_w, C] strided window of (already padded) NHWC `x` that kernel tap
  (i, j) multiplies."""
  (sh, sw), (dh, dw), (out_h, out_w) = strides, dilation, out_hw
  return jax.lax.slice(
      x, (0, i * dh, j * dw, 0),
      (x.shape[0], i * dh + (out_h - 1) * sh + 1, j * dw + (out_w - 1) * sw + 1, x.shape[3]),
      (1, sh, sw, 1))


def _shifted_taps(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                  dilation: tuple[int, int], out_hw: tuple[int, int]) -> jax.Array:
  """sum over taps (i, j) of `_tap_window(x, i, j)` times kernel[i, j] ([kh, kw, C]),
  accumulated in float32 at least."""
  accumulate = jnp.promote_types(x.dtype, jnp.float32)
  total = None
  for i in range(kernel.shape[0]):
    for j in range(kernel.shape[1]):
      window = _tap_window(x, i, j, strides, dilation, out_hw)
      term = (window * kernel[i, j]).astype(accumulate)
      total = term if total is None else total + term
  return total.astype(x.dtype)


def _out_size(padded: int, taps: int, stride: int, dilation: int) -> int:
  return (padded - dilation * (taps - 1) - 1) // stride + 1


# A depthwise kernel gradient takes all its taps' sums in one variadic reduction up to this many
# channels, and one reduction per tap above it (`_depthwise_backward`; jax 0.12.1 on 2 cores).
VARIADIC_TAP_SUMS_MAX_CHANNELS = 1024


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise_by_shifts(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                         pads: tuple[tuple[int, int], tuple[int, int]],
                         dilation: tuple[int, int]) -> jax.Array:
  """A depthwise convolution of NHWC `x` with kernel [kh, kw, C] (one tap per channel) as a sum
  of kh x kw shifted, strided, scaled copies of the padded input. XLA:CPU runs a grouped
  convolution with one channel per group about as slowly as a dense one; these elementwise terms
  fuse into one loop. The gradients are written out (`_depthwise_backward`): XLA's own transpose
  of the slices writes the input gradient in a channel-major layout, ~3x slower."""
  padded = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  out_hw = tuple(_out_size(padded.shape[1 + a], kernel.shape[a], strides[a], dilation[a])
                 for a in (0, 1))
  return _shifted_taps(padded, kernel, strides, dilation, out_hw)


def _depthwise_forward(x, kernel, strides, pads, dilation):
  return _depthwise_by_shifts(x, kernel, strides, pads, dilation), (x, kernel)


def _depthwise_backward(strides, pads, dilation, residuals, grad):
  """Input gradient: the gradient dilated by the stride, padded, and run through the same
  shifted taps with the kernel flipped (a transposed convolution), cropped to the input. Kernel
  gradient: per tap, the sum over pixels of its input window times the gradient."""
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  padded_hw = [x.shape[1 + a] + sum(pads[a]) for a in (0, 1)]
  out_hw = grad.shape[1:3]
  spread = []
  for a, taps in ((0, kh), (1, kw)):
    dilated = (out_hw[a] - 1) * strides[a] + 1
    spread.append((dilation[a] * (taps - 1), padded_hw[a] - dilated, strides[a] - 1))
  grad_padded = jax.lax.pad(grad, jnp.zeros((), grad.dtype),
                            ((0, 0, 0), *spread, (0, 0, 0)))
  grad_x = _shifted_taps(grad_padded, kernel[::-1, ::-1], (1, 1), dilation, padded_hw)
  grad_x = grad_x[:, pads[0][0]:pads[0][0] + x.shape[1], pads[1][0]:pads[1][0] + x.shape[2]]
  padded = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  accumulate = jnp.promote_types(x.dtype, jnp.float32)
  # Each tap's products are summed by the reduction that computes them, over a gradient
  # materialised once (without the barrier XLA fused its producers, the normalisation and
  # activation backward, into the reductions and ran them once per tap: DeepLabV3+ R50's ASPP
  # 1.1-1.6 s per convolution). Up to VARIADIC_TAP_SUMS_MAX_CHANNELS channels one variadic
  # reduction takes every tap's sum in one pass over the input; wider, a reduction per tap.
  # Summing the stacked products stored them all, each the size of the input, and concatenated
  # them (a 1x21 strip on [16, 128, 128, 64]: 1.4 GB twice; a step of that convolution, a
  # normalisation and a GELU 2.4 s, against 0.7 s variadic and 1.4 s per tap); DeepLabV3+ R50's
  # step with the variadic form on its 2048-channel dilated ASPP taps took 35 s against 30 s; a
  # matrix product per tap doubled the kernels to compile (SegNeXt-T's step 72.6 -> 108.4 s).
  grad = jax.lax.optimization_barrier(grad)
  products = [(_tap_window(padded, i, j, strides, dilation, out_hw) * grad).astype(accumulate)
              for i in range(kh) for j in range(kw)]
  if x.shape[3] <= VARIADIC_TAP_SUMS_MAX_CHANNELS:
    sums = jax.lax.reduce(products, [jnp.zeros((), accumulate)] * len(products),
                          lambda totals, terms: [a + b for a, b in zip(totals, terms)], (0, 1, 2))
  else:
    sums = [jnp.sum(product, axis=(0, 1, 2)) for product in products]
  grad_kernel = jnp.stack(sums).reshape(kernel.shape).astype(kernel.dtype)
  return grad_x, grad_kernel


_depthwise_by_shifts.defvjp(_depthwise_forward, _depthwise_backward)


def _depthwise(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
               pads: Sequence[tuple[int, int]], dilation: tuple[int, int]) -> jax.Array:
  """`_depthwise_by_shifts` for an HWIO kernel [kh, kw, 1, C x multiplier]: with a channel
  multiplier m > 1, output channel g * m + k reads input channel g."""
  multiplier = kernel.shape[3] // x.shape[3]
  if multiplier > 1:
    x = jnp.repeat(x, multiplier, axis=3)
  return _depthwise_by_shifts(x, kernel[:, :, 0], tuple(strides),
                              tuple(tuple(p) for p in pads), tuple(dilation))


# A dense convolution's kernel gradient goes to matrix products when both channel counts are
# at least this (below it XLA's own was as fast or faster on 2 cores, jax 0.10 and 0.12).
TAP_GRADIENT_MIN_CHANNELS = 128


def _dense_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                pads: tuple[tuple[int, int], tuple[int, int]], dilation: tuple[int, int],
                precision: Any) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, strides, pads, rhs_dilation=dilation,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv_with_tap_kernel_gradient(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                                   pads: tuple[tuple[int, int], tuple[int, int]],
                                   dilation: tuple[int, int], precision: Any) -> jax.Array:
  """XLA's dense convolution of NHWC `x` with an HWIO kernel, its input gradient XLA's too, and
  its kernel gradient written out as one matrix product per kernel tap: the tap's strided input
  window as [pixels, C_in] times the output gradient as [pixels, C_out]. XLA:CPU computed the
  kernel gradient of a wide 3x3 convolution as a convolution that took 4-7x the forward pass
  (2560 -> 512 channels at 64x64, batch 2: 5.3 s against 1.2 s); the products take ~1 s."""
  return _dense_conv(x, kernel, strides, pads, dilation, precision)


def _tap_gradient_forward(x, kernel, strides, pads, dilation, precision):
  return _dense_conv(x, kernel, strides, pads, dilation, precision), (x, kernel)


def _tap_gradient_backward(strides, pads, dilation, precision, residuals, grad):
  """Kernel tap (i, j)'s gradient is sum_p window_ij(x)[p] (x) grad[p] over output pixels p.
  At stride 1 with fewer output channels than input ones, the same sum is taken over input
  pixels u as x[u] (x) grad[u + pad - offset_ij] (zero outside the output), so that the
  shifted copies are of the narrower gradient (DeepLabV3+'s 2560 -> 512 bottleneck: 9 copies of
  [8192, 2560] took ~3 s)."""
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x: _dense_conv(x, kernel, strides, pads, dilation, precision), x)
  grad_x, = input_vjp(grad)
  in_channels, out_channels = kernel.shape[2:]
  accumulate = jnp.promote_types(x.dtype, jnp.float32)

  def contract_pixels(a, b):  # [P, C_in] and [P, C_out] -> [C_in, C_out]
    return jax.lax.dot_general(a.reshape(-1, a.shape[3]), b.reshape(-1, b.shape[3]),
                               (((0,), (0,)), ((), ())), precision=precision,
                               preferred_element_type=accumulate)

  kh, kw = kernel.shape[:2]
  taps = [(i, j) for i in range(kh) for j in range(kw)]
  if strides == (1, 1) and out_channels < in_channels:
    # The gradient padded as for a transposed convolution ((k - 1) * d - pad per side, negative
    # crops): its window for tap (k - 1 - i) is grad[u + pad - offset_i] over input pixels u.
    spread = [(dilation[a] * (k - 1) - pads[a][0], dilation[a] * (k - 1) - pads[a][1], 0)
              for a, k in ((0, kh), (1, kw))]
    padded_grad = jax.lax.pad(grad, jnp.zeros((), grad.dtype), ((0, 0, 0), *spread, (0, 0, 0)))
    grads = [contract_pixels(x, _tap_window(padded_grad, kh - 1 - i, kw - 1 - j, (1, 1),
                                            dilation, x.shape[1:3]))
             for i, j in taps]
  else:
    padded = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    grads = [contract_pixels(_tap_window(padded, i, j, strides, dilation, grad.shape[1:3]), grad)
             for i, j in taps]
  return grad_x, jnp.stack(grads).reshape(kernel.shape).astype(kernel.dtype)


_conv_with_tap_kernel_gradient.defvjp(_tap_gradient_forward, _tap_gradient_backward)


def grouped_conv(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                 padding: str | Sequence[tuple[int, int]],
                 lhs_dilation: Sequence[int] | None = None,
                 rhs_dilation: Sequence[int] | None = None, dimension_numbers: Any = None,
                 feature_group_count: int = 1, precision: Any = None, **kwargs: Any
                 ) -> jax.Array:
  """`jax.lax.conv_general_dilated` for the models' convolutions (`conv2d` hands it to nn.Conv),
  lowered as `conv_lowering` says: under 'cpu', an NHWC depthwise convolution (as many groups as
  input channels) becomes shifted multiply-adds and an unpadded 1x1 convolution a matrix product
  of [pixels, channels] by the kernel (whose kernel gradient XLA:CPU otherwise computes as a
  convolution with an image-sized window, ~10x slower), and a wider dense one keeps XLA's
  convolution but takes its kernel gradient from matrix products
  (`_conv_with_tap_kernel_gradient`); anything else, and everything under 'xla', goes to XLA's
  convolution."""
  kind = _CONV_LOWERING.get()
  if kind == 'auto':
    kind = 'cpu' if jax.default_backend() == 'cpu' else 'xla'
  strides = tuple(window_strides)
  dilation = tuple(rhs_dilation or (1,) * len(strides))
  plain = (kind == 'cpu' and lhs.ndim == 4 and not kwargs
           and all(d == 1 for d in (lhs_dilation or (1, 1)))
           and dimension_numbers == jax.lax.conv_dimension_numbers(
               lhs.shape, rhs.shape, ('NHWC', 'HWIO', 'NHWC')))
  if plain:
    window = [d * (k - 1) + 1 for d, k in zip(dilation, rhs.shape[:2])]
    pads = (jax.lax.padtype_to_pads(lhs.shape[1:3], window, strides, padding)
            if isinstance(padding, str) else [tuple(p) for p in padding])
    pad_values = [p for pair in pads for p in pair]
    if (feature_group_count == lhs.shape[-1] > 1 and rhs.shape[2] == 1
        and min(pad_values) >= 0):
      return _depthwise(lhs, rhs, strides, pads, dilation)
    if feature_group_count == 1 and rhs.shape[:2] == (1, 1) and not any(pad_values):
      x = lhs[:, ::strides[0], ::strides[1]]
      # On [pixels, channels]: the kernel gradient then contracts the leading dimension of two
      # matrices, which XLA:CPU hands to its matrix multiply as they are; contracting (N, H, W)
      # of 4-d arrays made it copy the output gradient into a transposed layout first.
      y = jax.lax.dot_general(x.reshape(-1, x.shape[3]), rhs[0, 0], (((1,), (0,)), ((), ())),
                              precision=precision)
      return y.reshape(*x.shape[:3], rhs.shape[3])
    if (feature_group_count == 1 and rhs.shape[:2] != (1, 1) and min(pad_values) >= 0
        and min(rhs.shape[2:]) >= TAP_GRADIENT_MIN_CHANNELS):
      return _conv_with_tap_kernel_gradient(lhs, rhs, strides, tuple(tuple(p) for p in pads),
                                            dilation, precision)
  return jax.lax.conv_general_dilated(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation,
                                      dimension_numbers, feature_group_count,
                                      precision=precision, **kwargs)


def attention(query: jax.Array, key: jax.Array, value: jax.Array, scale: float,
              dtype: Any) -> jax.Array:
  """Softmax attention of query [N, T, heads, d] over key [N, S, heads, d] and value
  [N, S, heads, dv] -> [N, T, heads, dv]: softmax(scale * q k^T) (in float32) v. On GPU in
  bfloat16 or float16 with one head size the cuDNN kernels may take (d = dv, a multiple of 8,
  at most 128): `jax.nn.dot_product_attention`'s fused cuDNN attention, which never writes the
  [T, S] scores to memory."""
  head_dim = query.shape[-1]
  if (jax.default_backend() == 'gpu' and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)
      and value.shape[-1] == head_dim and head_dim % 8 == 0 and head_dim <= 128):
    return jax.nn.dot_product_attention(query.astype(dtype), key.astype(dtype),
                                        value.astype(dtype), scale=scale,
                                        implementation='cudnn')
  scores = jnp.einsum('nqhd,nkhd->nhqk', query, key) * scale
  probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(dtype)
  return jnp.einsum('nhqk,nkhd->nqhd', probs, value)


def conv2d(features: int, kernel_size: int | tuple[int, int], stride: int = 1,
           dilation: int | tuple[int, int] = 1, padding: Padding = None, groups: int = 1,
           use_bias: bool = False, kernel_init: Initializer | None = None,
           bias_init: Initializer = nn.initializers.zeros, dtype: Any = jnp.float32,
           name: str | None = None) -> nn.Conv:
  """A PyTorch `nn.Conv2d`, the one convolution factory of the models.

  padding: None (default) pads dilation * (k - 1) // 2 zeros per side (per axis for a (dh, dw)
  dilation), which keeps the size at stride 1; an int or (ph, pw) pads symmetrically;
  ((top, bottom), (left, right)) explicitly; 'SAME' is TensorFlow's (asymmetric where the
  total is odd). No bias by default (a norm follows); weights He normal (fan_out,
  `kaiming_normal_fan_out`) unless `kernel_init`; biases zero unless `bias_init`.
  """
  (kh, kw), (dh, dw) = _pair(kernel_size), _pair(dilation)
  if padding is None:
    padding = (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
  if not isinstance(padding, str):
    padding = tuple((p, p) if isinstance(p, int) else tuple(p) for p in _pair(padding))
  return nn.Conv(features, (kh, kw), strides=stride, padding=padding, kernel_dilation=dilation,
                 feature_group_count=groups, use_bias=use_bias,
                 kernel_init=kernel_init or kaiming_normal_fan_out(), bias_init=bias_init,
                 dtype=dtype, conv_general_dilated=grouped_conv, name=name)


def torch_conv(features: int, in_features: int, kernel_size: int | tuple[int, int] = 1,
               stride: int = 1, dilation: int | tuple[int, int] = 1, groups: int = 1,
               use_bias: bool = False, padding: Padding = None, dtype: Any = jnp.float32,
               name: str | None = None) -> nn.Conv:
  """`conv2d` left at PyTorch's (and Torch7's) default init: weights and biases
  U(+-1/sqrt(fan_in)), `torch_default_init`."""
  kh, kw = _pair(kernel_size)
  init = torch_default_init(kh * kw * in_features // groups)
  return conv2d(features, (kh, kw), stride, dilation, padding, groups, use_bias,
                kernel_init=init, bias_init=init, dtype=dtype, name=name)


def fan_out_conv(features: int, kernel_size: int | tuple[int, int], stride: int = 1,
                 padding: Padding = None, groups: int = 1, use_bias: bool = False,
                 dtype: Any = jnp.float32, name: str | None = None) -> nn.Conv:
  """`conv2d` with the conv init of MiT (SegFormer), MSCAN (SegNeXt) and TopFormer:
  N(0, 2 / fan_out) weights with fan_out = kh * kw * out / groups (`conv_fan_out_init`: the
  groups are divided out, unlike `kaiming_normal_fan_out`), zero biases."""
  return conv2d(features, kernel_size, stride, padding=padding, groups=groups,
                use_bias=use_bias, kernel_init=conv_fan_out_init(kernel_size, features, groups),
                dtype=dtype, name=name)


def conv_transpose2d(features: int, kernel_size: int, stride: int, padding: int = 0,
                     output_padding: int = 0, use_bias: bool = True, *,
                     kernel_init: Initializer, bias_init: Initializer = nn.initializers.zeros,
                     dtype: Any = jnp.float32, name: str | None = None) -> nn.ConvTranspose:
  """PyTorch's ConvTranspose2d(kernel_size, stride, padding, output_padding) (Torch7's
  SpatialFullConvolution with adj = output_padding): output (n - 1) * stride - 2 * padding +
  kernel_size + output_padding. The kernel is stored (kh, kw, out, in): the torch weight
  [in, out, kh, kw] transposed (2, 3, 1, 0)."""
  pads = (kernel_size - 1 - padding, kernel_size - 1 - padding + output_padding)
  return nn.ConvTranspose(features, (kernel_size, kernel_size), strides=(stride, stride),
                          padding=(pads, pads), transpose_kernel=True, use_bias=use_bias,
                          kernel_init=kernel_init, bias_init=bias_init, dtype=dtype, name=name)


def bilinear_filter(size: int) -> np.ndarray:
  """The [size, size] bilinear interpolation kernel of FCN's surgery.upsample_filt: for an even
  size 2f, weights 1 - |t - (f - 1/2)| / f along each axis."""
  factor = (size + 1) // 2
  center = factor - 1 if size % 2 == 1 else factor - 0.5
  taps = 1.0 - np.abs(np.arange(size) - center) / factor
  return np.outer(taps, taps)


def bilinear_upsampling_init(key: jax.Array, shape: tuple[int, ...],
                             dtype: Any = jnp.float32) -> jax.Array:
  """A [k, k, C, C] transposed-conv kernel that upsamples each channel on its own, bilinearly
  (`bilinear_filter` on the channel diagonal, zeros elsewhere)."""
  del key
  size, _, c_in, c_out = shape
  if c_in != c_out:
    raise ValueError(f'Bilinear upsampling maps C channels to C; got {c_in} -> {c_out}.')
  return jnp.asarray(bilinear_filter(size)[:, :, None, None] * np.eye(c_in), dtype)


class BilinearConvTranspose(nn.Module):
  """FCN's learnable upsampling by an even `factor` f ("deconvolution", Long et al. 2015):
  PyTorch's ConvTranspose2d(C, C, 2f, stride=f, padding=f/2, bias=False) initialised to
  bilinear interpolation: [N, h, w, C] -> [N, f*h, f*w, C], then cropped to `output_hw` (at most
  f*h x f*w) at the bottom and right. The kernel is stored [2f, 2f, C_in, C_out]: the torch
  weight [C_in, C_out, 2f, 2f] transposed (2, 3, 0, 1)."""
  factor: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, output_hw: Sequence[int] | None = None) -> jax.Array:
    f, c = self.factor, x.shape[-1]
    if output_hw is None:
      output_hw = (f * x.shape[1], f * x.shape[2])
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


def fixed_bilinear_upsampling(x: jax.Array, factor: int,
                              output_hw: Sequence[int] | None = None) -> jax.Array:
  """Upsampling by an even `factor` f with the bilinear deconvolution frozen (DRN's `up`:
  ConvTranspose2d(C, C, 2f, stride=f, padding=f/2, groups=C) holding `bilinear_filter(2f)`,
  not trained): each channel on its own, [N, h, w, C] -> [N, f*h, f*w, C], cropped to
  `output_hw` at the bottom and right. The same numbers as BilinearConvTranspose at its
  initialisation."""
  n, h, w, c = x.shape
  if output_hw is None:
    output_hw = (factor * h, factor * w)
  kernel = jnp.asarray(bilinear_filter(2 * factor), x.dtype)[:, :, None, None]
  pad = 2 * factor - 1 - factor // 2
  channels = x.transpose(0, 3, 1, 2).reshape(n * c, h, w, 1)
  y = jax.lax.conv_transpose(channels, kernel, strides=(factor, factor),
                             padding=((pad, pad), (pad, pad)),
                             dimension_numbers=('NHWC', 'HWIO', 'NHWC'), transpose_kernel=True)
  y = y.reshape(n, c, factor * h, factor * w).transpose(0, 2, 3, 1)
  return y[:, :output_hw[0], :output_hw[1]]


# --- Norms and conv blocks (PyTorch/mmcv conventions) -------------------------------------------

def _batch_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-channel mean and (biased) variance of NHWC `x` in float32, as flax computes them:
  E[x^2] - E[x]^2, clipped at 0."""
  axes = tuple(range(x.ndim - 1))
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  mean = jnp.mean(x, axes)
  return mean, jnp.maximum(0.0, jnp.mean(jax.lax.square(x), axes) - jax.lax.square(mean))


def _normalize(x, mean, var, scale, bias, epsilon, dtype):
  return ((x - mean) * (jax.lax.rsqrt(var + epsilon) * scale) + bias).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
                      dtype: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(normalised x, batch mean, batch variance), the normalisation's backward written out
  (`_batch_norm_backward`)."""
  mean, var = _batch_statistics(x)
  return _normalize(x, mean, var, scale, bias, epsilon, dtype), mean, var


def _batch_norm_forward(x, scale, bias, epsilon, dtype):
  outputs = _batch_norm_train(x, scale, bias, epsilon, dtype)
  return outputs, (x, outputs[1], jax.lax.rsqrt(outputs[2] + epsilon), scale)


def _batch_norm_backward(epsilon, dtype, residuals, grads):
  """Two per-channel sums (of the gradient g, and of g times the input) and one elementwise
  pass: with y = (x - m) * a + b, a = scale / sqrt(v + eps), the input gradient is
  a * g - (a / n) * (sum g + (x - m) * inv^2 * sum g (x - m)), plus the statistics' own
  gradients (dm/dx = 1 / n, dv/dx = 2 (x - m) / n), written as a * g + slope * x + offset so
  that no centred copy of x is kept. sum g (x - m) = sum g x - m sum g cancels as the forward's
  E[x^2] - E[x]^2 does. Autodiff of the forward took ~45% more time (BatchNorm + ReLU, forward
  and backward at 2x128x128x512: 130 against 90 ms) and ~4 more kernels per normalisation."""
  del epsilon, dtype
  x, mean, inv, scale = residuals
  grad, grad_mean, grad_var = grads
  accumulate = jnp.promote_types(x.dtype, jnp.float32)
  axes = tuple(range(x.ndim - 1))
  n = math.prod(x.shape[:-1])
  x32, grad = x.astype(accumulate), grad.astype(accumulate)
  grad_sum = jnp.sum(grad, axes)
  grad_centred_sum = jnp.sum(grad * x32, axes) - mean * grad_sum
  a = inv * scale
  slope = 2.0 * grad_var / n - a * inv * inv * grad_centred_sum / n
  offset = grad_mean / n - a * grad_sum / n - slope * mean
  grad_x = (a * grad + slope * x32 + offset).astype(x.dtype)
  return grad_x, (grad_centred_sum * inv).astype(scale.dtype), grad_sum.astype(scale.dtype)


_batch_norm_train.defvjp(_batch_norm_forward, _batch_norm_backward)


class BatchNorm(nn.Module):
  """Batch normalisation over the last axis with flax's `nn.BatchNorm`'s variables (params
  scale, bias; batch_stats mean, var) and forward arithmetic (statistics in float32, running
  averages of the biased batch variance, where PyTorch keeps the unbiased one; nothing updated
  while initialising), and a written-out backward (`_batch_norm_backward`). Under jit over a
  sharded batch its statistics are those of the global batch (SyncBN)."""
  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None
  scale_init: Initializer = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = (x.shape[-1],)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, channels, jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, channels, jnp.float32)
    scale = self.param('scale', self.scale_init, channels, jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, channels, jnp.float32)
    dtype = self.dtype or jnp.result_type(x, scale)
    if self.use_running_average:
      return _normalize(x, running_mean.value, running_var.value, scale, bias, self.epsilon,
                        dtype)
    y, mean, var = _batch_norm_train(x, scale, bias, self.epsilon, jnp.dtype(dtype))
    if not self.is_initializing():
      running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
      running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    return y


def _row_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and variance over the last axis (kept as size 1), in float32, two-pass."""
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  mean = jnp.mean(x, -1, keepdims=True)
  return mean, jnp.mean(jax.lax.square(x - mean), -1, keepdims=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
                dtype: Any) -> jax.Array:
  """x normalised over its last axis with flax's arithmetic (two-pass variance in float32), the
  backward written out (`_layer_norm_backward`)."""
  return _normalize(x, *_row_statistics(x), scale, bias, epsilon, dtype)


def _layer_norm_forward(x, scale, bias, epsilon, dtype):
  mean, var = _row_statistics(x)
  return (_normalize(x, mean, var, scale, bias, epsilon, dtype),
          (x, mean, jax.lax.rsqrt(var + epsilon), scale))


def _layer_norm_backward(epsilon, dtype, residuals, grad):
  """With x^ = (x - m) / sqrt(v + eps) per row and g' = g * scale: input gradient
  (g' - mean g' - x^ mean(g' x^)) / sqrt(v + eps); scale's sum g x^ and bias's sum g over the
  rows. Autodiff of the forward had 2-5 more kernels per normalisation and ran up to ~40%
  slower on SegFormer's narrow stages."""
  del epsilon, dtype
  x, mean, inv, scale = residuals
  accumulate = jnp.promote_types(x.dtype, jnp.float32)
  grad = grad.astype(accumulate)
  normalised = (x.astype(accumulate) - mean) * inv
  scaled = grad * scale
  grad_x = inv * (scaled - jnp.mean(scaled, -1, keepdims=True)
                  - normalised * jnp.mean(scaled * normalised, -1, keepdims=True))
  rows = tuple(range(x.ndim - 1))
  return (grad_x.astype(x.dtype), jnp.sum(grad * normalised, rows).astype(scale.dtype),
          jnp.sum(grad, rows).astype(scale.dtype))


_layer_norm.defvjp(_layer_norm_forward, _layer_norm_backward)


class LayerNorm(nn.Module):
  """Layer normalisation over the last axis with flax's `nn.LayerNorm(use_fast_variance=False)`
  variables (scale, bias) and forward arithmetic, and a written-out backward
  (`_layer_norm_backward`). PyTorch's nn.LayerNorm(C) over channels-last tokens."""
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = (x.shape[-1],)
    scale = self.param('scale', nn.initializers.ones, channels, jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, channels, jnp.float32)
    dtype = self.dtype or jnp.result_type(x, scale)
    return _layer_norm(x, scale, bias, self.epsilon, jnp.dtype(dtype))


def batch_norm(train: bool, dtype: Any = jnp.float32, zero_init: bool = False,
               epsilon: float = 1e-5, name: str | None = None) -> BatchNorm:
  """PyTorch's BatchNorm2d (momentum 0.1 = flax 0.9, eps 1e-5). `zero_init` starts gamma at
  0."""
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon, dtype=dtype,
                   scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones,
                   name=name)


def conv_beside_max_pool(x: jax.Array, features: int, train: bool, dtype: Any,
                         bn_epsilon: float, resize_pooled: bool = False,
                         kernel_init: Initializer | None = None,
                         bn_scale_init: Initializer = nn.initializers.ones) -> jax.Array:
  """ENet's initial block and ERFNet's and EDANet's downsampler without their activation,
  called inside a module's compact scope (its `conv` and `bn`): a 3x3 stride-2 conv with bias
  (PyTorch's init, or the weights' `kernel_init`) to `features - C_in` channels beside 2x2
  stride-2 max pooling, concatenated (conv first), then BatchNorm (gamma from
  `bn_scale_init`). At an odd side the pooling rounds up (ceil mode) like the conv, or with
  `resize_pooled` (mmseg's ERFNet) rounds down and is bilinearly resized to the conv's size."""
  c_in = x.shape[-1]
  torch_init = torch_default_init(3 * 3 * c_in)
  conv = conv2d(features - c_in, 3, 2, use_bias=True, kernel_init=kernel_init or torch_init,
                bias_init=torch_init, dtype=dtype, name='conv')(x)
  if resize_pooled:
    pooled = max_pool(x, 2, 2)
    if pooled.shape[1:3] != conv.shape[1:3]:
      pooled = bilinear_resize(pooled, conv.shape[1:3])
  else:
    pooled = max_pool(x, 2, 2, ceil_mode=True)
  x = jnp.concatenate([conv, pooled.astype(conv.dtype)], axis=-1)
  return BatchNorm(use_running_average=not train, epsilon=bn_epsilon, dtype=dtype,
                   scale_init=bn_scale_init, name='bn')(x)


class PReLU(nn.Module):
  """PyTorch's / Torch7's nn.PReLU(C): max(x, 0) + a_c * min(x, 0), one slope a_c per channel
  (PyTorch's `weight`), starting at `initial_slope` (the frameworks' 0.25 by default)."""
  initial_slope: float = 0.25
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    slope = self.param('slope', nn.initializers.constant(self.initial_slope), (x.shape[-1],),
                       jnp.float32)
    return jnp.where(x >= 0, x, x * slope.astype(x.dtype))


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


class DepthwiseSeparableConvBNAct(nn.Module):
  """mmcv's DepthwiseSeparableConvModule: a depthwise k x k ConvModule (conv, BN, activation)
  then a pointwise 1x1 ConvModule to `features` (conv, BN, activation); without
  `pointwise_norm` the pointwise conv has a bias instead of the BN. `activation` None: linear
  (BiSeNet V2's form); DeepLabV3+ uses ReLU."""
  features: int
  kernel_size: int = 3
  stride: int = 1
  dilation: int = 1
  activation: Callable[[jax.Array], jax.Array] | None = nn.relu
  pointwise_norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    in_features = x.shape[-1]
    x = ConvBNAct(in_features, self.kernel_size, self.stride, self.dilation, groups=in_features,
                  activation=self.activation, dtype=self.dtype, name='depthwise_conv')(x, train)
    if self.pointwise_norm:
      return ConvBNAct(self.features, 1, activation=self.activation, dtype=self.dtype,
                       name='pointwise_conv')(x, train)
    x = conv2d(self.features, 1, use_bias=True, dtype=self.dtype, name='pointwise_conv')(x)
    return x if self.activation is None else self.activation(x)


class AttentionRefinement(nn.Module):
  """BiSeNet's attention refinement module (ARM; also STDC's context path): 3x3 ConvBNReLU,
  then the result re-weighted per channel by sigmoid(BN(1x1 conv(GAP)))."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = ConvBNAct(self.features, 3, dtype=self.dtype, name='conv_layer')(x, train)
    attention = ConvBNAct(self.features, 1, activation=None, dtype=self.dtype,
                          name='atten_conv_layer')(global_avg_pool(x), train)
    return x * nn.sigmoid(attention)


def pyramid_pooling(x: jax.Array, pool_scales: Sequence[int], channels: int, train: bool,
                    dtype: Any, name: str) -> list[jax.Array]:
  """mmseg's pyramid pooling module (PPM; PSPNet's, also UPerNet's): per scale b, adaptive
  average pooling to b x b bins -> 1x1 ConvModule to `channels` -> bilinear upsampling back to
  x's size. Returns the upsampled maps (x itself not included). Called inside a compact
  `__call__`, so the ConvModules belong to the caller, named `name.format(i)`."""
  levels = []
  for i, bins in enumerate(pool_scales):
    level = ConvBNAct(channels, 1, dtype=dtype, name=name.format(i))(
        adaptive_avg_pool(x, bins), train)
    levels.append(bilinear_resize(level, x.shape[1:3]))
  return levels


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


# --- The backbone + decode head (+ auxiliary heads) composition ---------------------------------

class EncoderDecoder(nn.Module):
  """mmsegmentation's EncoderDecoder, the network most models of the zoo are:
  backbone(images) -> a list of features; decode_head(features) -> logits.

  Parameters live under `backbone/`, `decode_head/` and `auxiliary_heads_<i>/` (so per-part
  learning-rate regexes and weight converters can name them). Auxiliary heads also read the
  backbone's features; their logits are computed only when training (they feed the loss and
  nothing else), so `aux` is empty at inference. A head whose logits must cover the image
  exactly (GCN, DUC) is called as decode_head(features, image_hw) with
  `decode_head_takes_image_hw`.
  """
  backbone: nn.Module
  decode_head: nn.Module
  auxiliary_heads: Sequence[nn.Module] = ()
  decode_head_takes_image_hw: bool = False

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict[str, Any]:
    features = self.backbone(images, train=train)
    if self.decode_head_takes_image_hw:
      logits = self.decode_head(features, images.shape[1:3], train=train)
    else:
      logits = self.decode_head(features, train=train)
    aux = []
    if train or self.is_initializing():  # Their parameters exist whatever mode init runs in.
      aux = [head(features, train=train).astype(jnp.float32) for head in self.auxiliary_heads]
    return {'logits': logits.astype(jnp.float32), 'aux': aux if train else []}


# --- Stochastic depth ---------------------------------------------------------------------------

class DropPath(nn.Module):
  """Stochastic depth: zeroes whole samples of a residual branch with probability `rate`.

  Survivors are scaled by 1 / (1 - rate). Identity when deterministic or rate == 0. Draws from
  the 'dropout' rng. `rate` may be a traced scalar (a block run by `repeated_blocks`' scan).
  """
  rate: float | jax.Array

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or (isinstance(self.rate, (int, float)) and self.rate == 0.0):
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


# --- Repeated blocks ----------------------------------------------------------------------------

def repeated_blocks(parent: nn.Module, make_block: Callable[..., nn.Module],
                    drop_path_rates: Sequence[float], x: jax.Array, train: bool,
                    scan_min_depth: int = 0, prefix: str = 'block') -> jax.Array:
  """x through `len(drop_path_rates)` residual blocks in order, block j being
  `make_block(drop_path_rates[j])` named f'{prefix}{j}' inside `parent` (the calling module).

  With `scan_min_depth` > 0, a stage of at least that many blocks is applied as a `lax.scan`
  over the blocks' variables, stacked: XLA compiles one block instead of all of them
  (SegFormer-B5's 40 blocks of stage 3, SegNeXt-L's 27), while the variable tree stays the
  unrolled one (the blocks are created unrolled at init), so converted checkpoints and optimizer
  rules see the same names. The computation is the same; stochastic depth draws each block's
  mask from a key split off the parent's 'dropout' stream instead of the block's own, so a
  scanned stage's dropped paths differ from an unrolled one's under the same seed. BatchNorm
  statistics updated in training are written back to each block.
  """
  depth = len(drop_path_rates)
  if parent.is_initializing() or not scan_min_depth or depth < scan_min_depth:
    for j, rate in enumerate(drop_path_rates):
      x = make_block(rate, name=f'{prefix}{j}')(x, train)
    return x
  names = [f'{prefix}{j}' for j in range(depth)]
  variables = {col: jax.tree.map(lambda *leaves: jnp.stack(leaves), *[tree[n] for n in names])
               for col, tree in parent.variables.items() if names[0] in tree}
  mutable = [col for col in variables if parent.is_mutable_collection(col)]
  # All-zero rates stay a Python 0.0: no draw, as in the unrolled blocks.
  rates = jnp.asarray(drop_path_rates, jnp.float32) if any(drop_path_rates) else None
  keys = (jax.random.split(parent.make_rng('dropout'), depth)
          if train and rates is not None else None)

  def body(x, per_block):
    block_variables, rate, key = per_block
    block = make_block(0.0 if rate is None else rate, parent=None)
    rngs = {} if key is None else {'dropout': key}
    if mutable:
      return block.apply(block_variables, x, train, rngs=rngs, mutable=mutable)
    return block.apply(block_variables, x, train, rngs=rngs), None

  x, updates = jax.lax.scan(body, x, (variables, rates, keys))
  for col in mutable:
    for j, name in enumerate(names):
      parent.put_variable(col, name, jax.tree.map(lambda a, j=j: a[j], updates[col]))
  return x


# --- Resizing -----------------------------------------------------------------------------------

def _upsample_phases(r: int) -> list[tuple[int, float]]:
  """For linear upsampling by an integer r at half-pixel centres: output r * k + p samples
  input position k + (p + 0.5) / r - 0.5, i.e. blends inputs k + low and k + low + 1 (low in
  {-1, 0}) with weights 1 - weight and weight. (low, weight) per phase p."""
  phases = []
  for p in range(r):
    position = (p + 0.5) / r - 0.5
    low = math.floor(position)
    phases.append((low, position - low))
  return phases


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _upsample_axis(x: jax.Array, axis: int, r: int) -> jax.Array:
  """`x` linearly upsampled r times along `axis` (half-pixel centres, clamped ends): output
  r * k + p blends inputs k + low_p and k + low_p + 1 of the edge-padded input (low_p in {-1,
  0}), for all phases at once on a new axis (the taps chosen per phase by a select) that a
  reshape then interleaves. (A stack of r per-phase blends is a concatenate, which XLA's CPU
  loop fusion re-emits its operands into: upsampling both axes by 8 made r^2 copies of
  everything fused before it, and with the test suite's XLA flags a tiny TopFormer's head
  compiled for seconds.) The gradient is written out (`_upsample_backward`)."""
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (1, 1)
  padded = jnp.pad(x, pad, mode='edge')  # The clamp at both ends.
  phases = _upsample_phases(r)
  phase_shape = [1] * (x.ndim + 1)
  phase_shape[axis + 1] = r

  def per_phase(values: list) -> np.ndarray:  # A constant along the phase axis.
    return np.asarray(values).reshape(phase_shape)

  shifted = [jnp.expand_dims(jax.lax.slice_in_dim(padded, i, i + n, axis=axis), axis + 1)
             for i in range(3)]  # Inputs k - 1, k, k + 1.
  before = per_phase([low == -1 for low, _ in phases])
  left = jnp.where(before, shifted[0], shifted[1])
  right = jnp.where(before, shifted[1], shifted[2])
  weight = per_phase([w for _, w in phases])  # float64: 1 - weight rounds once, as before.
  blend = left * jnp.asarray(1 - weight, x.dtype) + right * jnp.asarray(weight, x.dtype)
  return blend.reshape(x.shape[:axis] + (n * r,) + x.shape[axis + 1:])


def _upsample_forward(x, axis, r):
  return _upsample_axis(x, axis, r), None


def _upsample_backward(axis, r, _, grad):
  """The adjoint, as strided slices of the zero-padded gradient: padded input q receives
  output r * (q - 1 - low) + p with 1 - weight and r * (q - 2 - low) + p with weight, for each
  phase p; the two padding positions fold back onto the first and last input. (XLA's own
  transpose of the slices and the interleave pads the gradient once per tap, ~3x slower.)"""
  n = grad.shape[axis] // r
  pad = [(0, 0)] * grad.ndim
  pad[axis] = (2 * r, 2 * r)
  zero_padded = jnp.pad(grad, pad)
  total = None
  for p, (low, weight) in enumerate(_upsample_phases(r)):
    for offset, tap in ((1 + low, 1 - weight), (2 + low, weight)):
      if tap == 0:
        continue
      start = 2 * r - r * offset + p
      term = tap * jax.lax.slice_in_dim(zero_padded, start, start + r * (n + 1) + 1, r,
                                        axis=axis)
      total = term if total is None else total + term
  inner = jax.lax.slice_in_dim(total, 1, n + 1, axis=axis)
  first = jax.lax.slice_in_dim(total, 0, 1, axis=axis)
  last = jax.lax.slice_in_dim(total, n + 1, n + 2, axis=axis)
  pad[axis] = (0, n - 1)
  ends = jnp.pad(first, pad)
  pad[axis] = (n - 1, 0)
  ends = ends + jnp.pad(last, pad)
  return (inner + ends,)


_upsample_axis.defvjp(_upsample_forward, _upsample_backward)


def _linear_resize_axis(x: jax.Array, axis: int, size: int) -> jax.Array:
  """`x` linearly resampled along `axis` to `size` at half-pixel centres (sample i at
  (i + 0.5) * n / size - 0.5, clamped to the ends), without antialiasing. An integer factor up
  (`_upsample_axis`) or down (2 strided slices) needs no interpolation matrix, which costs
  n x size multiply-adds per line; other ratios use jax.image.resize's along that axis."""
  n = x.shape[axis]
  if size == n:
    return x
  if size % n == 0:
    return _upsample_axis(x, axis, size // n)
  if n % size == 0:  # Down by s: output i blends inputs s * i + low and s * i + low + 1.
    s = n // size
    low = (s - 1) // 2
    weight = (s - 1) / 2 - low
    left = jax.lax.slice_in_dim(x, low, low + s * (size - 1) + 1, s, axis=axis)
    if weight == 0:
      return left
    right = jax.lax.slice_in_dim(x, low + 1, low + 2 + s * (size - 1), s, axis=axis)
    return left * (1 - weight) + right * weight
  shape = list(x.shape)
  shape[axis] = size
  return jax.image.resize(x, shape, method='bilinear', antialias=False)


def bilinear_resize(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Resizes NHWC `x` to spatial `size` = (H, W) like PyTorch's
  `F.interpolate(mode='bilinear', align_corners=False)` with an explicit output size.

  Both sample at (i + 0.5) * in / out - 0.5 and clamp at the borders; without antialiasing,
  downsampling also uses the plain 2-tap kernel, as PyTorch does. Separable: one axis, then the
  other (`_linear_resize_axis`; integer factors, the usual case in the models, avoid
  interpolation matrices, which cost in x out multiply-adds per line).
  """
  if tuple(x.shape[1:3]) == tuple(size):
    return x
  with jax.named_scope(RESAMPLING_SCOPE):
    return _linear_resize_axis(_linear_resize_axis(x, 1, size[0]), 2, size[1])


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


def torch_nearest_indices(in_size: int, out_size: int) -> np.ndarray:
  """Source index of each output position of PyTorch's `F.interpolate(mode='nearest')` with an
  explicit size: floor(dst * scale), scale = float32(in / out) (its float32 rounding is part of
  the result, e.g. 2 -> 82 row 41 reads row 0), clamped to in - 1. (The data pipeline's
  `transforms.cv2_nearest_indices` is OpenCV's INTER_NEAREST, in float64.)"""
  scale = np.float32(in_size) / np.float32(out_size)
  src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
  return np.minimum(src, in_size - 1)


def resize_nearest(x: jax.Array, size: tuple[int, int], axes: tuple[int, int] = (1, 2)
                   ) -> jax.Array:
  """PyTorch's 'nearest' (not 'nearest-exact') resize of the two spatial `axes` of `x` to
  `size` = (H, W)."""
  for axis, out_size in zip(axes, size):
    if x.shape[axis] != out_size:
      x = jnp.take(x, jnp.asarray(torch_nearest_indices(x.shape[axis], out_size)), axis=axis)
  return x


# --- Pooling ------------------------------------------------------------------------------------

def adaptive_bin_edges(size: int, bins: int) -> list[tuple[int, int]]:
  """[start, end) of each of `bins` bins over `size` positions, as AdaptiveAvgPool2d cuts them:
  bin i spans [floor(i * size / bins), ceil((i + 1) * size / bins)), so neighbouring bins
  overlap by a row/column when `bins` does not divide `size`."""
  return [((i * size) // bins, -(-((i + 1) * size) // bins)) for i in range(bins)]


def _bin_averaging_matrix(size: int, bins: int) -> np.ndarray:
  """[bins, size] matrix whose row i averages the positions of bin i."""
  matrix = np.zeros((bins, size), np.float32)
  for i, (start, end) in enumerate(adaptive_bin_edges(size, bins)):
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


def adaptive_avg_pool(x: jax.Array, bins: int | tuple[int, int]) -> jax.Array:
  """PyTorch's `AdaptiveAvgPool2d(bins)` on NHWC `x` -> [N, bins_h, bins_w, C] (`bins` an int
  for a square grid, or (h, w)).

  Written as two small averaging matrices (rows, columns) contracted with `x`, accumulated in
  float32 whatever `x`'s dtype; the result has `x`'s dtype. (Under the resampling scope: the
  multiply-add count of tools/model_stats.py leaves pooling out.) `global_avg_pool` is the
  1 x 1 case written as a mean.
  """
  bins_h, bins_w = _pair(bins)
  _, h, w, _ = x.shape
  with jax.named_scope(RESAMPLING_SCOPE):
    rows = jnp.asarray(_bin_averaging_matrix(h, bins_h))
    cols = jnp.asarray(_bin_averaging_matrix(w, bins_w))
    pooled = jnp.einsum('ih,nhwc,jw->nijc', rows, x, cols,
                        precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32)
  return pooled.astype(x.dtype)


def global_avg_pool(x: jax.Array) -> jax.Array:
  """AdaptiveAvgPool2d(1) on NHWC as a mean over the spatial axes, keeping them as 1 x 1: the
  global pooling of attention gates, image-pooling branches and SE blocks. (The same value as
  adaptive_avg_pool(x, 1), which pyramid poolings use for their 1-bin level, but summed in
  another order, so not always to the last bit; each model keeps the one its outputs were
  pinned with.)"""
  return jnp.mean(x, axis=(1, 2), keepdims=True)


def _pool_padding(hw: Sequence[int], window: int, stride: int, padding: int,
                  ceil_mode: bool) -> list[tuple[int, int]]:
  """PyTorch's pooling padding per spatial axis: `padding` on both sides, plus, with ceil_mode,
  the rows/columns a partial last window reaches past them (none for a window that would start
  in the padding, which PyTorch drops)."""
  pads = []
  for size in hw:
    extra = 0
    if ceil_mode:
      out = -(-(size + 2 * padding - window) // stride) + 1
      if (out - 1) * stride >= size + padding:
        out -= 1
      extra = max((out - 1) * stride + window - (size + 2 * padding), 0)
    pads.append((padding, padding + extra))
  return pads


def avg_pool(x: jax.Array, window: int, stride: int, padding: int = 0,
             ceil_mode: bool = False) -> jax.Array:
  """PyTorch's AvgPool2d (count_include_pad=True): the zero padding counts in a window's mean,
  the part of a ceil_mode window past the padding does not (e.g. AvgPool2d(2, 2,
  ceil_mode=True) averages a partial last window over its in-bounds pixels)."""
  pads = _pool_padding(x.shape[1:3], window, stride, padding, ceil_mode)
  if all(extra == padding for _, extra in pads):
    return nn.avg_pool(x, (window, window), strides=(stride, stride), padding=pads,
                       count_include_pad=True)
  if padding:  # The padding counts, the ceil_mode overhang does not.
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    pads = [(0, extra - padding) for _, extra in pads]
  return nn.avg_pool(x, (window, window), strides=(stride, stride), padding=pads,
                     count_include_pad=False)


def max_pool(x: jax.Array, window: int, stride: int, padding: int = 0,
             ceil_mode: bool = False) -> jax.Array:
  """PyTorch's MaxPool2d: padding counts as -inf; ceil_mode adds the partial last window."""
  pads = _pool_padding(x.shape[1:3], window, stride, padding, ceil_mode)
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
