"""VGG16 trunk, FCN (32s/16s/8s on VGG16, and mmseg's form on a dilated ResNet) and (Bayesian)
SegNet: parameter counts and names, output sizes, the FCN skip alignment and flip symmetry, and
Monte-Carlo dropout. (Inference, randomness and BatchNorm updates: test_zoo.py; the upsampling
and max-unpooling layers: test_layers.py.)"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.evaluators.mc_dropout import mc_dropout_probabilities
from semseg_jax.models.backbones.vgg import VGG16, torchvision_names
from semseg_jax.models.fcn import FCNSkipHead, fcn, fcn_vgg16
from semseg_jax.models.segformer import segformer
from semseg_jax.models.segnet import segnet
from tests.helpers.param_trees import expand, leaves, modules

NUM_CLASSES = 5
FCN_TINY = dict(widths=(8, 16, 16, 32, 32), fc_features=32)
SEGNET_TINY = dict(widths=(8, 16, 16, 32, 32))
RNGS = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _abstract_variables(model, hw=(64, 64)):
  images = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
  return jax.eval_shape(lambda x: model.init(RNGS, x), images)


# --- Parameter counts (full size, no compute) ------------------------------------------------

# 13 convs: sum of 9 * c_in * c_out + c_out over (3,64) (64,64) (64,128) (128,128) (128,256)
# (256,256) x2 (256,512) (512,512) x5 = 14,714,688 (torchvision vgg16.features); BN adds
# 2 * (2*64 + 2*128 + 3*256 + 6*512) = 8,448 (vgg16_bn.features: 14,723,136).
VGG16_FEATURES = 14_714_688
VGG16_BN_FEATURES = 14_723_136
FC6 = 25088 * 4096 + 4096  # classifier.0 as a 7x7 conv: 102,764,544
FC7 = 4096 * 4096 + 4096   # classifier.3 as a 1x1 conv: 16,781,312


def test_vgg16_trunk_param_counts():
  assert _count(_abstract_variables(VGG16())['params']) == VGG16_FEATURES
  assert _count(_abstract_variables(VGG16(batch_norm=True))['params']) == VGG16_BN_FEATURES
  fully_conv = _count(_abstract_variables(VGG16(fully_conv=True))['params'])
  # = torchvision vgg16's 138,357,544 less classifier.6 (4096 * 1000 + 1000).
  assert fully_conv == VGG16_FEATURES + FC6 + FC7 == 138_357_544 - 4_097_000


def test_torchvision_names_cover_the_params():
  names = torchvision_names(batch_norm=False)
  assert [names[f'conv{b}_{j}'] for b, j in [(1, 1), (1, 2), (2, 1), (3, 3), (5, 3)]] == \
      ['features.0', 'features.2', 'features.5', 'features.14', 'features.28']
  assert (names['fc6'], names['fc7']) == ('classifier.0', 'classifier.3')
  params = _abstract_variables(VGG16(fully_conv=True))['params']
  assert set(params) == set(names)
  names_bn = torchvision_names(batch_norm=True, fully_conv=False)
  assert [names_bn[f'conv{b}_1'] for b in range(1, 6)] == \
      ['features.0', 'features.7', 'features.14', 'features.24', 'features.34']
  assert (names_bn['conv5_3'], names_bn['bn5_3']) == ('features.40', 'features.41')
  assert set(_abstract_variables(VGG16(batch_norm=True))['params']) == set(names_bn)


# At 21 classes, on top of the trunk + fc6 + fc7 (134,260,544):
#   score_fr 4096*21+21 = 86,037; score_pool4 512*21+21 = 10,773; score_pool3 256*21+21 = 5,397
#   upscore 21*21*64*64 = 1,806,336; upscore16 21*21*32*32 = 451,584;
#   upscore8 21*21*16*16 = 112,896; upscore2, upscore_pool4 21*21*4*4 = 7,056 each.
# The Caffe nets (voc-fcn*s/net.py) have exactly these layers and blobs.
FCN_PARAMS_21 = {
    '32s': 134_260_544 + 86_037 + 1_806_336,                      # 136,152,917
    '16s': 134_260_544 + 86_037 + 10_773 + 7_056 + 451_584,       # 134,815,994
    '8s': 134_260_544 + 86_037 + 10_773 + 5_397 + 2 * 7_056 + 112_896,  # 134,489,759
}


# The head's layers: the Caffe nets' names (score_* 1x1 convs with bias, upscore* transposed
# convs without).
FCN_HEAD_LEAVES = {
    '32s': expand('score_fr/{kernel,bias}', 'upscore/kernel'),
    '16s': expand('{score_fr,score_pool4}/{kernel,bias}', '{upscore2,upscore16}/kernel'),
    '8s': expand('{score_fr,score_pool4,score_pool3}/{kernel,bias}',
                 '{upscore2,upscore_pool4,upscore8}/kernel'),
}


@pytest.mark.parametrize('variant', sorted(FCN_PARAMS_21))
def test_fcn_param_counts_and_names(variant):
  params = _abstract_variables(fcn_vgg16(variant, 21))['params']
  assert _count(params) == FCN_PARAMS_21[variant]
  assert set(params) == {'backbone', 'decode_head'}
  assert leaves(params['decode_head']) == FCN_HEAD_LEAVES[variant]
  # The trunk: conv{b}_{j} and fc6, fc7, each a kernel and a bias (torchvision's layers).
  assert leaves(params['backbone']) == expand('{conv{1..2}_{1..2},conv{3..5}_{1..3},fc6,fc7}/'
                                              '{kernel,bias}')


def test_fcn_on_a_dilated_resnet_has_mmsegs_layout():
  """mmseg's FCN: FCNHead (two 3x3 ConvModules, conv_cat on the concatenated input,
  classifier) on stage 4 and the auxiliary FCN head on stage 3."""
  model = fcn('r18-d8', NUM_CLASSES, channels=16)
  params = _abstract_variables(model)['params']
  assert set(params) == {'backbone', 'decode_head', 'auxiliary_heads_0'}
  assert modules(params['decode_head']) == expand('{convs_{0..1},conv_cat}/{conv,bn}',
                                                  'classifier/conv_seg')
  assert modules(params['auxiliary_heads_0']) == {'convs_0/conv', 'convs_0/bn',
                                                  'classifier/conv_seg'}
  assert params['decode_head']['conv_cat']['conv']['kernel'].shape == (3, 3, 512 + 16, 16)
  with pytest.raises(ValueError, match='multi_grid'):
    fcn('vgg16-8s', 21, multi_grid=(1, 2, 4))


# Encoder 14,723,136 (VGG16-BN convs). Decoder convs (3x3, bias): 5 x 512->512 (2,359,808 each),
# 512->256 (1,179,904), 2 x 256->256 (590,080), 256->128 (295,040), 128->128 (147,584),
# 128->64 (73,792), 64->64 (36,928), 64->11 (6,347) = 14,718,795; decoder BN
# 2 * (5*512 + 3*256 + 2*128 + 2*64) = 7,424. Total 29,449,355 (paper: 29.5M).
SEGNET_PARAMS_11 = 14_723_136 + 14_718_795 + 7_424


@pytest.mark.parametrize('variant', ['vgg16', 'bayesian'])
def test_segnet_param_counts_and_names(variant):
  variables = _abstract_variables(segnet(variant, 11))
  assert _count(variables['params']) == SEGNET_PARAMS_11 == 29_449_355
  assert _count(variables['params']['backbone']) == VGG16_BN_FEATURES  # the paper's 14.7M
  assert _count(variables['batch_stats']) == 2 * (4224 + 3712)  # mean + var of 25 BNs' channels
  # The Caffe layers' names: conv{b}_{j} [+ _D in the decoder], their BNs bn{b}_{j}[_D];
  # conv1_1_D, the classifier, has no BN.
  params = variables['params']
  blocks = '{{1..2}_{1..2},{3..5}_{1..3}}'
  assert modules(params['backbone']) == expand(f'{{conv,bn}}{blocks}')
  assert modules(params['decode_head']) == expand(f'{{conv,bn}}{blocks}_D') - {'bn1_1_D'}


# --- Shapes -----------------------------------------------------------------------------------

TINY_MODELS = {
    'fcn32s': lambda: fcn_vgg16('32s', NUM_CLASSES, **FCN_TINY),
    'fcn16s': lambda: fcn_vgg16('16s', NUM_CLASSES, **FCN_TINY),
    'fcn8s': lambda: fcn_vgg16('8s', NUM_CLASSES, **FCN_TINY),
    'segnet': lambda: segnet('vgg16', NUM_CLASSES, **SEGNET_TINY),
    'bayesian': lambda: segnet('bayesian', NUM_CLASSES, **SEGNET_TINY),
}


@functools.cache
def _tiny_variables(name):
  """A tiny model's variables, as shapes (fully convolutional: the same for any input size)."""
  return _abstract_variables(TINY_MODELS[name]())


@pytest.mark.parametrize('name', sorted(TINY_MODELS))
@pytest.mark.parametrize('hw', [(33, 95), (1, 7)])
def test_logits_cover_the_input_at_any_size(name, hw):
  """In training (inference of the zoo's tiny FCN-8s and Bayesian SegNet: test_zoo.py). Over
  the five poolings 33 is odd at every step and 95 only at the first; 1 x 7 pools to 1 x 1."""
  model, images = TINY_MODELS[name](), jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
  apply = functools.partial(model.apply, train=True, rngs={'dropout': jax.random.key(1)},
                            mutable=['batch_stats'])
  out, _ = jax.eval_shape(apply, _tiny_variables(name), images)
  assert out['logits'].shape == (2, *hw, NUM_CLASSES)
  assert out['logits'].dtype == jnp.float32
  assert out['aux'] == []


@pytest.mark.parametrize('name', ['fcn8s', 'bayesian'])
def test_bfloat16_compute_float32_params_and_logits(name):
  model = TINY_MODELS[name]().clone(dtype=jnp.bfloat16)
  variables = _abstract_variables(model, (45, 61))
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  out, _ = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, rngs={'dropout': jax.random.key(1)},
                               mutable=['batch_stats']),
      variables, jax.ShapeDtypeStruct((2, 45, 61, 3), jnp.float32))
  assert out['logits'].shape == (2, 45, 61, NUM_CLASSES)
  assert out['logits'].dtype == jnp.float32


def test_bad_variants_are_rejected():
  with pytest.raises(ValueError, match='8s'):
    fcn_vgg16('4s', 21)
  with pytest.raises(ValueError, match='bayesian'):
    segnet('basic', 11)


# --- FCN skip alignment -----------------------------------------------------------------------

def _ramp(stride: int, n_h: int, n_w: int) -> np.ndarray:
  """A linear function of the input coordinates sampled at the centres s*i + (s - 1)/2 of the
  pixels of a stride-s map: [1, n_h, n_w, 1]."""
  ys = stride * np.arange(n_h) + (stride - 1) / 2
  xs = stride * np.arange(n_w) + (stride - 1) / 2
  return (0.7 * ys[:, None] - 0.4 * xs[None, :] + 3.0)[None, :, :, None].astype(np.float32)


@pytest.mark.parametrize('variant, fused', [('32s', 1), ('16s', 2), ('8s', 3)])
def test_skip_fusion_is_aligned_pixel_for_pixel(variant, fused):
  """With identity score layers, feeding each of fc7, pool4, pool3 the same linear function
  sampled at its own pixel centres must give `fused` times that function at every input pixel
  (away from the borders, where the zero padding of the upsampling fades): any skip or crop
  off by one pixel at any stride would offset the sum."""
  image_hw = (245, 229)  # not multiples of 32: the coarse maps are rounded up
  sizes = {s: tuple(-(-n // s) for n in image_hw) for s in (8, 16, 32)}
  fc7, pool4, pool3 = (_ramp(s, *sizes[s]) for s in (32, 16, 8))
  head = FCNSkipHead(num_classes=1, variant=variant)
  variables = head.init(jax.random.key(0), fc7, pool4, pool3, image_hw)
  scores = [p for name, p in variables['params'].items() if name.startswith('score')]
  assert len(scores) == fused and not any(np.any(p['kernel']) for p in scores)  # zero init
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.ones_like(p) if path[0].key.startswith('score') and p.ndim == 4 else p,
      variables['params'])
  logits = np.asarray(head.apply({'params': params}, fc7, pool4, pool3, image_hw))[0, :, :, 0]
  expected = fused * _ramp(1, *image_hw)[0, :, :, 0]
  assert logits.shape == image_hw
  inner = (slice(40, image_hw[0] - 40), slice(40, image_hw[1] - 40))
  np.testing.assert_allclose(logits[inner], expected[inner], rtol=1e-5, atol=1e-3)


def _random_variables(model, images_shape, seed, symmetric=False, random_statistics=False):
  """Random variables of `model`, drawn on the host (no compile): conv kernels He-scaled
  (mirror-symmetric along both spatial axes if `symmetric`), BatchNorm statistics 0 / 1 (or,
  with `random_statistics`, means ~ N(0, 0.1) and variances in [0.5, 1.5])."""
  abstract = jax.eval_shape(lambda x: model.init(RNGS, x),
                            jax.ShapeDtypeStruct(images_shape, jnp.float32))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name in ('mean', 'var') and random_statistics:
      value = (0.1 * rng.normal(size=leaf.shape) if name == 'mean'
               else rng.uniform(0.5, 1.5, size=leaf.shape))
      return jnp.asarray(value, jnp.float32)
    if name in ('mean', 'var'):
      return jnp.full(leaf.shape, float(name == 'var'), jnp.float32)
    if leaf.ndim == 4:
      value = rng.normal(size=leaf.shape) * math.sqrt(2.0 / math.prod(leaf.shape[:-1]))
      if symmetric:
        value = (value + value[::-1] + value[:, ::-1] + value[::-1, ::-1]) / 4
    else:
      value = float(name == 'scale') + 0.1 * rng.normal(size=leaf.shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, abstract)


# --- FCN-8s under flips -----------------------------------------------------------------------

def test_fcn8s_commutes_with_flips():
  """At sizes divisible by 32 every pooling window, padding and crop is placed symmetrically,
  so an FCN-8s with mirror-symmetric kernels (score layers included, which start at zero
  otherwise) must commute with flipping the image: a crop or skip placed off-centre would break
  this. (Its training forward and dropout: test_zoo.py.)"""
  model = fcn_vgg16('8s', NUM_CLASSES, **FCN_TINY)
  images = jax.random.normal(jax.random.key(3), (2, 64, 96, 3))
  variables = _random_variables(model, images.shape, seed=4, symmetric=True)
  assert set(variables) == {'params'}  # no BatchNorm
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False)['logits'])
  logits = np.asarray(apply(variables, images))
  assert np.abs(logits).mean() > 1e-3
  for axis in (1, 2):
    flipped = apply(variables, jnp.flip(images, axis))
    np.testing.assert_allclose(np.asarray(flipped), np.flip(logits, axis), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope='module')
def bayesian_tiny():
  """A tiny Bayesian SegNet at an odd size, random variables (BatchNorm statistics other than
  0 / 1) and a jitted eval apply. (Its training forward, BatchNorm updates and dropout:
  test_zoo.py.)"""
  model = segnet('bayesian', NUM_CLASSES, **SEGNET_TINY)
  images = jax.random.normal(jax.random.key(8), (2, 21, 27, 3))
  variables = _random_variables(model, images.shape, seed=8, random_statistics=True)
  eval_apply = jax.jit(lambda v, x, k: model.apply(v, x, train=False, rngs={'dropout': k}))
  return model, variables, images, eval_apply


# --- Monte-Carlo dropout ----------------------------------------------------------------------

def test_mc_dropout_matches_a_loop_over_the_same_keys(bayesian_tiny):
  model, variables, images, _ = bayesian_tiny
  rng, num_samples = jax.random.key(10), 4
  mean, uncertainty = jax.jit(
      lambda v, x, k: mc_dropout_probabilities(model, v, x, k, num_samples))(
          variables, images, rng)
  sample = jax.jit(lambda v, x, k: jax.nn.softmax(model.clone(mc_dropout=True).apply(
      v, x, train=False, rngs={'dropout': k})['logits'], axis=-1))
  probs = np.stack([np.asarray(sample(variables, images, k))
                    for k in jax.random.split(rng, num_samples)])
  assert mean.shape == (2, 21, 27, NUM_CLASSES) and uncertainty.shape == (2, 21, 27)
  assert mean.dtype == uncertainty.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(mean), probs.mean(0), atol=1e-6)
  np.testing.assert_allclose(np.asarray(uncertainty), probs.var(0).mean(-1), atol=1e-6)
  assert float(uncertainty.max()) > 1e-6
  assert not np.allclose(probs[0], probs[1])  # dropout samples at inference


def test_mc_dropout_without_dropout_has_no_uncertainty(bayesian_tiny):
  """Plain SegNet (the same parameters, no dropout layers): every sample is the deterministic
  prediction, i.e. Bayesian SegNet's at inference without mc_dropout."""
  _, variables, images, eval_apply = bayesian_tiny
  model = segnet('vgg16', NUM_CLASSES, **SEGNET_TINY)
  mean, uncertainty = jax.jit(
      lambda v, x, k: mc_dropout_probabilities(model, v, x, k, 3))(
          variables, images, jax.random.key(11))
  np.testing.assert_array_equal(np.asarray(uncertainty), 0.0)
  logits = eval_apply(variables, images, jax.random.key(12))['logits']
  np.testing.assert_allclose(np.asarray(mean), np.asarray(jax.nn.softmax(logits, -1)),
                             atol=1e-6)


def test_mc_dropout_needs_the_field():
  model = segformer('b0', NUM_CLASSES)
  with pytest.raises(ValueError, match='mc_dropout'):
    mc_dropout_probabilities(model, {}, jnp.zeros((1, 8, 8, 3)), jax.random.key(0), 2)
  assert isinstance(model, nn.Module)
