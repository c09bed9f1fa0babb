"""ERFNet: the whole forward of both variants against NumPy transcriptions of Table 1 and of
mmseg's erfnet_fcn (downsamplers with the pooling branch at odd sizes, factorised and dilated
non-bt-1Ds, upsamplers, the FCN head), channel dropout, logits at the input's size, full-size
parameter counts by the references' layer lists.
(A train step, BatchNorm in training: test_zoo.py; the transposed convs: test_layers.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.erfnet import NonBottleneck1D, erfnet
from tests.helpers import host_init
from tests.helpers.torch_reference import (np_batch_norm, np_bilinear, np_conv2d,
                                           np_conv_transpose_of, np_max_pool)

NUM_CLASSES = 5
EPS = 1e-3


def _relu(x):
  return np.maximum(x, 0)


def _np_downsampler(x, p, s, resize_pooled):
  """The paper's pools in ceil mode at odd sides; mmseg's pools down, then resizes to the
  conv's size."""
  conv = np_conv2d(x, p['conv']['kernel'], 2, (1, 1), bias=p['conv']['bias'])
  if resize_pooled:
    pooled = np_bilinear(np_max_pool(x, 2, 2), *conv.shape[1:3])
  else:
    pooled = np_max_pool(x, 2, 2, ceil_mode=True)
  return _relu(np_batch_norm(np.concatenate([conv, pooled], -1), p['bn'], s['bn'], EPS))


def _np_non_bt_1d(x, p, s, d):
  conv = lambda y, name, padding, dilation: np_conv2d(y, p[name]['kernel'], 1, padding,
                                                      dilation, p[name]['bias'])
  y = _relu(conv(x, 'conv3x1_1', (1, 0), (1, 1)))
  y = _relu(np_batch_norm(conv(y, 'conv1x3_1', (0, 1), (1, 1)), p['bn1'], s['bn1'], EPS))
  y = _relu(conv(y, 'conv3x1_2', (d, 0), (d, 1)))
  y = np_batch_norm(conv(y, 'conv1x3_2', (0, d), (1, d)), p['bn2'], s['bn2'], EPS)
  return _relu(x + y)


def _np_upsampler(x, p, s):
  y = np_conv_transpose_of(x, p['conv'], 2, 1, 1)
  return _relu(np_batch_norm(y, p['bn'], s['bn'], EPS))


def _np_layers(x, p, s, stage1_blocks, dilations, resize_pooled):
  """Table 1 but the classifier, in eval mode (dropout off), layer by layer: 16 channels at
  stride 2."""
  layer = iter(range(1, 100))
  name = lambda: f'layer{next(layer)}'
  for _ in range(2):
    n = name()
    x = _np_downsampler(x, p[n], s[n], resize_pooled)
  for _ in range(stage1_blocks):
    n = name()
    x = _np_non_bt_1d(x, p[n], s[n], 1)
  n = name()
  x = _np_downsampler(x, p[n], s[n], resize_pooled)
  for d in dilations:
    n = name()
    x = _np_non_bt_1d(x, p[n], s[n], d)
  for _ in range(2):
    n = name()
    x = _np_upsampler(x, p[n], s[n])
    for _ in range(2):
      n = name()
      x = _np_non_bt_1d(x, p[n], s[n], 1)
  return x, name()


def _eval_logits(model, hw):
  """(variables with random vectors, an image, the model's jitted inference logits on it)."""
  variables = host_init.with_random_vectors(host_init.variables(model, hw))
  x = np.random.default_rng(1).normal(size=(1, *hw, 3)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    return variables, x, jax.jit(lambda v, x: model.apply(v, x)['logits'])(variables, x)


def test_forward_equals_a_numpy_transcription_of_table_1():
  """With one 64-channel block and one dilated sequence (layers 1-2, 3, 4, 5-8, 9-15), at
  37 x 53: every downsampler sees an odd side, so its pooling branch rounds up with its conv."""
  model = erfnet('paper', NUM_CLASSES, stage1_blocks=1, dilated_sequences=1)
  variables, x, logits = _eval_logits(model, (37, 53))
  p, s = variables['params'], variables['batch_stats']
  features, classifier = _np_layers(x.astype(np.float64), p, s, 1, (2, 4, 8, 16), False)
  expected = np_conv_transpose_of(features, p[classifier], 2, 0, 0)
  assert logits.shape == (1, 37, 53, NUM_CLASSES) and expected.shape[1:3] == (40, 56)
  expected = expected[:, :37, :53]
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_mmseg_variant_equals_a_numpy_transcription_of_mmseg_s_erfnet_fcn():
  """mmseg's form at 37 x 53: its first two downsamplers resize their pooled halves (18 x 26,
  9 x 13) to their convs' sizes (19 x 27, 10 x 14); the FCN head (3x3 conv 16 -> 128 without
  bias, BN eps 1e-5, ReLU, 1x1 classifier) gives logits at stride 2 (20 x 28 after the two
  upsamplers)."""
  model = erfnet('mmseg', NUM_CLASSES, stage1_blocks=1, dilated_sequences=1)
  variables, x, logits = _eval_logits(model, (37, 53))
  p, s = variables['params'], variables['batch_stats']
  features, _ = _np_layers(x.astype(np.float64), p['backbone'], s['backbone'], 1,
                           (2, 4, 8, 16), True)
  head, head_stats = p['decode_head'], s['decode_head']
  y = np_conv2d(features, head['convs_0']['conv']['kernel'], 1, (1, 1))
  y = _relu(np_batch_norm(y, head['convs_0']['bn'], head_stats['convs_0']['bn']))
  classifier = head['classifier']['conv_seg']
  expected = np_conv2d(y, classifier['kernel'], bias=classifier['bias'])
  assert logits.shape == expected.shape == (1, 20, 28, NUM_CLASSES)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_non_bottleneck_1d_drops_whole_channels_in_training_only():
  """Dropout2d: on a positive input, a dropped channel's output is its input at every pixel
  (the branch is zero there); a kept channel's differs everywhere. At inference nothing is
  dropped."""
  block = NonBottleneck1D(dilation=2, dropout_rate=0.5)
  x = np.random.default_rng(0).uniform(1.0, 2.0, (2, 9, 11, 64)).astype(np.float32)
  variables = block.init(jax.random.key(0), x)
  out, _ = block.apply(variables, x, train=True, rngs={'dropout': jax.random.key(3)},
                       mutable=['batch_stats'])
  same = np.isclose(np.asarray(out), x).transpose(0, 3, 1, 2)  # [batch, channel, h, w]
  dropped = same.all(axis=(2, 3))
  assert 0.25 < dropped.mean() < 0.75, dropped.mean()
  assert same[~dropped].mean() < 0.01
  assert not np.isclose(block.apply(variables, x), x).all(axis=(1, 2)).any()


@pytest.mark.parametrize('hw', [(64, 128), (37, 53), (5, 7)])
def test_logits_cover_the_input_at_any_size(hw):
  model = erfnet('paper', NUM_CLASSES)
  images = jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, images)
  assert out['logits'].shape == (2, *hw, NUM_CLASSES) and out['aux'] == []


def _reference_count(num_classes: int) -> int:
  """erfnet_pytorch's Net, layer by layer (every conv with bias; BN: 2 per channel):
  downsampler(i, o): 3x3 conv i -> o - i; non-bt-1D(c): four 3-tap convs c -> c and two BNs;
  upsampler(i, o): 3x3 transposed conv; the 2x2 transposed-conv classifier."""
  down = lambda i, o: 9 * i * (o - i) + (o - i) + 2 * o
  non_bt = lambda c: 4 * (3 * c * c + c) + 4 * c
  up = lambda i, o: 9 * i * o + o + 2 * o
  encoder = down(3, 16) + down(16, 64) + 5 * non_bt(64) + down(64, 128) + 8 * non_bt(128)
  decoder = up(128, 64) + 2 * non_bt(64) + up(64, 16) + 2 * non_bt(16)
  return encoder + decoder + 4 * 16 * num_classes + num_classes


def test_full_size_parameter_count_is_the_reference_s():
  """2,064,191 at 19 classes; erfnet_pytorch's Net(20) holds 2,066,836: +65 for its void
  class's output, +2,580 for the encoder's 1x1 classifier of its first training stage."""
  model = erfnet('paper', 19)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
  assert count == _reference_count(19) == 2_064_191
  assert _reference_count(20) + 128 * 20 + 20 == 2_066_836
  assert sorted(variables['params'], key=lambda n: int(n[5:])) == [
      f'layer{i}' for i in range(1, 24)]


def test_mmseg_variant_counts_mmseg_s_parameters():
  """mmseg's erfnet_fcn at 19 classes: the backbone (layers 1-22, 2,062,956) and the FCN head
  (16 * 128 * 9 + BN 256 + 128 * 19 + 19 = 21,139)."""
  model = erfnet('mmseg', 19)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = lambda tree: sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
  assert count(variables['params']['backbone']) == _reference_count(19) - (4 * 16 * 19 + 19)
  assert count(variables['params']) == 2_062_956 + 21_139 == 2_084_095


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="'bn'"):
    erfnet('bn', NUM_CLASSES)
