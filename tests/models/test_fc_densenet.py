"""FC-DenseNet: the whole forward of a small instance against a NumPy transcription of the
authors' Lasagne network (dense blocks, transitions down, transitions up of only the new maps
with their crop and skip concatenation), element-wise dropout, the init, and the three
variants' parameter counts by the code's layer list against Table 2.
(A train step, BatchNorm in training: test_zoo.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.fc_densenet import BNReLUConv, fc_densenet
from tests.helpers import host_init
from tests.helpers.torch_reference import (np_batch_norm, np_conv2d, np_conv_transpose_of,
                                           np_max_pool)

NUM_CLASSES = 5
HW = (37, 53)
SMALL = dict(layers_per_block=(2, 1, 3, 1, 2), growth_rate=4, first_conv_features=8)


def _np_layer(x, p, s, k=3):
  y = np.maximum(np_batch_norm(x, p['bn'], s['bn'], 1e-4), 0)
  return np_conv2d(y, p['conv']['kernel'], 1, (k // 2, k // 2), bias=p['conv']['bias'])


def _np_fc_densenet(x, p, s, layers):
  """FC-DenseNet.py's Network in eval mode (dropout off)."""
  n_pool = len(layers) // 2
  stack = np_conv2d(x, p['first_conv']['kernel'], 1, (1, 1), bias=p['first_conv']['bias'])
  skips = []
  for i in range(n_pool):
    for j in range(layers[i]):
      name = f'down{i}_layer{j}'
      stack = np.concatenate([stack, _np_layer(stack, p[name], s[name])], -1)
    skips.append(stack)
    name = f'transition_down{i}'
    stack = np_max_pool(_np_layer(stack, p[name], s[name], k=1), 2, 2)
  new_maps = []
  for j in range(layers[n_pool]):
    name = f'bottleneck_layer{j}'
    new_maps.append(_np_layer(stack, p[name], s[name]))
    stack = np.concatenate([stack, new_maps[-1]], -1)
  for i, skip in enumerate(skips[::-1]):
    up = np_conv_transpose_of(np.concatenate(new_maps, -1), p[f'transition_up{i}'], 2, 0, 0)
    h, w = skip.shape[1:3]
    top, left = (up.shape[1] - h) // 2, (up.shape[2] - w) // 2
    stack = np.concatenate([up[:, top:top + h, left:left + w], skip], -1)
    new_maps = []
    for j in range(layers[n_pool + 1 + i]):
      name = f'up{i}_layer{j}'
      new_maps.append(_np_layer(stack, p[name], s[name]))
      stack = np.concatenate([stack, new_maps[-1]], -1)
  return np_conv2d(stack, p['classifier']['kernel'], bias=p['classifier']['bias'])


def test_forward_equals_a_numpy_transcription_of_the_authors_network():
  """Two poolings at 37 x 53 (18 x 26, 9 x 13): each transposed conv gives 2n + 1 (19 x 27,
  37 x 53), cropped to its skip connection where larger."""
  model = fc_densenet('103', NUM_CLASSES, **SMALL)
  variables = host_init.with_random_vectors(host_init.variables(model, HW))
  x = np.random.default_rng(1).normal(size=(1, *HW, 3)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    logits = jax.jit(lambda v, x: model.apply(v, x)['logits'])(variables, x)
  expected = _np_fc_densenet(x.astype(np.float64), variables['params'],
                             variables['batch_stats'], SMALL['layers_per_block'])
  assert logits.shape == expected.shape == (1, *HW, NUM_CLASSES)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
  # The upsampling path carries only new maps: the bottleneck block's 3 x 4.
  assert variables['params']['transition_up0']['kernel'].shape == (3, 3, 12, 12)


def test_dropout_drops_single_elements_in_training_only():
  """Lasagne's DropoutLayer: elements, not whole channels (rate 0.2, survivors scaled by
  1 / 0.8); nothing dropped at inference."""
  layer = BNReLUConv(16, 3)
  x = np.random.default_rng(0).normal(size=(2, 12, 12, 8)).astype(np.float32)
  variables = layer.init(jax.random.key(0), x)
  out, _ = layer.apply(variables, x, train=True, rngs={'dropout': jax.random.key(3)},
                       mutable=['batch_stats'])
  dropped = np.asarray(out) == 0
  assert 0.15 < dropped.mean() < 0.25
  per_channel = dropped.mean(axis=(0, 1, 2))
  assert np.all((per_channel > 0) & (per_channel < 1))  # No channel dropped whole.
  assert not np.any(np.asarray(layer.apply(variables, x)) == 0)


def test_init_is_he_uniform():
  """Lasagne's HeUniform(gain='relu'): U(+-sqrt(6 / fan_in)), biases 0; on one layer (a 3x3 conv
  from 240 channels to 48: fan_in 2160)."""
  layer = BNReLUConv(48, 3)
  params = layer.init(jax.random.key(0), jnp.zeros((1, 8, 8, 240)))['params']
  kernel = np.asarray(params['conv']['kernel'])
  bound = math.sqrt(6 / (9 * 240))
  assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.99 * bound
  assert abs(kernel.std() / (bound / math.sqrt(3)) - 1) < 0.05
  assert not np.any(params['conv']['bias'])


def _reference_count(layers: tuple[int, ...], k: int, num_classes: int) -> tuple[int, int]:
  """FC-DenseNet.py's Network, layer by layer: (trainable parameters, + the BN layers' running
  mean and inv_std, which Lasagne's get_all_param_values, and so its summary, count too).
  Layer on c channels: BN 2c (+2c), 3x3 conv c -> k with bias; transition down: BN, 1x1 conv
  c -> c; transition up: 3x3 transposed conv m -> m with bias, m = k x the previous block's
  layers."""
  n_pool = len(layers) // 2
  trainable = stats = 0
  c = 48
  trainable += 9 * 3 * 48 + 48

  def layer(c_in, k_out, kernel):
    nonlocal trainable, stats
    trainable += 2 * c_in + kernel * kernel * c_in * k_out + k_out
    stats += 2 * c_in

  skips = []
  for i in range(n_pool):
    for _ in range(layers[i]):
      layer(c, k, 3)
      c += k
    skips.append(c)
    layer(c, c, 1)
  for _ in range(layers[n_pool]):
    layer(c, k, 3)
    c += k
  new = k * layers[n_pool]
  for i, skip in enumerate(skips[::-1]):
    trainable += 9 * new * new + new
    c = new + skip
    for _ in range(layers[n_pool + 1 + i]):
      layer(c, k, 3)
      c += k
    new = k * layers[n_pool + 1 + i]
  trainable += c * num_classes + num_classes
  return trainable, trainable + stats


@pytest.mark.parametrize('variant, layers, k, expected, with_stats, paper', [
    ('56', (4,) * 11, 12, 1_376_795, 1_397_963, 1.5),
    ('67', (5,) * 11, 16, 3_463_243, 3_502_923, 3.5),
    ('103', (4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4), 16, 9_322_091, 9_425_163, 9.4)])
def test_full_size_parameter_counts(variant, layers, k, expected, with_stats, paper):
  """At CamVid's 11 classes. Table 2's 9.4M and 3.5M are the code's counts with the BN
  statistics; its 1.5M for FC-DenseNet56 is not (1.40M)."""
  model = fc_densenet(variant, 11)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = lambda tree: sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
  assert (count(variables['params']), count(variables)) == _reference_count(layers, k, 11) == (
      expected, with_stats)
  assert (round(with_stats / 1e6, 1) == paper) == (variant != '56')


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="'100'"):
    fc_densenet('100', NUM_CLASSES)
