"""CGNet: the whole forward of both variants against a NumPy transcription of the authors'
Context_Guided_Network (input injection, CG blocks and their downsampling form, the global
context, the concatenations between stages), PReLU, the two references' inits, full-size
parameter counts by their layer lists.
(A train step, BatchNorm in training, channel dropout: test_zoo.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.cgnet import ContextGuidedBlock, cgnet
from tests.helpers import host_init
from tests.helpers.torch_reference import np_avg_pool, np_batch_norm, np_bilinear, np_conv2d

NUM_CLASSES = 5
EPS = 1e-3
HW = (37, 53)


def _np_prelu(x, p):
  return np.where(x >= 0, x, x * p['slope'])


def _np_depthwise(x, kernel, dilation):
  """A 3x3 depthwise conv (groups = channels) as a dense conv with a diagonal kernel."""
  c = kernel.shape[-1]
  dense = np.zeros((3, 3, c, c))
  dense[:, :, np.arange(c), np.arange(c)] = kernel[:, :, 0, :]
  return np_conv2d(x, dense, 1, (dilation, dilation), (dilation, dilation))


def _np_conv_bn_prelu(x, p, s, stride):
  k = p['conv']['kernel'].shape[0]
  y = np_conv2d(x, p['conv']['kernel'], stride, (k // 2, k // 2))
  return _np_prelu(np_batch_norm(y, p['bn'], s['bn'], EPS), p['activate'])


def _np_cg_block(x, p, s, dilation, downsample):
  """The code's ContextGuidedBlock(_Down): 1x1 (3x3/2) ConvBNPReLU; F_loc || F_sur; BN, PReLU;
  (1x1 reduce); FGlo; (+ input)."""
  y = _np_conv_bn_prelu(x, p['conv1x1'], s['conv1x1'], 2 if downsample else 1)
  joint = np.concatenate([_np_depthwise(y, p['f_loc']['kernel'], 1),
                          _np_depthwise(y, p['f_sur']['kernel'], dilation)], -1)
  joint = _np_prelu(np_batch_norm(joint, p['bn'], s['bn'], EPS), p['activate'])
  if downsample:
    joint = np_conv2d(joint, p['bottleneck']['kernel'])
  fc = lambda v, name: v @ p['f_glo'][name]['kernel'] + p['f_glo'][name]['bias']
  pooled = joint.mean(axis=(1, 2))
  weights = 1 / (1 + np.exp(-fc(np.maximum(fc(pooled, 'fc_0'), 0), 'fc_2')))
  out = joint * weights[:, None, None, :]
  return out if downsample else x + out


def _np_backbone(x, p, s, num_blocks):
  """Context_Guided_Network.forward up to bn_prelu_3 (in eval mode), the stage-3 features."""
  bn_prelu = lambda y, name: _np_prelu(np_batch_norm(y, p[name]['bn'], s[name]['bn'], EPS),
                                       p[name]['prelu'])
  image_2x = np_avg_pool(x, 3, 2, 1)  # InputInjection: AvgPool2d(3, 2, padding=1).
  image_4x = np_avg_pool(image_2x, 3, 2, 1)
  for i in range(3):
    x = _np_conv_bn_prelu(x, p[f'stem_{i}'], s[f'stem_{i}'], 2 if i == 0 else 1)
  x = bn_prelu(np.concatenate([x, image_2x], -1), 'norm_prelu_0')
  blocks = {}
  for stage, (count, dilation) in enumerate(zip(num_blocks, (2, 4)), start=1):
    for i in range(count):
      name = f'level{stage}_{i}'
      x = _np_cg_block(x, p[name], s[name], dilation, downsample=i == 0)
      blocks[stage, i] = x
    first = blocks[stage, 0]
    parts = [x, first, image_4x] if stage == 1 else [first, x]
    x = bn_prelu(np.concatenate(parts, -1), f'norm_prelu_{stage}')
  return x


def _eval_logits(model):
  variables = host_init.with_random_vectors(host_init.variables(model, HW))
  x = np.random.default_rng(1).normal(size=(1, *HW, 3)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    return variables, x, jax.jit(lambda v, x: model.apply(v, x)['logits'])(variables, x)


def test_paper_variant_equals_a_numpy_transcription_of_the_authors_network():
  """M = 2, N = 3 at 37 x 53 (odd sides at every stride: 19 x 27, 10 x 14, 5 x 7): the
  classifier (no bias) at 1/8, bilinearly upsampled to the input."""
  model = cgnet('paper', NUM_CLASSES, num_blocks=(2, 3))
  variables, x, logits = _eval_logits(model)
  p, s = variables['params'], variables['batch_stats']
  features = _np_backbone(x.astype(np.float64), p['backbone'], s['backbone'], (2, 3))
  assert features.shape == (1, 5, 7, 256) and set(p['classifier']) == {'kernel'}
  expected = np_bilinear(np_conv2d(features, p['classifier']['kernel']), *HW)
  assert logits.shape == (1, *HW, NUM_CLASSES)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_mmseg_variant_equals_the_transcription_with_mmseg_s_head():
  """mmseg's form: the same backbone, FCNHead(num_convs=0) = a 1x1 classifier with bias,
  logits at 1/8."""
  model = cgnet('mmseg', NUM_CLASSES, num_blocks=(2, 3))
  variables, x, logits = _eval_logits(model)
  p, s = variables['params'], variables['batch_stats']
  features = _np_backbone(x.astype(np.float64), p['backbone'], s['backbone'], (2, 3))
  classifier = p['decode_head']['classifier']['conv_seg']
  expected = np_conv2d(features, classifier['kernel'], bias=classifier['bias'])
  assert logits.shape == expected.shape == (1, 5, 7, NUM_CLASSES)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_each_variant_starts_as_its_reference_does():
  """The authors' script: convs N(0, 2 / fan_in), nn.Linear's default U(+-1/sqrt(fan_in)) with
  its bias, PReLU slopes 0.25. mmseg's init_weights: convs and FCs N(0, 2 / fan_out), biases
  0, PReLU slopes 0. Checked on a stage-3 downsampling block (131 -> 128): its 1x1 bottleneck
  256 -> 128 and its global context's FC 128 -> 8."""
  x = jnp.zeros((1, 8, 8, 131))
  for reference, fan, slope in (('paper', 'in', 0.25), ('mmseg', 'out', 0.0)):
    block_module = ContextGuidedBlock(128, 4, 16, downsample=True, reference=reference)
    block = block_module.init(jax.random.key(0), x)['params']
    bottleneck = np.asarray(block['bottleneck']['kernel'])  # (1, 1, 256, 128)
    expected = math.sqrt(2 / (256 if fan == 'in' else 128))
    assert abs(bottleneck.std() / expected - 1) < 0.03, (reference, bottleneck.std(), expected)
    fc = block['f_glo']['fc_0']
    if reference == 'paper':
      bound = 1 / math.sqrt(128)
      assert np.abs(fc['kernel']).max() <= bound and np.abs(fc['kernel']).max() > 0.9 * bound
      assert np.abs(fc['bias']).max() <= bound and np.any(fc['bias'] != 0)
    else:
      assert abs(np.asarray(fc['kernel']).std() / math.sqrt(2 / 8) - 1) < 0.1
      assert not np.any(fc['bias'])
    assert np.all(block['activate']['slope'] == slope)
    assert np.all(block['conv1x1']['activate']['slope'] == slope)


def test_variants_pass_their_reference_s_init_to_every_layer():
  """Which init each variant's layers get (the values are checked above): PReLU slopes start
  at 0.25 in 'paper' and 0 in 'mmseg' everywhere, the stem's included."""
  for variant, slope in (('paper', 0.25), ('mmseg', 0.0)):
    model = cgnet(variant, NUM_CLASSES, num_blocks=(2, 2))
    params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))['params']['backbone']
    slopes = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
              if str(getattr(path[-1], 'key', '')) == 'slope']
    assert len(slopes) > 10 and all(np.all(s == slope) for s in slopes)


def test_prelu_takes_each_channel_s_slope():
  model = cgnet('paper', NUM_CLASSES, num_blocks=(2, 2))
  variables = host_init.with_random_vectors(host_init.variables(model, (16, 16)))
  slope = variables['params']['backbone']['norm_prelu_0']['prelu']['slope']
  assert slope.shape == (35,) and (slope < 0).any() and (slope > 0).any()


def _official_count(num_classes: int, m: int = 3, n: int = 21) -> int:
  """Context_Guided_Network(classes, M, N), layer by layer: ConvBNPReLU(i, o, k) = k*k*i*o +
  3 o (BN 2, PReLU 1 per channel); BNPReLU(c) = 3 c; FGlo(c, r) = c * c/r + c/r + c/r * c + c;
  CG block(c) = ConvBNPReLU(c, c/2, 1) + two depthwise 3x3 (9 c/2 each) + BNPReLU(c) + FGlo;
  CG down block(i, o) = ConvBNPReLU(i, o, 3) + two depthwise 3x3 (9 o each) + BN and PReLU of
  2 o (6 o) + 1x1 reduce 2o -> o + FGlo(o); the classifier 1x1 256 -> classes without bias."""
  cbp = lambda i, o, k: k * k * i * o + 3 * o
  fglo = lambda c, r: 2 * c * (c // r) + c // r + c
  block = lambda c, r: cbp(c, c // 2, 1) + 9 * c + 3 * c + fglo(c, r)
  down = lambda i, o, r: cbp(i, o, 3) + 18 * o + 6 * o + 2 * o * o + fglo(o, r)
  stage1 = cbp(3, 32, 3) + 2 * cbp(32, 32, 3) + 3 * 35
  stage2 = down(35, 64, 8) + (m - 1) * block(64, 8) + 3 * 131
  stage3 = down(131, 128, 16) + (n - 1) * block(128, 16) + 3 * 256
  return stage1 + stage2 + stage3 + 256 * num_classes


@pytest.mark.parametrize('variant', ['paper', 'mmseg'])
def test_full_size_parameter_count_is_the_reference_s(variant):
  """M3N21 at 19 classes: 496,306 in the authors' network (the paper's "0.5M"; the count its
  training script prints); mmseg's adds the classifier's 19 biases: 496,325."""
  model = cgnet(variant, 19)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
  expected = _official_count(19) + (19 if variant == 'mmseg' else 0)
  assert count == expected == {'paper': 496_306, 'mmseg': 496_325}[variant]


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="'m3n21'"):
    cgnet('m3n21', NUM_CLASSES)
