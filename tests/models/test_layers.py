"""The shared layers (models/layers.py) against NumPy brute force or values recorded from
PyTorch: resizes, pools, unpooling, the transposed convolutions, batch and layer normalisation
(against flax's), stochastic depth."""

import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models import layers
from tests.helpers.param_trees import expand
from tests.helpers.tiny_apply import outputs_and_gradients
from tests.helpers.torch_reference import (np_align_corners, np_bilinear,
                                           np_conv_transpose, np_conv_transpose_of,
                                           np_nearest)


def test_brace_expansion_of_the_param_tree_tests():
  assert expand('x{1..2}/{a,b/{c, d}}') == {'x1/a', 'x1/b/c', 'x1/b/d', 'x2/a', 'x2/b/c',
                                           'x2/b/d'}
  assert expand('deconv{4..2}', 'y') == {'deconv4', 'deconv3', 'deconv2', 'y'}


# --- Resizes ------------------------------------------------------------------------------------

# Integer factors up (2, 3, 4, 8) and down (2, 3, 4) take the slice path; others the matrix.
RESIZES = [((5, 7), (13, 9)), ((13, 11), (4, 6)), ((7, 7), (10, 3)), ((3, 4), (3, 4)),
           ((2, 3), (16, 24)), ((10, 14), (3, 4)), ((4, 6), (16, 12)), ((12, 9), (4, 3)),
           ((8, 8), (4, 2)), ((5, 5), (15, 5)), ((3, 5), (12, 7))]


@pytest.mark.parametrize('in_hw,out_hw', RESIZES)
def test_bilinear_resize_matches_pytorch(in_hw, out_hw):
  x = np.random.RandomState(0).randn(2, *in_hw, 3).astype(np.float32)
  got = np.asarray(layers.bilinear_resize(jnp.asarray(x), out_hw))
  np.testing.assert_allclose(got, np_bilinear(x, *out_hw), rtol=1e-5, atol=1e-5)


def test_integer_upsampling_interleaves_its_phases_without_a_concatenate():
  """Upsampling by 8 on both axes: the phases are a new axis blended by selects, not a stack of
  8 blends (a concatenate, whose operands XLA's CPU loop fusion re-emits per phase: r^2 copies
  of all that is fused before it; with the suite's XLA flags the tiny TopFormer's inference
  took 8.7 s to compile, 0.7 s without). Only the edge padding concatenates, three pieces at a
  time."""
  program = jax.jit(lambda x: layers.bilinear_resize(x, (32, 48))).lower(
      jnp.zeros((1, 4, 6, 3))).as_text()
  operands = [line.split('stablehlo.concatenate', 1)[1].split(', dim')[0].count('%')
              for line in program.splitlines() if 'stablehlo.concatenate' in line]
  assert operands and max(operands) == 3, operands


@pytest.mark.parametrize('in_hw,out_hw', [((4, 6), (16, 12)), ((5, 5), (15, 5)),
                                          ((12, 9), (4, 3)), ((3, 5), (12, 7))])
def test_bilinear_resize_gradient_is_the_transposed_interpolation(in_hw, out_hw):
  """The written-out gradient of integer upsampling (and autodiff's elsewhere) against the
  transpose of the brute-force interpolation matrix (its columns: resized basis images)."""
  rng = np.random.RandomState(1)
  x = rng.randn(1, *in_hw, 2).astype(np.float32)
  weights = rng.randn(1, *out_hw, 2).astype(np.float32)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(layers.bilinear_resize(x, out_hw) * weights)))(
      jnp.asarray(x))
  for i in range(in_hw[0]):
    for j in range(in_hw[1]):
      basis = np.zeros((1, *in_hw, 1))
      basis[0, i, j] = 1
      column = np_bilinear(basis, *out_hw)[0, ..., 0]
      for c in range(2):
        np.testing.assert_allclose(np.asarray(grad)[0, i, j, c],
                                   np.sum(column * weights[0, ..., c]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('in_hw,out_hw', [((3, 4), (9, 11)), ((3, 4), (24, 32)),
                                          ((3, 4), (3, 4)), ((3, 4), (1, 5)), ((5, 7), (9, 4)),
                                          ((1, 1), (3, 5)), ((4, 6), (1, 2)), ((3, 3), (3, 8))])
def test_resize_align_corners_matches_brute_force(in_hw, out_hw):
  x = np.random.default_rng(1).normal(size=(2, *in_hw, 3)).astype(np.float32)
  got = layers.resize_align_corners(jnp.asarray(x), out_hw)
  np.testing.assert_allclose(np.asarray(got), np_align_corners(x, *out_hw), atol=1e-5)


def test_torch_nearest_indices_are_pytorchs():
  nearest = layers.torch_nearest_indices
  # F.interpolate(mode='nearest', size=...) source rows, recorded from torch 2.13 (CPU).
  assert nearest(3, 5).tolist() == [0, 0, 1, 1, 2]
  assert nearest(5, 3).tolist() == [0, 1, 3]
  assert nearest(7, 4).tolist() == [0, 1, 3, 5]
  assert nearest(4, 7).tolist() == [0, 0, 1, 1, 2, 2, 3]
  # F.interpolate(arange(26), size=22, mode='nearest') (the integer formula dst * in // out
  # gives 13 at position 11).
  assert nearest(26, 22).tolist() == [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18,
                                      20, 21, 22, 23, 24]
  # PyTorch's float32 scale rounds these below the exact floor(i * in / out).
  assert nearest(2, 82)[41] == 0 and 41 * 2 // 82 == 1
  assert nearest(4, 82)[41] == 1 and 41 * 4 // 82 == 2
  # x2 (the ResNet's even sizes) repeats each row twice; equal sizes are the identity.
  assert nearest(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
  assert nearest(6, 6).tolist() == list(range(6))


@pytest.mark.parametrize('in_hw,out_hw', [((5, 7), (9, 13)), ((5, 7), (10, 14)),
                                          ((5, 7), (1, 1)), ((5, 7), (5, 7)), ((5, 7), (3, 4)),
                                          ((3, 4), (5, 7))])
def test_resize_nearest_matches_pytorch_indexing(in_hw, out_hw):
  x = np.random.default_rng(0).normal(size=(2, *in_hw, 3)).astype(np.float32)
  got = layers.resize_nearest(jnp.asarray(x), out_hw)
  np.testing.assert_array_equal(np.asarray(got), np_nearest(x, *out_hw))


# --- Pools --------------------------------------------------------------------------------------

def test_adaptive_bins_are_pytorchs():
  # AdaptiveAvgPool2d's bins [floor(i n / b), ceil((i + 1) n / b)), written out by hand.
  assert layers.adaptive_bin_edges(7, 3) == [(0, 3), (2, 5), (4, 7)]
  assert layers.adaptive_bin_edges(10, 6) == [(0, 2), (1, 4), (3, 5), (5, 7), (6, 9), (8, 10)]
  assert layers.adaptive_bin_edges(4, 6) == [(0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4)]
  assert layers.adaptive_bin_edges(12, 2) == [(0, 6), (6, 12)]
  assert layers.adaptive_bin_edges(60, 6) == [(10 * i, 10 * i + 10) for i in range(6)]
  x = jnp.ones((1, 9, 7, 2), jnp.bfloat16)
  assert layers.adaptive_avg_pool(x, 3).dtype == jnp.bfloat16


def _np_adaptive_avg_pool(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """AdaptiveAvgPool2d bin by bin: bin i spans [floor(i * n / b), ceil((i + 1) * n / b))."""
  n, h, w, c = x.shape
  out = np.zeros((n, out_h, out_w, c), np.float64)
  for i in range(out_h):
    h0, h1 = math.floor(i * h / out_h), math.ceil((i + 1) * h / out_h)
    for j in range(out_w):
      w0, w1 = math.floor(j * w / out_w), math.ceil((j + 1) * w / out_w)
      out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
  return out


@pytest.mark.parametrize('shape,bins', [
    *[((2, *hw, 3), b) for hw in [(7, 11), (13, 5), (4, 3), (12, 18), (1, 1), (4, 9)]
      for b in (1, 2, 3, 6)],
    ((2, 13, 7, 3), (4, 2)), ((1, 16, 9, 2), (8, 5)), ((1, 5, 11, 4), (3, 6)),
    ((1, 3, 3, 1), (2, 2))])
def test_adaptive_avg_pool_matches_pytorch_bins(shape, bins):
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  out_hw = (bins, bins) if isinstance(bins, int) else bins
  np.testing.assert_allclose(np.asarray(layers.adaptive_avg_pool(jnp.asarray(x), bins)),
                             _np_adaptive_avg_pool(x, *out_hw), rtol=1e-5, atol=1e-6)


def test_global_avg_pool_is_the_one_bin_adaptive_pool():
  x = np.random.default_rng(3).normal(size=(2, 7, 5, 3)).astype(np.float32)
  got = np.asarray(layers.global_avg_pool(jnp.asarray(x)))
  assert got.shape == (2, 1, 1, 3)
  np.testing.assert_allclose(got, _np_adaptive_avg_pool(x, 1, 1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('hw', [(7, 9), (8, 8), (3, 2), (1, 1), (7, 8)])
def test_avg_pool_counts_padding_like_pytorch(hw):
  """AvgPool2d(3, 2, padding=1) (count_include_pad=True): every window sum / 9, output
  floor((n - 1) / 2) + 1."""
  x = np.random.default_rng(1).normal(size=(2, *hw, 3)).astype(np.float32)
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out_h, out_w = (hw[0] - 1) // 2 + 1, (hw[1] - 1) // 2 + 1
  expected = np.zeros((2, out_h, out_w, 3), np.float32)
  for i in range(out_h):
    for j in range(out_w):
      expected[:, i, j] = padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].sum(axis=(1, 2)) / 9
  got = layers.avg_pool(jnp.asarray(x), 3, 2, padding=1)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-6)


def test_ceil_mode_average_pool_against_brute_force():
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, 5, 7, 3)))
  got = np.asarray(jax.jit(lambda x: layers.avg_pool(x, 2, 2, ceil_mode=True))(x))
  want = np.zeros((2, 3, 4, 3))
  for i in range(3):
    for j in range(4):  # A partial last window averages only its in-bounds pixels.
      want[:, i, j] = x[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(1, 2))
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_ceil_mode_average_pool_with_padding_counts_the_padding_only():
  """AvgPool2d(3, 2, padding=1, ceil_mode=True) on 6 columns: windows start at -1, 1, 3, 5; the
  last covers columns 5, 6 (the padding, counted) and 7 (past it, not counted): / 6."""
  x = np.random.default_rng(2).normal(size=(1, 6, 6, 1)).astype(np.float32)
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  want = np.zeros((1, 4, 4, 1), np.float32)
  for i in range(4):
    for j in range(4):
      window = padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
      want[:, i, j] = window.sum(axis=(1, 2)) / (window.shape[1] * window.shape[2])
  got = layers.avg_pool(jnp.asarray(x), 3, 2, padding=1, ceil_mode=True)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('hw', [(7, 9), (6, 8), (5, 7)])
def test_unpooling_puts_values_back_where_the_max_was(hw):
  """Unpooling puts each window's maximum back in place and zeros elsewhere; odd sizes keep
  their last row/column (their windows are partial, ceil mode)."""
  x = np.random.default_rng(0).normal(size=(2, *hw, 3)).astype(np.float32)
  pooled, indices = layers.max_pool_2x2_with_indices(jnp.asarray(x))
  restored = np.asarray(layers.max_unpool_2x2(pooled, indices, hw))
  out_h, out_w = (hw[0] + 1) // 2, (hw[1] + 1) // 2
  expected_pooled = np.zeros((2, out_h, out_w, 3), np.float32)
  expected = np.zeros_like(x)
  for n in range(2):
    for i in range(out_h):
      for j in range(out_w):
        for c in range(3):
          window = x[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c]
          r, s = np.unravel_index(np.argmax(window), window.shape)
          expected_pooled[n, i, j, c] = window[r, s]
          expected[n, 2 * i + r, 2 * j + s, c] = window[r, s]
  np.testing.assert_array_equal(np.asarray(pooled), expected_pooled)
  np.testing.assert_array_equal(restored, expected)


# --- Convolutions -------------------------------------------------------------------------------

def test_conv2d_padding_forms():
  x = jnp.zeros((1, 9, 10, 2))

  def out_hw(**kwargs):
    conv = layers.conv2d(4, **kwargs)
    return jax.eval_shape(lambda: conv.init_with_output(jax.random.key(0), x)[0]).shape[1:3]

  assert out_hw(kernel_size=3) == (9, 10)  # dilation * (k - 1) // 2 per side
  assert out_hw(kernel_size=3, dilation=3) == (9, 10)
  assert out_hw(kernel_size=(1, 5)) == (9, 10)
  assert out_hw(kernel_size=(3, 1), dilation=(4, 1)) == (9, 10)  # ERFNet's factorised convs.
  assert out_hw(kernel_size=(1, 3), dilation=(1, 4)) == (9, 10)
  assert out_hw(kernel_size=3, stride=2, padding=0) == (4, 4)
  assert out_hw(kernel_size=2, stride=2, padding=((0, 1), (0, 0))) == (5, 5)
  assert out_hw(kernel_size=3, stride=2, padding='SAME') == (5, 5)  # TensorFlow's ceil(n / 2)


# Depthwise convolutions (kernel, stride, dilation, channel multiplier, padding): odd and
# one-sided kernels, strides, dilations, a multiplier, 'SAME' and explicit padding.
LOWERED_CONVS = [((3, 3), 1, 1, 1, None), ((5, 5), 2, 1, 1, None), ((1, 7), 1, 2, 1, None),
                 ((7, 1), 1, 4, 1, None), ((3, 3), 2, 1, 6, 'SAME'), ((3, 3), 2, 1, 2, 1)]


def _jitted_outputs_and_gradients(conv, variables, x):
  """(conv's output, the gradients of sum(sin(output)) with respect to its variables and its
  input), traced under the caller's conv_lowering into one jitted program."""
  def outputs(variables, x):
    loss = lambda v, x: jnp.sum(jnp.sin(conv.apply(v, x)))
    return conv.apply(variables, x), jax.grad(loss, (0, 1))(variables, x)
  return jax.jit(outputs)(variables, x)


@pytest.mark.parametrize('kernel, stride, dilation, multiplier, padding', LOWERED_CONVS)
def test_depthwise_conv_on_cpu_equals_xla_grouped_conv(kernel, stride, dilation, multiplier,
                                                       padding):
  """conv_lowering('cpu') (shifted multiply-adds, written-out gradients) against XLA's grouped
  convolution: outputs and the gradients of input, kernel and bias, to float rounding."""
  channels = 4
  conv = layers.conv2d(channels * multiplier, kernel, stride, dilation, padding,
                       groups=channels, use_bias=True,
                       bias_init=jax.nn.initializers.normal(1.0))
  x = jnp.asarray(np.random.RandomState(0).randn(2, 11, 9, channels).astype(np.float32))
  variables = jax.jit(conv.init)(jax.random.key(0), x)

  def outputs(kind):
    with layers.conv_lowering(kind):
      grouped = 'feature_group_count=4' in str(jax.make_jaxpr(conv.apply)(variables, x))
      return grouped, _jitted_outputs_and_gradients(conv, variables, x)

  grouped_xla, reference = outputs('xla')
  grouped_cpu, lowered = outputs('cpu')
  assert grouped_xla and not grouped_cpu
  for want, got in zip(jax.tree.leaves(reference), jax.tree.leaves(lowered)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(want))))


@pytest.mark.parametrize('variadic', [True, False])
def test_depthwise_kernel_gradient_sums_its_taps_without_storing_them(variadic, monkeypatch):
  """The kernel gradient of a 1x7 depthwise convolution under conv_lowering('cpu') sums each
  tap's products in the reduction that computes them (one variadic reduction, or one per tap
  above VARIADIC_TAP_SUMS_MAX_CHANNELS): the compiled program holds no array much larger than
  the input, and the gradient equals XLA's. Summing the stacked products instead stored all 7
  of them, each the size of the input, and concatenated them (a 1x21 strip on
  [16, 128, 128, 64]: 1.4 GB twice; layers.py gives the times)."""
  if not variadic:
    monkeypatch.setattr(layers, 'VARIADIC_TAP_SUMS_MAX_CHANNELS', 3)
  x = jnp.asarray(np.random.RandomState(0).randn(2, 8, 16, 4).astype(np.float32))
  kernel = jnp.asarray(np.random.RandomState(1).randn(1, 7, 1, 4).astype(np.float32))

  def gradients(kind):  # A new function per lowering: jit caches its trace by function.
    def loss(x, kernel):
      with layers.conv_lowering(kind):
        y = layers.grouped_conv(x, kernel, (1, 1), ((0, 0), (3, 3)), feature_group_count=4,
                                dimension_numbers=jax.lax.conv_dimension_numbers(
                                    x.shape, kernel.shape, ('NHWC', 'HWIO', 'NHWC')))
      return jnp.sum(jnp.tanh(y))  # The gradient has a producer (tanh's derivative).
    return jax.jit(jax.grad(loss, (0, 1)))

  ours = gradients('cpu')
  jaxpr = str(jax.make_jaxpr(ours)(x, kernel))
  assert 'conv_general_dilated' not in jaxpr
  assert ('reduce[' in jaxpr) == variadic  # The variadic reduction.
  program = ours.lower(x, kernel).compile().as_text()
  entry = program[program.index('\nENTRY'):]
  sizes = [int(np.prod([int(d) for d in dims.split(',') if d]))
           for dims in re.findall(r'f32\[([0-9,]*)\]', entry)]
  assert max(sizes) <= 2 * x.size, sorted(sizes)[-3:]
  for got, want in zip(ours(x, kernel), gradients('xla')(x, kernel)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(want))))


@pytest.mark.parametrize('stride', [1, 2])
def test_pointwise_conv_on_cpu_is_a_matrix_product_equal_to_xlas(stride):
  conv = layers.conv2d(5, 1, stride, use_bias=True)
  x = jnp.asarray(np.random.RandomState(0).randn(2, 7, 6, 3).astype(np.float32))
  variables = jax.jit(conv.init)(jax.random.key(0), x)
  results = {}
  for kind in ('xla', 'cpu'):
    with layers.conv_lowering(kind):
      jaxpr = str(jax.make_jaxpr(conv.apply)(variables, x))
      assert ('conv_general_dilated' in jaxpr) == (kind == 'xla'), jaxpr
      results[kind] = _jitted_outputs_and_gradients(conv, variables, x)
  for want, got in zip(jax.tree.leaves(results['xla']), jax.tree.leaves(results['cpu'])):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kernel, stride, dilation, padding, more_inputs', [
    (3, 1, 1, None, 0), (3, 2, 1, None, 0), (3, 1, 3, None, 0), ((1, 3), 1, 2, None, 0),
    (3, 2, 1, 'SAME', 0), (2, 2, 1, ((0, 1), (1, 0)), 0), (3, 1, 1, None, 8),
    (3, 1, 3, None, 8), ((3, 1), 1, 2, ((1, 3), (0, 0)), 8), (2, 1, 1, ((0, 1), (1, 0)), 8),
    (3, 1, 1, 0, 8), (3, 2, 1, None, 8)])
def test_wide_dense_conv_on_cpu_takes_its_kernel_gradient_from_matrix_products(
    kernel, stride, dilation, padding, more_inputs):
  """conv_lowering('cpu') keeps XLA's convolution for a dense one with >= 128 channels in and
  out, but writes out its kernel gradient (one matrix product per tap, of shifted inputs, or at
  stride 1 with more inputs than outputs of shifted output gradients): outputs and gradients
  equal XLA's to float rounding. Narrower convolutions stay XLA's throughout."""
  width = layers.TAP_GRADIENT_MIN_CHANNELS
  conv = layers.conv2d(width, kernel, stride, dilation, padding, use_bias=True)
  x = jnp.asarray(np.random.RandomState(0).randn(2, 7, 6, width + more_inputs)
                  .astype(np.float32))
  variables = jax.jit(conv.init)(jax.random.key(0), x)
  results = {}
  for kind in ('xla', 'cpu'):
    with layers.conv_lowering(kind):
      jaxpr = str(jax.make_jaxpr(conv.apply)(variables, x))
      assert ('_conv_with_tap_kernel_gradient' in jaxpr) == (kind == 'cpu'), jaxpr
      results[kind] = _jitted_outputs_and_gradients(conv, variables, x)
  for want, got in zip(jax.tree.leaves(results['xla']), jax.tree.leaves(results['cpu'])):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(want))))
  narrow = layers.conv2d(width - 1, kernel, stride, dilation, padding)
  narrow_x = x[..., :width - 1]
  narrow_variables = jax.eval_shape(narrow.init, jax.random.key(0), narrow_x)
  with layers.conv_lowering('cpu'):
    jaxpr = str(jax.make_jaxpr(narrow.apply)(narrow_variables, narrow_x))
  assert '_conv_with_tap_kernel_gradient' not in jaxpr and 'conv_general_dilated' in jaxpr


def test_conv_lowering_is_chosen_for_the_backend_and_checked():
  conv = layers.conv2d(4, 3, groups=4)
  x = jnp.zeros((1, 5, 5, 4))
  variables = jax.eval_shape(conv.init, jax.random.key(0), x)
  jaxpr = str(jax.make_jaxpr(conv.apply)(variables, x))
  assert ('feature_group_count=4' in jaxpr) == (jax.default_backend() != 'cpu')
  with pytest.raises(ValueError, match="conv lowering 'gpu'"):
    with layers.conv_lowering('gpu'):
      pass


@pytest.mark.parametrize('kernel, padding, output_padding', [(3, 1, 1), (2, 0, 0)])
def test_conv_transpose2d_is_pytorch(kernel, padding, output_padding):
  """ENet's 3x3 and 2x2 and U-Net's 2x2 stride-2 transposed convs."""
  x = np.random.default_rng(2).normal(size=(1, 3, 4, 6))
  module = layers.conv_transpose2d(5, kernel, 2, padding=padding, output_padding=output_padding,
                                   kernel_init=layers.torch_default_init(kernel * kernel * 6),
                                   bias_init=layers.torch_default_init(kernel * kernel * 6))
  variables = module.init(jax.random.key(0), x)
  kernel_ = variables['params']['kernel']
  assert kernel_.shape == (kernel, kernel, 5, 6)  # (kh, kw, out, in)
  expected = np_conv_transpose_of(x, variables['params'], 2, padding, output_padding)
  assert expected.shape[1:3] == (6, 8)
  with jax.default_matmul_precision('highest'):  # no TF32 on GPUs
    out = module.apply(variables, x)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_bilinear_filter_is_fcn_upsample_filt():
  np.testing.assert_allclose(layers.bilinear_filter(4), np.outer(*2 * [[0.25, 0.75, 0.75, 0.25]]))
  np.testing.assert_allclose(layers.bilinear_filter(3), np.outer(*2 * [[0.5, 1.0, 0.5]]))
  kernel = np.asarray(layers.bilinear_upsampling_init(None, (4, 4, 3, 3)))
  np.testing.assert_array_equal(kernel[:, :, 1, 1], np.outer(*2 * [[0.25, 0.75, 0.75, 0.25]]))
  assert not kernel[:, :, 0, 1].any() and not kernel[:, :, 2, 0].any()


def _tent(n_in: int, n_out: int, factor: int) -> np.ndarray:
  """[n_out, n_in] linear-interpolation weights at the sources (o + 1/2) / f - 1/2 (PyTorch's
  align_corners=False), the signal being zero outside the map."""
  src = (np.arange(n_out) + 0.5) / factor - 0.5
  return np.maximum(0.0, 1.0 - np.abs(src[:, None] - np.arange(n_in)[None, :]))


@pytest.mark.parametrize('factor', [2, 8, 16, 32])
def test_bilinear_conv_transpose_init_is_bilinear_interpolation(factor):
  """At init it is bilinear upsampling of the input zero-padded beyond its border (a transposed
  conv sees zeros there); away from the outermost half coarse pixel, F.interpolate(bilinear,
  align_corners=False) by the factor."""
  h, w, c = 5, 7, 3
  x = np.random.default_rng(factor).normal(size=(1, h, w, c)).astype(np.float32)
  module = layers.BilinearConvTranspose(factor)
  out_hw = (factor * h, factor * w)
  variables = module.init(jax.random.key(0), x, out_hw)
  y = np.asarray(module.apply(variables, x, out_hw))[0]
  np.testing.assert_array_equal(np.asarray(module.apply(variables, x))[0], y)  # default size
  expected = np.einsum('ai,ijc,bj->abc', _tent(h, factor * h, factor), x[0],
                       _tent(w, factor * w, factor))
  np.testing.assert_allclose(y, expected, atol=1e-5)
  resized = np.asarray(layers.bilinear_resize(jnp.asarray(x), out_hw))[0]
  inner = slice(factor // 2, -(factor // 2))
  np.testing.assert_allclose(y[inner, inner], resized[inner, inner], atol=1e-5)


@pytest.mark.parametrize('factor, in_hw, out_hw', [(2, (3, 5), (5, 10)), (4, (3, 5), (11, 17)),
                                                   (2, (3, 4), (6, 8))])
def test_bilinear_conv_transpose_is_pytorch_conv_transpose_for_any_kernel(factor, in_hw, out_hw):
  """The kernel is torch's ConvTranspose2d weight [C_in, C_out, k, k] transposed (2, 3, 0, 1);
  the output is torch's with padding f/2, cropped at the bottom/right."""
  rng = np.random.default_rng(0)
  c, k = 2, 2 * factor
  x = rng.normal(size=(1, *in_hw, c)).astype(np.float32)
  torch_weight = rng.normal(size=(c, c, k, k)).astype(np.float32)
  expected = np_conv_transpose(x, torch_weight, factor, factor // 2, 0)
  expected = expected[:, :out_hw[0], :out_hw[1]]
  params = {'params': {'kernel': jnp.asarray(torch_weight.transpose(2, 3, 0, 1))}}
  y = layers.BilinearConvTranspose(factor).apply(params, x, out_hw)
  np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)


# --- Batch and layer normalisation ------------------------------------------------------------

def _assert_norm_gradients_match(grads, ref_grads, dtype):
  """(params {scale, bias}, input) gradients of a normalisation against flax's autodiff, within
  float32 rounding (bfloat16's for the input gradient of a bfloat16 input)."""
  for name in ('scale', 'bias'):
    np.testing.assert_allclose(grads[0][name], ref_grads[0][name], rtol=1e-4, atol=1e-3)
  grad_x, ref_grad_x = (np.asarray(g, np.float32) for g in (grads[1], ref_grads[1]))
  tolerance = 1e-4 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(grad_x, ref_grad_x, rtol=tolerance,
                             atol=tolerance * np.abs(ref_grad_x).max())


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_batch_norm_is_flaxs_with_a_written_out_backward(dtype):
  """layers.BatchNorm against NumPy (float64) and flax's nn.BatchNorm: the same variables, the
  same outputs and running statistics in training and evaluation, none updated while
  initialising, and its written-out gradients (input, scale, bias; through the outputs and
  through the updated statistics) equal to autodiff of flax's."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(3.0, 2.0, (3, 5, 7, 6)), dtype)  # Channel means far from 0.
  ours = layers.BatchNorm(momentum=0.9, epsilon=1e-5, dtype=dtype)
  flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5, dtype=dtype)
  initial = jax.eval_shape(lambda: ours.init(jax.random.key(0), x))
  assert jax.tree.map(lambda a: (a.shape, a.dtype), initial) == jax.tree.map(
      lambda a: (a.shape, a.dtype), jax.eval_shape(lambda: flax_bn.init(jax.random.key(0), x)))
  stats = {'mean': jnp.asarray(rng.normal(size=6), jnp.float32),
           'var': jnp.asarray(rng.uniform(0.5, 2.0, 6), jnp.float32)}
  params = {'scale': jnp.asarray(rng.normal(size=6), jnp.float32),
            'bias': jnp.asarray(rng.normal(size=6), jnp.float32)}
  weights = [jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in (x.shape, 6, 6)]

  def run(module):
    def loss(params, x):
      y, updates = module.apply({'params': params, 'batch_stats': stats}, x,
                                mutable=['batch_stats'])
      new = updates['batch_stats']
      return (jnp.sum(weights[0] * y) + jnp.sum(weights[1] * new['mean'])
              + jnp.sum(weights[2] * new['var'])), (y, new)
    (_, (y, new)), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
    evaluated = module.clone(use_running_average=True).apply(
        {'params': params, 'batch_stats': stats}, x)
    init_stats = module.init(jax.random.key(0), x)['batch_stats']
    return y, new, grads, evaluated, init_stats

  (y, new, grads, evaluated, init_stats), reference = jax.jit(
      lambda: (run(ours), run(flax_bn)))()
  assert y.dtype == evaluated.dtype == grads[1].dtype == dtype
  np.testing.assert_array_equal(init_stats['mean'], np.zeros(6))
  np.testing.assert_array_equal(init_stats['var'], np.ones(6))
  # NumPy, float64.
  x64 = np.asarray(x, np.float64)
  mean, var = x64.mean((0, 1, 2)), x64.var((0, 1, 2))
  scale, bias = np.asarray(params['scale']), np.asarray(params['bias'])
  tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=1e-2, atol=2e-2)
  np.testing.assert_allclose(np.asarray(y, np.float64),
                             (x64 - mean) / np.sqrt(var + 1e-5) * scale + bias, **tolerance)
  np.testing.assert_allclose(new['mean'], 0.9 * np.asarray(stats['mean']) + 0.1 * mean,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new['var'], 0.9 * np.asarray(stats['var']) + 0.1 * var,
                             rtol=1e-5, atol=1e-6)
  # flax's, value for value where the arithmetic is the same; gradients within rounding.
  ref_y, ref_new, ref_grads, ref_evaluated, _ = reference
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref_y, np.float32),
                             **tolerance)
  np.testing.assert_allclose(np.asarray(evaluated, np.float32),
                             np.asarray(ref_evaluated, np.float32), **tolerance)
  for name in ('mean', 'var'):
    np.testing.assert_allclose(new[name], ref_new[name], rtol=1e-6, atol=1e-7)
  _assert_norm_gradients_match(grads, ref_grads, dtype)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_layer_norm_is_flaxs_with_a_written_out_backward(dtype):
  """layers.LayerNorm against NumPy (float64) and flax's nn.LayerNorm(use_fast_variance=False):
  the same variables and outputs, and gradients (input, scale, bias) equal to autodiff of
  flax's."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(2.0, 3.0, (2, 5, 7, 12)), dtype)
  ours = layers.LayerNorm(epsilon=1e-5, dtype=dtype)
  flax_ln = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, dtype=dtype)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), jax.eval_shape(
      lambda: ours.init(jax.random.key(0), x))) == jax.tree.map(
          lambda a: (a.shape, a.dtype), jax.eval_shape(lambda: flax_ln.init(jax.random.key(0), x)))
  params = {'scale': jnp.asarray(rng.normal(size=12), jnp.float32),
            'bias': jnp.asarray(rng.normal(size=12), jnp.float32)}
  weights = jnp.asarray(rng.normal(size=x.shape), jnp.float32)

  def run(module):
    def loss(params, x):
      y = module.apply({'params': params}, x)
      return jnp.sum(weights * y), y
    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)

  ((_, y), grads), ((_, ref_y), ref_grads) = jax.jit(lambda: (run(ours), run(flax_ln)))()
  assert y.dtype == grads[1].dtype == dtype
  x64 = np.asarray(x, np.float64)
  mean, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
  expected = (x64 - mean) / np.sqrt(var + 1e-5) * np.asarray(params['scale']) + np.asarray(
      params['bias'])
  tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=1e-2, atol=3e-2)
  np.testing.assert_allclose(np.asarray(y, np.float64), expected, **tolerance)
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref_y, np.float32),
                             **tolerance)
  _assert_norm_gradients_match(grads, ref_grads, dtype)


# --- Stochastic depth ---------------------------------------------------------------------------

def test_drop_path():
  x = jnp.ones((4000, 2, 2, 3))
  layer = layers.DropPath(0.25)
  np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)
  y = np.asarray(layer.apply({}, x, deterministic=False, rngs={'dropout': jax.random.key(0)}))
  per_sample = y.reshape(4000, -1)
  assert np.all(per_sample.min(1) == per_sample.max(1))  # whole samples kept or dropped
  np.testing.assert_allclose(np.unique(per_sample), [0.0, 1 / 0.75], rtol=1e-6)
  assert abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.03


class _Block(nn.Module):
  """A residual block with a BatchNorm, a dense layer and stochastic depth."""
  drop_path: float | jax.Array

  @nn.compact
  def __call__(self, x, train):
    y = jnp.tanh(nn.Dense(x.shape[-1])(layers.batch_norm(train)(x)))
    return x + layers.DropPath(self.drop_path)(y, deterministic=not train)


class _Stage(nn.Module):
  rates: tuple[float, ...]
  scan_min_depth: int

  @nn.compact
  def __call__(self, x, train=False):
    return layers.repeated_blocks(self, lambda rate, **kw: _Block(rate, **kw), self.rates, x,
                                  train, self.scan_min_depth)


def test_repeated_blocks_scanned_equal_unrolled_with_the_same_variable_tree():
  """A stage of four blocks as a lax.scan over their stacked variables (one block in the
  program) gives the unrolled stage's outputs, gradients and BatchNorm statistics, under the
  unrolled stage's variable names; with stochastic depth, each dropout key gives its own
  dropped paths, and evaluation draws nothing."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3, 3, 4)), jnp.float32)
  unrolled, scanned = _Stage((0.0,) * 4, 0), _Stage((0.0,) * 4, 4)
  variables = unrolled.init(jax.random.key(0), x)
  assert jax.tree.structure(scanned.init(jax.random.key(0), x)) == jax.tree.structure(variables)
  assert set(variables['params']) == {'block0', 'block1', 'block2', 'block3'}

  def dots(stage):
    return str(jax.make_jaxpr(lambda v: stage.apply(v, x))(variables)).count('dot_general')
  assert dots(unrolled) == 4 and dots(scanned) == 1
  want = outputs_and_gradients(unrolled, variables, x, jax.random.key(1))
  got = outputs_and_gradients(scanned, variables, x, jax.random.key(1))
  assert jax.tree.structure(got) == jax.tree.structure(want)
  # Float32 rounding grows with the size of what is summed: a gradient that cancels to -0.06
  # between terms near 20 differed by 2.7e-5 on jaxlib 0.12.1 (CI), so atol follows each leaf.
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=max(2e-5, 5e-6 * float(np.abs(b).max())))
  moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(want[2]),
                                                jax.tree.leaves(variables['batch_stats']))]
  assert all(moved)  # Every block's statistics were written back.

  dropping = _Stage((0.0, 0.3, 0.6, 0.9), 4)
  eval_a, train_a, *_ = outputs_and_gradients(dropping, variables, x, jax.random.key(1))
  eval_b, train_b, *_ = outputs_and_gradients(dropping, variables, x, jax.random.key(2))
  np.testing.assert_array_equal(eval_a, eval_b)
  np.testing.assert_allclose(eval_a, want[0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(train_a, train_b)


@pytest.mark.parametrize('value_dim,scale', [(8, 8**-0.5), (16, 1.0)])
def test_attention_is_softmax_of_scaled_scores_times_values(value_dim, scale):
  """Against a NumPy brute force, per batch element and head (SegFormer's scaled heads;
  TopFormer's unscaled ones with wider values). On CPU every dtype takes this path; cuDNN's
  fused kernel is for GPUs in half precision."""
  rng = np.random.default_rng(0)
  query, key = (rng.normal(size=(2, n, 3, 8)).astype(np.float32) for n in (10, 6))
  value = rng.normal(size=(2, 6, 3, value_dim)).astype(np.float32)
  out = np.asarray(layers.attention(query, key, value, scale, jnp.float32))
  assert out.shape == (2, 10, 3, value_dim)
  for b in range(2):
    for h in range(3):
      scores = scale * query[b, :, h] @ key[b, :, h].T
      probs = np.exp(scores - scores.max(1, keepdims=True))
      probs /= probs.sum(1, keepdims=True)
      np.testing.assert_allclose(out[b, :, h], probs @ value[b, :, h], rtol=1e-5, atol=1e-6)
