"""NumPy transcriptions of PyTorch's resizes and transposed convolution, loop by loop: the
brute-force references that the layer tests (tests/models/test_layers.py), the STDC detail-loss
tests and LinkNet's forward test compare against."""

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


def np_align_corners(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """Bilinear resize of NHWC with align_corners=True, in float64 loops."""
  n, h, w, c = x.shape
  out = np.zeros((n, out_h, out_w, c))
  for i in range(out_h):
    y = i * (h - 1) / (out_h - 1) if out_h > 1 else 0.0
    y0 = min(int(math.floor(y)), h - 1)
    y1, fy = min(y0 + 1, h - 1), y - y0
    for j in range(out_w):
      x_ = j * (w - 1) / (out_w - 1) if out_w > 1 else 0.0
      x0 = min(int(math.floor(x_)), w - 1)
      x1, fx = min(x0 + 1, w - 1), x_ - x0
      out[:, i, j] = ((1 - fy) * ((1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1])
                      + fy * ((1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]))
  return out


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
