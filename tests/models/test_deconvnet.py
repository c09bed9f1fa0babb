"""DeconvNet: the whole forward of a narrow instance against a NumPy transcription of the
authors' Caffe net (pooling switches and unpooling, the valid fc6 and its 7x7 deconvolution
back, the mirrored deconvolutions), the input-size error, and the full-size count (the paper's
252M).
(A train step, BatchNorm in training: test_zoo.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.deconvnet import deconvnet
from tests.helpers import host_init
from tests.helpers.torch_reference import np_batch_norm, np_conv2d, np_conv_transpose_of

NUM_CLASSES = 5
NARROW = dict(widths=(4, 6, 8, 10, 12), fc_features=12, fc_kernel=3)
HW = (70, 101)


def _np_pool_with_switches(x):
  """2x2 max pooling (odd sides padded with -inf, Caffe's rounding) and, per window, which of
  its four places (row-major, the first on ties) held the maximum."""
  n, h, w, c = x.shape
  x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-np.inf)
  windows = np.stack([x[:, i::2, j::2] for i in range(2) for j in range(2)], axis=3)
  where = windows.argmax(axis=3)
  return np.take_along_axis(windows, where[:, :, :, None], axis=3)[:, :, :, 0], where


def _np_unpool(x, where, hw):
  n, hp, wp, c = x.shape
  full = np.zeros((n, 2 * hp, 2 * wp, c))
  for k in range(4):
    i, j = divmod(k, 2)
    full[:, i::2, j::2] = np.where(where == k, x, 0)
  return full[:, :hw[0], :hw[1]]


def _np_deconvnet(x, p, s):
  bn_relu = lambda y, name, params=p, stats=s: np.maximum(
      np_batch_norm(y, params[name], stats[name]), 0)
  bp, bs = p['backbone'], s['backbone']
  switches, sizes = [], []
  for b, depth in enumerate((2, 2, 3, 3, 3), start=1):
    sizes.append(x.shape[1:3])
    for j in range(1, depth + 1):
      conv = bp[f'conv{b}_{j}']
      x = bn_relu(np_conv2d(x, conv['kernel'], 1, (1, 1), bias=conv['bias']), f'bn{b}_{j}',
                  bp, bs)
    x, where = _np_pool_with_switches(x)
    switches.append(where)
  x = bn_relu(np_conv2d(x, p['fc6']['kernel'], bias=p['fc6']['bias']), 'bnfc6')
  x = bn_relu(np_conv2d(x, p['fc7']['kernel'], bias=p['fc7']['bias']), 'bnfc7')
  x = bn_relu(np_conv_transpose_of(x, p['fc6_deconv'], 1, 0, 0), 'fc6_deconv_bn')
  for b, depth in ((5, 3), (4, 3), (3, 3), (2, 2), (1, 2)):
    x = _np_unpool(x, switches[b - 1], sizes[b - 1])
    for j in range(1, depth + 1):
      x = bn_relu(np_conv_transpose_of(x, p[f'deconv{b}_{j}'], 1, 1, 0), f'debn{b}_{j}')
  return np_conv2d(x, p['seg_score']['kernel'], bias=p['seg_score']['bias'])


def test_forward_equals_a_numpy_transcription_of_the_caffe_net():
  """Narrow widths and a 3x3 fc6 at 70 x 101 (pool5: 3 x 4, fc6: 1 x 2, back to 3 x 4 by the
  deconvolution); odd sides pool padded and unpool cropped."""
  model = deconvnet('vgg16', NUM_CLASSES, **NARROW)
  variables = host_init.with_random_vectors(host_init.variables(model, HW))
  x = np.random.default_rng(1).normal(size=(1, *HW, 3)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    logits = jax.jit(lambda v, x: model.apply(v, x)['logits'])(variables, x)
  expected = _np_deconvnet(x.astype(np.float64), variables['params'], variables['batch_stats'])
  assert logits.shape == expected.shape == (1, *HW, NUM_CLASSES)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
  assert variables['params']['deconv4_3']['kernel'].shape[2:] == (8, 10)  # 10 -> block 3's 8.


def test_an_input_too_small_for_fc6_is_named():
  model = deconvnet('vgg16', NUM_CLASSES)
  with pytest.raises(ValueError, match=r'at least 193x193'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 160, 240, 3))))


def test_full_size_parameter_count_is_the_paper_s():
  """The prototxt's layers at VOC's 21 classes: VGG16's convs with BN (14,723,136 trunk), fc6
  7x7x512x4096, fc7 4096x4096, the 7x7 deconvolution 4096 -> 512, the 13 3x3 deconvolutions,
  BN on each (2 per channel), biases everywhere, the 1x1 classifier: 251,805,653 (the paper's
  252M)."""
  widths, depths = (64, 128, 256, 512, 512), (2, 2, 3, 3, 3)
  fc = 49 * 512 * 4096 + 4096 + 2 * 4096 + 4096 * 4096 + 4096 + 2 * 4096
  fc += 49 * 4096 * 512 + 512 + 2 * 512
  decoder = 0
  for b in range(5, 0, -1):
    for j in range(1, depths[b - 1] + 1):
      out = widths[b - 1] if j < depths[b - 1] or b == 1 else widths[b - 2]
      decoder += 9 * widths[b - 1] * out + out + 2 * out
  model = deconvnet('vgg16', 21)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
  assert count == 14_723_136 + fc + decoder + 64 * 21 + 21 == 251_805_653


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="'vgg19'"):
    deconvnet('vgg19', NUM_CLASSES)
