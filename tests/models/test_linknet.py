"""LinkNet: the whole forward against a NumPy transcription of the paper's network (links,
strides, crops), logits at the input's size, full-size parameter counts by the reference's
layer list, variants. (A train step, BatchNorm in training: test_zoo.py; the transposed convs:
test_layers.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.linknet import linknet
from tests.helpers import host_init
from tests.helpers.torch_reference import (np_batch_norm, np_conv2d, np_conv_transpose_of,
                                           np_max_pool)

NUM_CLASSES = 5


def _np_conv(x, kernel, stride=1, padding=0, bias=None):
  return np_conv2d(x, kernel, stride, (padding, padding), bias=bias)


def _np_linknet(x, p, s):
  """LinkNet (ResNet-18 encoder) in eval mode, written from the paper's Fig. 1-3 and the Torch7
  code: encoder block i's input is added to decoder i's output (cropped to it), then a ReLU."""
  relu = lambda v: np.maximum(v, 0)
  b, bs = p['backbone'], s['backbone']
  x = relu(np_batch_norm(_np_conv(x, b['conv1']['kernel'], 2, 3), b['bn1'], bs['bn1']))
  links = [np_max_pool(x, 3, 2, 1)]
  x = links[0]
  for stage in range(1, 5):
    for block in range(2):
      name = f'layer{stage}_block{block}'
      p_, s_ = b[name], bs[name]
      stride = 2 if stage > 1 and block == 0 else 1
      y = relu(np_batch_norm(_np_conv(x, p_['conv1']['kernel'], stride, 1), p_['bn1'], s_['bn1']))
      y = np_batch_norm(_np_conv(y, p_['conv2']['kernel'], 1, 1), p_['bn2'], s_['bn2'])
      if 'downsample_conv' in p_:
        x = np_batch_norm(_np_conv(x, p_['downsample_conv']['kernel'], stride),
                   p_['downsample_bn'], s_['downsample_bn'])
      x = relu(x + y)
    links.append(x)
  x = links[4]
  for i in (4, 3, 2, 1):
    d, ds = p[f'decoder{i}'], s[f'decoder{i}']
    stride = 1 if i == 1 else 2
    x = _np_conv(x, d['conv1']['kernel'], bias=d['conv1']['bias'])
    x = relu(np_batch_norm(x, d['bn1'], ds['bn1'], 1e-3))
    x = np_conv_transpose_of(x, d['full_conv'], stride, 1, stride - 1)
    x = relu(np_batch_norm(x, d['bn2'], ds['bn2'], 1e-3))
    x = _np_conv(x, d['conv2']['kernel'], bias=d['conv2']['bias'])
    x = relu(np_batch_norm(x, d['bn3'], ds['bn3'], 1e-3))
    link = links[i - 1]
    x = relu(link + x[:, :link.shape[1], :link.shape[2]])
  x = relu(np_batch_norm(np_conv_transpose_of(x, p['final_full_conv1'], 2, 1, 1), p['final_bn1'],
                  s['final_bn1']))
  x = _np_conv(x, p['final_conv']['kernel'], 1, 1, p['final_conv']['bias'])
  x = relu(np_batch_norm(x, p['final_bn2'], s['final_bn2'], 1e-3))
  return np_conv_transpose_of(x, p['classifier'], 2, 0, 0)


def test_forward_equals_a_numpy_transcription_of_the_paper_s_network():
  """At 40 x 56 (not multiples of 32: encoder 3 and 4 round up, so decoders 4 and 3 are
  cropped before their links and the logits to the input)."""
  model = linknet('r18', NUM_CLASSES)
  variables = host_init.with_random_vectors(host_init.variables(model, (40, 56)))
  x = np.random.default_rng(1).normal(size=(1, 40, 56, 3)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    logits = jax.jit(lambda v, x: model.apply(v, x)['logits'])(variables, x)
  expected = _np_linknet(x.astype(np.float64), variables['params'], variables['batch_stats'])
  assert logits.shape == expected.shape == (1, 40, 56, NUM_CLASSES)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize('hw', [(64, 96), (33, 47), (5, 7)])
def test_logits_cover_the_input_at_any_size(hw):
  model = linknet('r18', NUM_CLASSES)
  images = jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, images)
  assert out['logits'].shape == (2, *hw, NUM_CLASSES) and out['aux'] == []


def _reference_count(resnet_params: int, num_classes: int) -> int:
  """The parameters of the Torch7 code's network (e-lab/LinkNet models/model.lua, layer by
  layer): the ImageNet ResNet without its 1000-way linear layer, four decoders (1x1 m -> m/4,
  3x3 full conv m/4 -> m/4, 1x1 m/4 -> n, each with bias and a BN), the final block (3x3 full
  conv 64 -> 32 and 3x3 conv 32 -> 32, each with bias and a BN, 2x2 full conv 32 -> classes
  with bias). (The PyTorch port's decoders have no biases: 992 fewer.)"""
  def decoder(m, n):
    q = m // 4
    return (m * q + q) + (9 * q * q + q) + (q * n + n) + 2 * (q + q + n)
  decoders = decoder(64, 64) + decoder(128, 64) + decoder(256, 128) + decoder(512, 256)
  final = (9 * 64 * 32 + 32 + 64) + (9 * 32 * 32 + 32 + 64) + (4 * 32 * num_classes + num_classes)
  return resnet_params - (512 * 1000 + 1000) + decoders + final


@pytest.mark.parametrize('variant, resnet_params, num_classes, expected', [
    ('r18', 11_689_512, 11, 11_535_659),  # torchvision's resnet18; the paper: 11.5M.
    ('r34', 21_797_672, 19, 21_644_851),  # torchvision's resnet34.
])
def test_full_size_parameter_count_is_the_reference_s(variant, resnet_params, num_classes,
                                                      expected):
  model = linknet(variant, num_classes)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
  assert count == _reference_count(resnet_params, num_classes) == expected


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="'r50'"):
    linknet('r50', NUM_CLASSES)
