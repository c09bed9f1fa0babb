"""DRN (C and D) for segmentation: the whole forward of DRN-C-26 and DRN-D-22 against a NumPy
transcription of fyu/drn's DRN and DRNSeg (dilation schedule, DRN-C's non-residual de-gridding
blocks, DRN-D's plain conv levels, the frozen bilinear x8 deconvolution), that deconvolution
against FCN's learnable one at its initialisation, and every variant's parameter count against
the authors' published ones.
(A train step, BatchNorm in training: test_zoo.py; the files' names: test_convert_drn.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.drn import drn
from semseg_jax.models.layers import BilinearConvTranspose, fixed_bilinear_upsampling
from tests.helpers import host_init
from tests.helpers.torch_reference import np_batch_norm, np_conv2d, np_conv_transpose

NUM_CLASSES = 5
HW = (37, 53)


def _relu(x):
  return np.maximum(x, 0)


def _conv(x, kernel, stride=1, dilation=1):
  pad = dilation * (kernel.shape[0] - 1) // 2
  return np_conv2d(x, kernel, stride, (pad, pad), (dilation, dilation))


def _basic(x, p, s, stride, dilation, residual=True):
  y = _relu(np_batch_norm(_conv(x, p['conv1']['kernel'], stride, dilation), p['bn1'], s['bn1']))
  y = np_batch_norm(_conv(y, p['conv2']['kernel'], 1, dilation), p['bn2'], s['bn2'])
  if not residual:
    return _relu(y)
  if 'downsample_0' in p:
    x = np_batch_norm(np_conv2d(x, p['downsample_0']['kernel'], stride), p['downsample_1'],
                      s['downsample_1'])
  return _relu(x + y)


def _conv_bn_relu(x, p, s, conv, bn, stride=1, dilation=1):
  return _relu(np_batch_norm(_conv(x, p[conv]['kernel'], stride, dilation), p[bn], s[bn]))


def _np_drn(x, p, s, arch, blocks):
  """drn.py's DRN.forward to level 8 (basic blocks)."""
  if arch == 'C':
    x = _conv_bn_relu(x, p, s, 'conv1', 'bn1')
    x = _basic(x, p['layer1_0'], s['layer1_0'], 1, 1)
    x = _basic(x, p['layer2_0'], s['layer2_0'], 2, 1)
  else:
    x = _conv_bn_relu(x, p, s, 'layer0_0', 'layer0_1')
    x = _conv_bn_relu(x, p, s, 'layer1_0', 'layer1_1')
    x = _conv_bn_relu(x, p, s, 'layer2_0', 'layer2_1', stride=2)
  for level, stride, dilation in ((3, 2, 1), (4, 2, 1), (5, 1, 2), (6, 1, 4)):
    for j in range(blocks[level - 1]):
      name = f'layer{level}_{j}'
      x = _basic(x, p[name], s[name], stride if j == 0 else 1, dilation)
  for level, dilation in ((7, 2), (8, 1)):
    if arch == 'C':
      x = _basic(x, p[f'layer{level}_0'], s[f'layer{level}_0'], 1, dilation, residual=False)
    else:
      x = _conv_bn_relu(x, p, s, f'layer{level}_0', f'layer{level}_1', dilation=dilation)
  return x


def _np_bilinear_up8(x, hw):
  """segment.py's `up`: ConvTranspose2d(C, C, 16, stride 8, padding 4, groups=C) with
  fill_up_weights' kernel, by definition, cropped to `hw`."""
  f, c = 8, (2 * 8 - 1) / 16
  taps = [(1 - abs(i / f - c)) for i in range(16)]
  kernel = np.outer(taps, taps)
  weight = np.zeros((x.shape[-1], x.shape[-1], 16, 16))
  weight[np.arange(x.shape[-1]), np.arange(x.shape[-1])] = kernel
  return np_conv_transpose(x, weight, 8, 4, 0)[:, :hw[0], :hw[1]]


@pytest.mark.parametrize('variant, arch, blocks', [
    ('c26', 'C', (1, 1, 2, 2, 2, 2, 1, 1)), ('d22', 'D', (1, 1, 2, 2, 2, 2, 1, 1))])
def test_forward_equals_a_numpy_transcription_of_drnseg(variant, arch, blocks):
  """At 37 x 53 (1/8: 5 x 7): the upsampled 40 x 56 logits are cropped to the input."""
  model = drn(variant, NUM_CLASSES)
  variables = host_init.with_random_vectors(host_init.variables(model, HW))
  x = np.random.default_rng(1).normal(size=(1, *HW, 3)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    logits = jax.jit(lambda v, x: model.apply(v, x)['logits'])(variables, x)
  p, s = variables['params'], variables['batch_stats']
  features = _np_drn(x.astype(np.float64), p['backbone'], s['backbone'], arch, blocks)
  assert features.shape == (1, 5, 7, 512)
  scores = np_conv2d(features, p['seg']['kernel'], bias=p['seg']['bias'])
  expected = _np_bilinear_up8(scores, HW)
  assert logits.shape == expected.shape == (1, *HW, NUM_CLASSES)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_fixed_bilinear_upsampling_equals_fcn_s_deconvolution_at_its_init():
  x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
  learnable = BilinearConvTranspose(8)
  variables = learnable.init(jax.random.key(0), x)
  np.testing.assert_allclose(fixed_bilinear_upsampling(x, 8, (37, 53)),
                             learnable.apply(variables, x, (37, 53)), rtol=1e-5, atol=1e-5)


def _reference_count(variant: str) -> int:
  """drn.py's DRN with its ImageNet classifier (fc 512 -> 1000 with bias), layer by layer:
  convs without bias, BN 2 per channel; basic block (i -> o) = 9 i o + 9 o o + 4 o;
  bottleneck (i -> 4o) = i o + 9 o o + 4 o o + 12 o; a projection (i -> o) = i o + 2 o where
  the stride or width changes at a level's first block."""
  arch, bottleneck, blocks = {
      'c26': ('C', False, (1, 1, 2, 2, 2, 2, 1, 1)), 'c42': ('C', False, (1, 1, 3, 4, 6, 3, 1, 1)),
      'c58': ('C', True, (1, 1, 3, 4, 6, 3, 1, 1)), 'd22': ('D', False, (1, 1, 2, 2, 2, 2, 1, 1)),
      'd38': ('D', False, (1, 1, 3, 4, 6, 3, 1, 1)), 'd54': ('D', True, (1, 1, 3, 4, 6, 3, 1, 1)),
      'd105': ('D', True, (1, 1, 3, 4, 23, 3, 1, 1))}[variant]
  widths = (16, 32, 64, 128, 256, 512, 512, 512)
  basic = lambda i, o: 9 * i * o + 9 * o * o + 4 * o + (i * o + 2 * o if i != o else 0)
  conv = lambda i, o: 9 * i * o + 2 * o
  total = 49 * 3 * 16 + 2 * 16
  if arch == 'C':
    total += basic(16, 16) + basic(16, 32)
  else:
    total += conv(16, 16) + conv(16, 32)
  c = 32
  for level in range(3, 7):
    o = widths[level - 1]
    for j in range(blocks[level - 1]):
      if bottleneck:
        total += c * o + 9 * o * o + 4 * o * o + 12 * o
        total += (c * 4 * o + 8 * o) if j == 0 else 0
        c = 4 * o
      else:
        total += 9 * c * o + 9 * o * o + 4 * o + ((c * o + 2 * o) if j == 0 else 0)
        c = o
  for level in (7, 8):
    if arch == 'C':
      total += basic(c, 512)
    else:
      total += conv(c, 512)
    c = 512
  return total + 512 * 1000 + 1000


@pytest.mark.parametrize('variant, published', [
    ('c26', 21.1), ('c42', 31.2), ('c58', 41.6), ('d22', 16.4), ('d38', 26.5), ('d54', 35.8),
    ('d105', 54.8)])
def test_full_size_parameter_counts_are_the_published_ones(variant, published):
  """The trunk + the ImageNet classifier = drn.py's DRN (README: 21.1M ... 54.8M; the README's
  Cityscapes table repeats these); our segmentation model replaces the classifier with `seg`
  (512 x C + C) and holds the frozen deconvolution as a constant."""
  model = drn(variant, 19)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = lambda tree: sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
  trunk = count(variables['params']['backbone'])
  assert trunk + 512 * 1000 + 1000 == _reference_count(variant)
  assert round((trunk + 513_000) / 1e6, 1) == published
  assert count(variables['params']) == trunk + 512 * 19 + 19


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="'d24'"):
    drn('d24', NUM_CLASSES)
