"""NumPy transcriptions of PyTorch's resizes, convolutions and max pooling, loop by loop: the
brute-force references that the layer tests (tests/models/test_layers.py), the STDC detail-loss
tests and the LinkNet and ERFNet forward tests compare against."""

import math

import numpy as np


def np_nearest(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """PyTorch's nearest resize of [N, H, W, ...]: src = floor(dst * float32(in / out))."""
  n, h, w = x.shape[:3]
  out = np.zeros((n, out_h, out_w) + x.shape[3:], x.dtype)
  sh, sw = np.float32(h) / np.float32(out_h), np.float32(w) / np.float32(out_w)
  for i in range(out_h):
    for j in range(out_w):
      si = min(int(np.floor(np.float32(i) * sh)), h - 1)
      sj = min(int(np.floor(np.float32(j) * sw)), w - 1)
      out[:, i, j] = x[:, si, sj]
  return out


def _np_linear_resize(x: np.ndarray, out_h: int, out_w: int, source) -> np.ndarray:
  """Bilinear resize of NHWC in float64 loops; `source(dst, in_size, out_size)` is the source
  coordinate of output pixel `dst` along an axis."""
  n, h, w, c = x.shape

  def taps(out_size, in_size):
    result = []
    for i in range(out_size):
      src = source(i, in_size, out_size)
      i0 = min(int(math.floor(src)), in_size - 1)
      result.append((i0, min(i0 + 1, in_size - 1), src - i0))
    return result

  out = np.zeros((n, out_h, out_w, c))
  for i, (y0, y1, fy) in enumerate(taps(out_h, h)):
    for j, (x0, x1, fx) in enumerate(taps(out_w, w)):
      out[:, i, j] = ((1 - fy) * ((1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1])
                      + fy * ((1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]))
  return out


def np_align_corners(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """Bilinear resize of NHWC with align_corners=True, in float64 loops."""
  return _np_linear_resize(x, out_h, out_w, lambda i, in_size, out_size: (
      i * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0))


def np_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """PyTorch's upsample_bilinear2d of NHWC `x` with align_corners=False (explicit size, no
  antialiasing): source coordinate (dst + 0.5) * in / out - 0.5, clamped at 0."""
  return _np_linear_resize(x, out_h, out_w, lambda i, in_size, out_size: max(
      (i + 0.5) * in_size / out_size - 0.5, 0.0))


def np_conv_transpose(x: np.ndarray, weight: np.ndarray, stride: int, padding: int,
                      output_padding: int) -> np.ndarray:
  """PyTorch's ConvTranspose2d by definition: out[i*s + a - p] += x[i] * W[c, o, a]; NHWC x,
  weight (C_in, C_out, kh, kw)."""
  n, h, w, _ = x.shape
  _, c_out, kh, kw = weight.shape
  oh = (h - 1) * stride - 2 * padding + kh + output_padding
  ow = (w - 1) * stride - 2 * padding + kw + output_padding
  full = np.zeros((n, (h - 1) * stride + kh + output_padding,
                   (w - 1) * stride + kw + output_padding, c_out))
  for i in range(h):
    for j in range(w):
      full[:, i * stride:i * stride + kh, j * stride:j * stride + kw] += np.einsum(
          'nc,coab->nabo', x[:, i, j], weight)
  return full[:, padding:padding + oh, padding:padding + ow]


def np_conv2d(x: np.ndarray, kernel: np.ndarray, stride: int = 1,
              padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1),
              bias: np.ndarray | None = None) -> np.ndarray:
  """PyTorch's Conv2d on NHWC `x` with kernel [kh, kw, C_in, C_out], zero padding (ph, pw) on
  both sides of each axis, tap by tap."""
  kh, kw = kernel.shape[:2]
  (ph, pw), (dh, dw) = padding, dilation
  x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
  oh = (x.shape[1] - dh * (kh - 1) - 1) // stride + 1
  ow = (x.shape[2] - dw * (kw - 1) - 1) // stride + 1
  out = np.zeros((x.shape[0], oh, ow, kernel.shape[-1]))
  for i in range(kh):
    for j in range(kw):
      window = x[:, i * dh:i * dh + stride * (oh - 1) + 1:stride,
                 j * dw:j * dw + stride * (ow - 1) + 1:stride]
      out += np.einsum('nhwc,co->nhwo', window, kernel[i, j])
  return out if bias is None else out + bias


def np_max_pool(x: np.ndarray, window: int, stride: int, padding: int = 0,
                ceil_mode: bool = False) -> np.ndarray:
  """PyTorch's MaxPool2d on NHWC `x`: -inf padding; ceil_mode keeps a last window that starts
  inside the input (or its left padding)."""
  n, h, w, c = x.shape

  def size(length):
    span = length + 2 * padding - window
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    return out - 1 if ceil_mode and (out - 1) * stride >= length + padding else out

  oh, ow = size(h), size(w)
  extra_h = max(0, (oh - 1) * stride + window - h - 2 * padding)
  extra_w = max(0, (ow - 1) * stride + window - w - 2 * padding)
  x = np.pad(x, ((0, 0), (padding, padding + extra_h), (padding, padding + extra_w), (0, 0)),
             constant_values=-np.inf)
  return np.max([x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
                 for i in range(window) for j in range(window)], axis=0)


def np_avg_pool(x: np.ndarray, window: int, stride: int, padding: int) -> np.ndarray:
  """PyTorch's AvgPool2d on NHWC `x` (count_include_pad: the zero padding counts in each
  window's mean), tap by tap."""
  x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  oh = (x.shape[1] - window) // stride + 1
  ow = (x.shape[2] - window) // stride + 1
  return sum(x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
             for i in range(window) for j in range(window)) / window ** 2


def np_batch_norm(x: np.ndarray, params: dict, stats: dict, eps: float = 1e-5) -> np.ndarray:
  """BatchNorm2d in eval mode, from our BatchNorm's `params` (scale, bias) and `stats` (mean,
  var)."""
  return ((x - stats['mean']) / np.sqrt(stats['var'] + eps) * params['scale']
          + params['bias'])


def np_conv_transpose_of(x: np.ndarray, params: dict, stride: int, padding: int,
                         output_padding: int) -> np.ndarray:
  """`np_conv_transpose` with our layers.conv_transpose2d's params: its kernel is stored
  (kh, kw, out, in), torch's [in, out, kh, kw] transposed; plus its bias if it has one."""
  weight = np.asarray(params['kernel']).transpose(3, 2, 0, 1)
  out = np_conv_transpose(x, weight, stride, padding, output_padding)
  return out + np.asarray(params['bias']) if 'bias' in params else out

