"""EDANet: the whole forward against a NumPy transcription of Table 1 / Fig. 3 as the PyTorch
re-implementation writes them (downsampling blocks with and without pooling, EDA modules'
asymmetric and dilated convs and dense concatenation, the x8 align-corners upsampling), its
init, and the full-size parameter count.
(A train step, BatchNorm in training, channel dropout: test_zoo.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.edanet import edanet
from tests.helpers import host_init
from tests.helpers.torch_reference import (np_align_corners, np_batch_norm, np_conv2d,
                                           np_max_pool)

NUM_CLASSES = 5
HW = (37, 53)
TINY = dict(stage1_dilations=(1, 2), stage2_dilations=(2, 4))


def _relu(x):
  return np.maximum(x, 0)


def _np_conv(x, p, kernel_hw, dilation=1, stride=1):
  kh, kw = kernel_hw
  pad = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
  return np_conv2d(x, p['kernel'], stride, pad, (dilation if kh > 1 else 1,
                                                 dilation if kw > 1 else 1), p['bias'])


def _np_downsampling(x, p, s, features):
  """DownsamplerBlock: conv (3x3/2) || max pool 2x2/2 (ceil mode) if W_in < W_out, BN, ReLU."""
  y = _np_conv(x, p['conv'], (3, 3), stride=2)
  if x.shape[-1] < features:
    y = np.concatenate([y, np_max_pool(x, 2, 2, ceil_mode=True)], -1)
  return _relu(np_batch_norm(y, p['bn'], s['bn']))


def _np_eda(x, p, s, d):
  y = _relu(np_batch_norm(_np_conv(x, p['conv1x1'], (1, 1)), p['bn0'], s['bn0']))
  y = _np_conv(_np_conv(y, p['conv3x1_1'], (3, 1)), p['conv1x3_1'], (1, 3))
  y = _relu(np_batch_norm(y, p['bn1'], s['bn1']))
  y = _np_conv(_np_conv(y, p['conv3x1_2'], (3, 1), d), p['conv1x3_2'], (1, 3), d)
  y = _relu(np_batch_norm(y, p['bn2'], s['bn2']))
  return np.concatenate([y, x], -1)


def test_forward_equals_a_numpy_transcription():
  """Two EDA modules per stage at 37 x 53: the pooling rounds up with the convs (19 x 27,
  10 x 14), the third block is a conv alone (260 -> 130 becomes 140 -> 130 here), widths grow
  by 40 per module; logits at 5 x 7 resized to 37 x 53 with aligned corners."""
  model = edanet('edanet', NUM_CLASSES, **TINY)
  variables = host_init.with_random_vectors(host_init.variables(model, HW))
  x = np.random.default_rng(1).normal(size=(1, *HW, 3)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    logits = jax.jit(lambda v, x: model.apply(v, x)['logits'])(variables, x)
  p, s = variables['params'], variables['batch_stats']
  y = x.astype(np.float64)
  layer = iter(range(100))
  name = lambda: f'layers_{next(layer)}'
  for features in (15, 60):
    n = name()
    y = _np_downsampling(y, p[n], s[n], features)
  for d in (1, 2):
    n = name()
    y = _np_eda(y, p[n], s[n], d)
  assert y.shape[-1] == 140
  n = name()
  y = _np_downsampling(y, p[n], s[n], 130)
  for d in (2, 4):
    n = name()
    y = _np_eda(y, p[n], s[n], d)
  assert y.shape == (1, 5, 7, 210)
  expected = np_align_corners(_np_conv(y, p['project_layer'], (1, 1)), *HW)
  assert logits.shape == expected.shape == (1, *HW, NUM_CLASSES)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_init_is_the_re_implementation_s():
  """Conv weights N(0, 0.02^2), BN gamma N(1, 0.02^2) and beta 0, conv biases at PyTorch's
  default U(+-1/sqrt(fan_in)); checked on the projection (450 x classes) and the widest EDA
  module's 1x1 conv (410 -> 40)."""
  model = edanet('edanet', 19)
  params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))['params']
  for kernel in (params['project_layer']['kernel'], params['layers_15']['conv1x1']['kernel']):
    assert abs(float(np.std(kernel)) / 0.02 - 1) < 0.05 and abs(float(np.mean(kernel))) < 2e-3
  gammas = np.concatenate([np.ravel(params[f'layers_{i}']['bn2']['scale'])
                           for i in range(8, 16)])
  assert abs(gammas.mean() - 1) < 0.005 and 0.015 < gammas.std() < 0.025
  assert not np.any(params['layers_15']['bn2']['bias'])
  bias = np.asarray(params['layers_15']['conv1x1']['bias'])
  assert np.abs(bias).max() <= 1 / math.sqrt(410) and np.any(bias)


def _reference_count(num_classes: int) -> int:
  """pytorch_EDANet's EDANet(num_classes), layer by layer (every conv with bias; BN: 2 per
  channel): downsampler(i, o) = 9 i (o - i) + (o - i) + 2 o with pooling, 9 i o + o + 2 o
  without; EDA module(i) = 1x1 i -> 40, four 3-tap 40 -> 40 convs, three BNs."""
  down = lambda i, o: (9 * i * (o - i) + (o - i) if i < o else 9 * i * o + o) + 2 * o
  eda = lambda i: (i * 40 + 40) + 4 * (3 * 40 * 40 + 40) + 3 * 2 * 40
  stage1 = sum(eda(60 + 40 * i) for i in range(5))
  stage2 = sum(eda(130 + 40 * j) for j in range(8))
  return (down(3, 15) + down(15, 60) + stage1 + down(260, 130) + stage2
          + 450 * num_classes + num_classes)


def test_full_size_parameter_count_is_the_re_implementation_s():
  """689,485 at 19 classes; the paper rounds EDANet to 0.68M (680,916 without the
  projection layer)."""
  model = edanet('edanet', 19)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
  assert count == _reference_count(19) == 689_485
  assert _reference_count(19) - (450 * 19 + 19) == 680_916


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="'eda'"):
    edanet('eda', NUM_CLASSES)
