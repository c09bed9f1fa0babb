"""ESPNet and ESPNet-C: the whole forward of both against a NumPy transcription of the authors'
code (ESP modules with their hierarchical feature fusion, the strided form, the image pyramid,
the decoder's transposed convs and concatenations), cropping at sizes that are not multiples of
8, and full-size parameter counts against the published files' and the paper's.
(A train step, BatchNorm in training: test_zoo.py; the published names: test_convert_espnet.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.espnet import espnet
from tests.helpers import host_init
from tests.helpers.torch_reference import (np_avg_pool, np_batch_norm, np_conv2d,
                                           np_conv_transpose_of)

NUM_CLASSES = 5
EPS = 1e-3
HW = (37, 53)
TINY = dict(stage2_blocks=1, stage3_blocks=2)


def _np_bn_prelu(x, p, s):
  y = np_batch_norm(x, p['bn'], s['bn'], EPS)
  return np.where(y >= 0, y, y * p['act']['slope'])


def _np_conv(x, kernel, stride=1, dilation=1):
  pad = dilation * (kernel.shape[0] - 1) // 2
  return np_conv2d(x, kernel, stride, (pad, pad), (dilation, dilation))


def _np_esp(x, p, s, downsample=False, add=True):
  """DownSamplerB / DilatedParllelResidualBlockB: reduce, five dilated 3x3 convs, d2, d2+d4,
  d2+d4+d8, d2+..+d16 beside d1, (+ input), BN, PReLU."""
  reduced = _np_conv(x, p['c1']['kernel'], 2 if downsample else 1)
  d = {r: _np_conv(reduced, p[f'd{r}']['kernel'], dilation=r) for r in (1, 2, 4, 8, 16)}
  y = np.concatenate([d[1], d[2], d[2] + d[4], d[2] + d[4] + d[8],
                      d[2] + d[4] + d[8] + d[16]], -1)
  if add and not downsample:
    y = x + y
  return _np_bn_prelu(y, p, s)


def _np_encoder(x, p, s, blocks):
  """ESPNet_Encoder.forward: (level1's output, b2's, the classifier's logits)."""
  image_2x = np_avg_pool(x, 3, 2, 1)  # InputInjectionA: AvgPool2d(3, 2, padding=1).
  image_4x = np_avg_pool(image_2x, 3, 2, 1)
  level1 = _np_bn_prelu(_np_conv(x, p['level1']['conv']['kernel'], 2), p['level1'],
                        s['level1'])
  y = _np_bn_prelu(np.concatenate([level1, image_2x], -1), p['b1'], s['b1'])
  first = y = _np_esp(y, p['level2_0'], s['level2_0'], downsample=True)
  for i in range(blocks[0]):
    y = _np_esp(y, p[f'level2_block{i}'], s[f'level2_block{i}'])
  level2 = _np_bn_prelu(np.concatenate([y, first, image_4x], -1), p['b2'], s['b2'])
  first = y = _np_esp(level2, p['level3_0'], s['level3_0'], downsample=True)
  for i in range(blocks[1]):
    y = _np_esp(y, p[f'level3_block{i}'], s[f'level3_block{i}'])
  y = _np_bn_prelu(np.concatenate([first, y], -1), p['b3'], s['b3'])
  return level1, level2, np_conv2d(y, p['classifier']['kernel'])


def _np_espnet(x, p, s, blocks):
  """ESPNet.forward (test/Model.py), each 2x2 transposed conv cropped to its partner's size."""
  level1, level2, logits = _np_encoder(x, p['backbone'], s['backbone'], blocks)
  up = lambda y, name, hw: np_conv_transpose_of(y, p[name], 2, 0, 0)[:, :hw[0], :hw[1]]
  y = up(np_batch_norm(logits, p['br'], s['br'], EPS), 'up_l3', level2.shape[1:3])
  projected = np_conv2d(level2, p['level3_C']['kernel'])
  y = _np_bn_prelu(np.concatenate([projected, y], -1), p['combine_l2_l3_0'],
                   s['combine_l2_l3_0'])
  y = _np_esp(y, p['combine_l2_l3_1'], s['combine_l2_l3_1'], add=False)
  y = _np_bn_prelu(up(y, 'up_l2_0', level1.shape[1:3]), p['up_l2_1'], s['up_l2_1'])
  y = _np_bn_prelu(_np_conv(np.concatenate([y, level1], -1), p['conv']['conv']['kernel']),
                   p['conv'], s['conv'])
  return up(y, 'classifier', x.shape[1:3])


def _eval_logits(model):
  variables = host_init.with_random_vectors(host_init.variables(model, HW))
  x = np.random.default_rng(1).normal(size=(1, *HW, 3)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    return variables, x, jax.jit(lambda v, x: model.apply(v, x)['logits'])(variables, x)


def test_espnet_equals_a_numpy_transcription_of_the_authors_network():
  """37 x 53: the encoder's maps are 19 x 27, 10 x 14, 5 x 7; each transposed conv doubles
  and is cropped (10 x 14 -> 10 x 14, 20 x 28 -> 19 x 27, 38 x 54 -> 37 x 53)."""
  model = espnet('espnet', NUM_CLASSES, **TINY)
  variables, x, logits = _eval_logits(model)
  expected = _np_espnet(x.astype(np.float64), variables['params'], variables['batch_stats'],
                        (1, 2))
  assert logits.shape == expected.shape == (1, *HW, NUM_CLASSES)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_espnet_c_equals_the_transcription_of_its_encoder():
  model = espnet('espnet_c', NUM_CLASSES, **TINY)
  variables, x, logits = _eval_logits(model)
  *_, expected = _np_encoder(x.astype(np.float64), variables['params']['backbone'],
                             variables['batch_stats']['backbone'], (1, 2))
  assert logits.shape == expected.shape == (1, 5, 7, NUM_CLASSES)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_void_output_is_built_and_left_out_of_the_logits():
  """With void_output every C-wide layer has C + 1 channels, and the logits are the first C of
  the network's C + 1 outputs."""
  model = espnet('espnet', NUM_CLASSES, void_output=True, **TINY)
  variables, x, logits = _eval_logits(model)
  assert variables['params']['classifier']['kernel'].shape[-1] == NUM_CLASSES + 1
  expected = _np_espnet(x.astype(np.float64), variables['params'], variables['batch_stats'],
                        (1, 2))
  assert expected.shape[-1] == NUM_CLASSES + 1 and logits.shape[-1] == NUM_CLASSES
  np.testing.assert_allclose(logits, expected[..., :NUM_CLASSES], rtol=1e-4,
                             atol=1e-4 * np.abs(expected).max())


def _reference_count(variant: str, classes: int, alpha2: int = 2, alpha3: int = 8) -> int:
  """test/Model.py layer by layer: CBR(i, o, k) = k k i o + 3 o (BN 2, PReLU 1 per channel);
  BR(c) = 3 c; an ESP module (i -> o, n = o // 5, n1 = o - 4n) = k k i n (k = 3 strided, else
  1) + 9 n n1 + 4 * 9 n n + 3 o; the decoder's 2x2 transposed convs C -> C (4 C C each)."""
  cbr = lambda i, o, k: k * k * i * o + 3 * o

  def esp(i, o, k):
    n = o // 5
    return k * k * i * n + 9 * n * (o - 4 * n) + 36 * n * n + 3 * o

  encoder = (cbr(3, 16, 3) + 3 * 19 + esp(19, 64, 3) + alpha2 * esp(64, 64, 1) + 3 * 131
             + esp(131, 128, 3) + alpha3 * esp(128, 128, 1) + 3 * 256 + 256 * classes)
  if variant == 'espnet_c':
    return encoder
  c = classes
  decoder = (2 * c + 4 * c * c + 131 * c + 3 * 2 * c + esp(2 * c, c, 1) + 4 * c * c + 3 * c
             + cbr(16 + c, c, 3) + 4 * c * c)
  return encoder + decoder


@pytest.mark.parametrize('variant, void, expected', [
    ('espnet', True, 364_569), ('espnet_c', True, 349_449),
    ('espnet', False, 362_949), ('espnet_c', False, 349_193)])
def test_full_size_parameter_count_is_the_published_one(variant, void, expected):
  """alpha2 = 2, alpha3 = 8 with the void output: the published espnet_p_2_q_8 files' counts
  (364,569: the paper's 0.364M; ESPNet-C 349,449); 19 outputs without it."""
  model = espnet(variant, 19, void_output=void)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
  assert count == _reference_count(variant, 20 if void else 19) == expected


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="'espnet_a'"):
    espnet('espnet_a', NUM_CLASSES)
