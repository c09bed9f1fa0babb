"""RefineNet and Light-Weight RefineNet: chained residual pooling and residual conv units
against brute-force NumPy computations, both decoders against NumPy transcriptions of the codes'
forward passes on the encoder's stage outputs, the dropouts, and full-size parameter counts
against the references'.
(A train step, BatchNorm in training: test_zoo.py; the encoder ResNet: test_pspnet_deeplab.py
and the converters' tests; the codes' names: test_convert_refinenet.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.backbones.resnet import ResNet
from semseg_jax.models.refinenet import (ChainedResidualPooling, ResidualConvUnits, lw_refinenet,
                                         refinenet)
from tests.helpers import host_init
from tests.helpers.torch_reference import np_align_corners, np_conv2d

NUM_CLASSES = 5
HW = (75, 101)


def _np_max_pool_5x5(x):
  """MaxPool2d(5, stride=1, padding=2) by brute force: the max over the in-bounds 5x5
  neighbourhood of every pixel."""
  _, h, w, _ = x.shape
  out = np.empty_like(x)
  for i in range(h):
    for j in range(w):
      out[:, i, j] = x[:, max(i - 2, 0):i + 3, max(j - 2, 0):j + 3].max(axis=(1, 2))
  return out


def _np_conv(x, p, bias=False):
  k = p['kernel'].shape[0]
  return np_conv2d(x, p['kernel'], 1, (k // 2, k // 2), bias=p['bias'] if bias else None)


def _np_crp(x, p):
  top = x
  for i in range(1, 5):
    top = _np_conv(_np_max_pool_5x5(top), p[f'outvar_dimred_{i}'])
    x = top + x
  return x


def _np_rcu(x, p, blocks):
  """RCUBlock: per unit, x + conv2(relu(conv1(relu(x)))), conv1 with bias."""
  for i in range(1, blocks + 1):
    y = _np_conv(np.maximum(x, 0), p[f'conv_{i}'], bias=True)
    x = x + _np_conv(np.maximum(y, 0), p[f'conv_relu_varout_dimred_{i}'])
  return x


@pytest.mark.parametrize('kernel_size', [1, 3])
def test_chained_residual_pooling_is_the_codes(kernel_size):
  """Light-weight (1x1 convs) and RefineNet's (3x3)."""
  x = np.random.default_rng(0).normal(size=(2, 7, 9, 6)).astype(np.float32)
  block = ChainedResidualPooling(6, kernel_size)
  params = block.init(jax.random.key(0), x)['params']
  with jax.default_matmul_precision('highest'):
    got = block.apply({'params': params}, x)
  np.testing.assert_allclose(got, _np_crp(x.astype(np.float64), params), rtol=1e-5, atol=1e-5)


def test_residual_conv_units_are_the_code_s():
  x = np.random.default_rng(0).normal(size=(2, 7, 9, 6)).astype(np.float32)
  block = ResidualConvUnits(6, 3)
  params = host_init.with_random_vectors(block.init(jax.random.key(0), x))['params']
  assert set(params['conv_1']) == {'kernel', 'bias'}
  assert set(params['conv_relu_varout_dimred_1']) == {'kernel'}
  with jax.default_matmul_precision('highest'):
    got = block.apply({'params': params}, x)
  np.testing.assert_allclose(got, _np_rcu(x.astype(np.float64), params, 3), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize('light', [True, False])
def test_decoder_equals_a_numpy_transcription_of_the_code(light):
  """ResNetLW.forward (light) and refinenet-pytorch's RefineNet.forward, on a ResNet-18 encoder
  (the decoders are the same at any depth), at 75 x 101 (stages 19 x 26, 10 x 13, 5 x 7,
  3 x 4): each level's path resized with aligned corners to the next stage's size; logits at
  1/4 (19 x 26)."""
  model = (lw_refinenet if light else refinenet)('r50', NUM_CLASSES, depth=18)
  variables = host_init.with_random_vectors(host_init.variables(model, HW))
  x = np.random.default_rng(1).normal(size=(1, *HW, 3)).astype(np.float32)
  p = variables['params']
  with jax.default_matmul_precision('highest'):
    logits = jax.jit(lambda v, x: model.apply(v, x)['logits'])(variables, x)
    stages = ResNet(18, deep_stem=False, output_stride=32).apply(
        {'params': p['backbone'], 'batch_stats': variables['batch_stats']['backbone']}, x)
  l1, l2, l3, l4 = (np.asarray(s, np.float64) for s in stages)
  conv = lambda y, name: _np_conv(y, p[name])
  rcu = lambda y, name, blocks: y if light else _np_rcu(y, p[name], blocks)
  y = np.maximum(rcu(conv(l4, 'p_ims1d2_outl1_dimred'), 'adapt_stage1_b', 2), 0)
  y = rcu(_np_crp(y, p['mflow_conv_g1_pool']), 'mflow_conv_g1_b', 3)
  y = conv(y, 'mflow_conv_g1_b3_joint_varout_dimred')
  for level, skip in ((2, l3), (3, l2), (4, l1)):
    y = np_align_corners(y, *skip.shape[1:3])
    z = rcu(conv(skip, f'p_ims1d2_outl{level}_dimred'), f'adapt_stage{level}_b', 2)
    z = conv(z, f'adapt_stage{level}_b2_joint_varout_dimred')
    y = _np_crp(np.maximum(z + y, 0), p[f'mflow_conv_g{level}_pool'])
    y = rcu(y, f'mflow_conv_g{level}_b', 3)
    if level < 4:
      y = conv(y, f'mflow_conv_g{level}_b3_joint_varout_dimred')
  expected = _np_conv(y, p['clf_conv'], bias=True)
  assert logits.shape == expected.shape == (1, 19, 26, NUM_CLASSES)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def _reference_count(depth: int, num_classes: int) -> int:
  """ResNetLW: torchvision's resnet trunk (its published total minus fc) + the decoder's 1x1
  convs without bias (2048 -> 512, CRP(512) 4 x 512 x 512, 512 -> 256; three levels of
  C_i -> 256, 256 -> 256 and CRP(256); two 256 -> 256 after CRPs) + the 3x3 classifier."""
  torchvision = {50: 25_557_032, 101: 44_549_160, 152: 60_192_808}[depth]
  trunk = torchvision - (2048 * 1000 + 1000)
  decoder = (2048 * 512 + 4 * 512 * 512 + 512 * 256
             + sum(c * 256 + 256 * 256 + 4 * 256 * 256 for c in (1024, 512, 256))
             + 2 * 256 * 256)
  return trunk + decoder + 9 * 256 * num_classes + num_classes


@pytest.mark.parametrize('variant, depth, expected, published', [
    ('r50', 50, 27_357_525, 27), ('r101', 101, 46_349_653, 46), ('r152', 152, 61_993_301, 62)])
def test_full_size_parameter_counts(variant, depth, expected, published):
  """At VOC's 21 classes; the authors' README: 27M, 46M, 62M."""
  model = lw_refinenet(variant, 21)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
  assert count == _reference_count(depth, 21) == expected
  assert round(count / 1e6) == published


def test_refinenet_101_count_is_the_reference_module_s():
  """refinenet-pytorch's RefineNet(Bottleneck, [3, 4, 23, 3], 21), layer by layer: torchvision's
  resnet101 trunk; 3x3 convs without bias (2048 -> 512 and C_i -> 256 reductions, the 256 ->
  256 and 512 -> 256 joints, four per CRP); RCU units of two 3x3 convs, the first with bias (two
  units per adaptation, three after each CRP); the classifier: 118,052,437."""
  trunk = 44_549_160 - (2048 * 1000 + 1000)
  rcu = lambda c, units: units * (2 * 9 * c * c + c)
  top = 9 * 2048 * 512 + rcu(512, 2) + 4 * 9 * 512 * 512 + rcu(512, 3) + 9 * 512 * 256
  levels = sum(9 * c * 256 + rcu(256, 2) + 9 * 256 * 256 + 4 * 9 * 256 * 256 + rcu(256, 3)
               for c in (1024, 512, 256)) + 2 * 9 * 256 * 256
  model = refinenet('r101', 21)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
  assert count == trunk + top + levels + 9 * 256 * 21 + 21 == 118_052_437


def test_encoder_outputs_are_dropped_in_training_only():
  model = lw_refinenet('r50', NUM_CLASSES)
  variables = host_init.variables(model, (32, 32))
  x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
  run = lambda key: model.apply(variables, x, train=True, rngs={'dropout': key},
                                mutable=['batch_stats'])[0]['logits']
  assert not np.allclose(run(jax.random.key(0)), run(jax.random.key(1)))
  np.testing.assert_array_equal(model.apply(variables, x)['logits'],
                                model.apply(variables, x)['logits'])


def test_unknown_variant_is_named():
  for build in (lw_refinenet, refinenet):
    with pytest.raises(ValueError, match="'r34'"):
      build('r34', NUM_CLASSES)
