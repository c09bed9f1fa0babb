"""Whole-image inference geometry against a brute-force NumPy reference of PyTorch's
bilinear interpolation (align_corners=False): crop to the image, resize to the label."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax import evaluate


def _torch_bilinear(x, out_h, out_w):
  """F.interpolate(mode='bilinear', align_corners=False) on [H, W, C], one pixel at a time."""
  in_h, in_w = x.shape[:2]
  out = np.zeros((out_h, out_w, x.shape[2]))
  def source(o, scale, size):
    s = max((o + 0.5) * scale - 0.5, 0.0)
    i0 = min(int(np.floor(s)), size - 1)
    i1 = min(i0 + 1, size - 1)
    return i0, i1, s - i0
  for y in range(out_h):
    y0, y1, fy = source(y, in_h / out_h, in_h)
    for x_ in range(out_w):
      x0, x1, fx = source(x_, in_w / out_w, in_w)
      out[y, x_] = ((1 - fy) * ((1 - fx) * x[y0, x0] + fx * x[y0, x1])
                    + fy * ((1 - fx) * x[y1, x0] + fx * x[y1, x1]))
  return out


@pytest.mark.parametrize('image_hw,label_hw', [((7, 9), (15, 20)), ((12, 10), (5, 7)),
                                               ((8, 8), (8, 8)), ((5, 11), (13, 6))])
def test_resize_to_label_matches_crop_then_bilinear(image_hw, label_hw):
  rng = np.random.default_rng(0)
  canvas = rng.normal(size=(16, 16, 3)).astype(np.float32)  # Beyond image_hw: padding.
  out = evaluate.resize_to_label(jnp.asarray(canvas), jnp.array(image_hw), jnp.array(label_hw),
                                 (24, 24))
  expected = _torch_bilinear(canvas[:image_hw[0], :image_hw[1]], *label_hw)
  np.testing.assert_allclose(np.asarray(out)[:label_hw[0], :label_hw[1]], expected, atol=1e-5)


def test_one_compiled_function_serves_any_size():
  fn = jax.jit(lambda l, i, t: evaluate.resize_to_label(l, i, t, (10, 10)))
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(8, 8, 2)), jnp.float32)
  for image_hw, label_hw in [((8, 8), (10, 10)), ((5, 7), (9, 3))]:
    out = fn(logits, jnp.array(image_hw), jnp.array(label_hw))
    expected = _torch_bilinear(np.asarray(logits)[:image_hw[0], :image_hw[1]], *label_hw)
    np.testing.assert_allclose(np.asarray(out)[:label_hw[0], :label_hw[1]], expected, atol=1e-5)
  assert fn._cache_size() == 1
