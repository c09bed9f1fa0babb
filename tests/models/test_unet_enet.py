"""U-Net and ENet: shapes at odd sizes, U-Net's init, PReLU, parameter counts and names.
(Inference, BatchNorm and dropout in training: test_zoo.py; their transposed convs and the max
unpooling: test_layers.py.)"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.enet import enet
from semseg_jax.models.layers import PReLU
from semseg_jax.models.unet import unet
from tests.helpers.param_trees import expand, modules

UNET_TINY = dict(base_width=8, depth=3)
HW = (45, 61)
NUM_CLASSES = 5


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _abstract_init(model, hw, dtype=jnp.float32):
  images = jax.ShapeDtypeStruct((1, *hw, 3), dtype)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images), images


def _abstract_logits(model, hw, train):
  variables, images = _abstract_init(model, hw)
  out = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=train, rngs={'dropout': jax.random.key(1)},
                               mutable=['batch_stats'])[0], variables, images)
  return out


@functools.cache
def _full_enet_variables():
  """The full ENet's variables, as shapes (fully convolutional: the same for any input size)."""
  return _abstract_init(enet('enet', NUM_CLASSES), HW)[0]


def _tiny_training_shapes(model):
  """(training outputs, variables) on 2 x 45 x 61 images as shapes (the init's trace is the
  training forward). Inference and what the training forward computes (finite outputs, every
  BatchNorm statistic following the batch, dropout from the 'dropout' rng) are checked on the
  same tiny models by test_zoo.py."""
  images = jax.ShapeDtypeStruct((2, *HW, 3), jnp.float32)
  rngs = {'params': jax.random.key(1), 'dropout': jax.random.key(2)}
  return jax.eval_shape(lambda x: model.init_with_output(rngs, x, train=True), images)


def _check_training_shapes(train_out, variables, bn_path):
  assert train_out['logits'].shape == (2, *HW, NUM_CLASSES)
  assert train_out['logits'].dtype == jnp.float32
  assert train_out['aux'] == []
  stats = variables['batch_stats']
  for key in bn_path:
    stats = stats[key]
  assert set(stats) == {'mean', 'var'}


# --- U-Net ---------------------------------------------------------------------------------

def test_unet_bn_at_odd_size_and_its_init():
  """'bn' variant, base 8, depth 3: 45x61 is padded to 48x64 inside and cropped back. Its own
  initialisers jitted (one compile) for the paper's init."""
  model = unet('bn', NUM_CLASSES, **UNET_TINY)
  _check_training_shapes(*_tiny_training_shapes(model), ('down1', 'bn1'))
  params = jax.jit(lambda x: model.init(jax.random.key(1), x))(jnp.zeros((1, *HW, 3)))['params']
  assert set(params) == {'down1', 'down2', 'down3', 'upconv2', 'up2', 'upconv1', 'up1',
                         'classifier'}
  # Per level (1..D from the input side) two 3x3 convs and their BNs; up-convolutions between.
  assert modules(params) == expand('{down{1..3},up{1..2}}/{conv,bn}{1..2}', 'upconv{1..2}',
                                   'classifier')
  assert 'bias' not in params['down1']['conv1']  # BN follows
  assert params['upconv2']['kernel'].shape == (2, 2, 16, 32)  # (kh, kw, out, in)
  # The paper's init: N(0, 2 / N), N = 9 * C_in (3x3 conv, 8 * 16 * 9 = 1152 samples).
  kernel = np.asarray(params['down2']['conv1']['kernel'])
  assert abs(kernel.std() / math.sqrt(2 / (9 * 8)) - 1) < 0.1


@pytest.mark.parametrize('hw', [(45, 61), (16, 16), (33, 17), (7, 5)])
@pytest.mark.parametrize('train', [False, True])
def test_unet_logits_cover_the_input(hw, train):
  out = _abstract_logits(unet('paper', NUM_CLASSES, **UNET_TINY), hw, train)
  assert out['logits'].shape == (1, *hw, NUM_CLASSES)
  assert out['aux'] == []


def test_unet_paper_variant_has_no_batch_norm():
  variables, _ = _abstract_init(unet('paper', NUM_CLASSES, **UNET_TINY), HW)
  assert set(variables) == {'params'}
  assert modules(variables['params']) == expand('{down{1..3},up{1..2}}/conv{1..2}',
                                                'upconv{1..2}', 'classifier')
  assert variables['params']['down1']['conv1']['bias'].shape == (8,)


# Paper U-Net, base 64, depth 5, "same" 3x3 convs with bias (k*k*C_in*C_out + C_out):
#   contracting 3->64: 1,792 + 36,928;  64->128: 73,856 + 147,584;  128->256: 295,168 + 590,080;
#     256->512: 1,180,160 + 2,359,808;  512->1024: 4,719,616 + 9,438,208        = 18,843,200
#   expanding, up-conv 2x2 (4*C_in*C_out + C_out) then two 3x3 convs:
#     1024->512: 2,097,664 + 4,719,104 + 2,359,808 = 9,176,576
#     512->256:    524,544 + 1,179,904 +   590,080 = 2,294,528
#     256->128:    131,200 +   295,040 +   147,584 =   573,824
#     128->64:      32,832 +    73,792 +    36,928 =   143,552                 = 12,188,480
#   classifier 1x1: 64 * C + C = 65 C
#   => 31,031,680 + 65 C: 31,031,810 at 2 classes, 31,032,395 at 11.
# 'bn': the 18 3x3 convs lose C_out biases and gain 2 * C_out BN params: + sum(C_out) =
#   2 * (64 + 128 + 256 + 512 + 1024) + 2 * (512 + 256 + 128 + 64) = 5,888.
@pytest.mark.parametrize('variant, num_classes, expected', [
    ('paper', 2, 31_031_810), ('paper', 11, 31_032_395),
    ('bn', 2, 31_037_698), ('bn', 11, 31_038_283)])
def test_unet_parameter_count(variant, num_classes, expected):
  variables, _ = _abstract_init(unet(variant, num_classes), (16, 16))
  assert _count(variables['params']) == expected


# --- ENet ----------------------------------------------------------------------------------

ENET_TINY = {'stage1_blocks': 1, 'dilated_stages': 1}  # Every kind of block, once.


def test_enet_at_odd_size():
  _check_training_shapes(*_tiny_training_shapes(enet('enet', NUM_CLASSES, **ENET_TINY)),
                         ('bottleneck2_1', 'conv_bn'))


def test_enet_block_counts_are_the_paper_s_unless_overridden():
  blocks = lambda params: sorted(k for k in params if k.startswith('bottleneck'))
  full = blocks(_full_enet_variables()['params'])
  assert full == sorted(['bottleneck1_0', *(f'bottleneck1_{i}' for i in range(1, 5)),
                         'bottleneck2_0', *(f'bottleneck{s}_{i}' for s in (2, 3)
                                            for i in range(1, 9)),
                         'bottleneck4_0', 'bottleneck4_1', 'bottleneck4_2',
                         'bottleneck5_0', 'bottleneck5_1'])
  tiny = blocks(_abstract_init(enet('enet', NUM_CLASSES, **ENET_TINY), HW)[0]['params'])
  assert tiny == sorted(['bottleneck1_0', 'bottleneck1_1', 'bottleneck2_0',
                         *(f'bottleneck2_{i}' for i in range(1, 9)),
                         'bottleneck4_0', 'bottleneck4_1', 'bottleneck4_2',
                         'bottleneck5_0', 'bottleneck5_1'])


@pytest.mark.parametrize('hw', [(33, 360), (45, 64)])
def test_enet_logits_cover_the_input(hw):
  """In training (the inference shapes of the tiny ENet: test_zoo.py). Halved three times, the
  four sides are odd at every step (33), even at every step (64), even then odd (360: 180, 90,
  45) and odd then even (45: 23, 12, 6)."""
  model, images = enet('enet', NUM_CLASSES), jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
  apply = functools.partial(model.apply, train=True, rngs={'dropout': jax.random.key(1)},
                            mutable=['batch_stats'])
  out = jax.eval_shape(apply, _full_enet_variables(), images)[0]
  assert out['logits'].shape == (1, *hw, NUM_CLASSES)
  assert out['aux'] == []


def test_enet_prelu_is_per_channel():
  params = _full_enet_variables()['params']
  assert params['initial']['prelu']['slope'].shape == (16,)
  assert params['bottleneck1_0']['projection_prelu']['slope'].shape == (16,)
  assert params['bottleneck2_3']['output_prelu']['slope'].shape == (128,)
  assert 'output_prelu' not in params['bottleneck4_1']  # ReLU in the decoder
  # Every bottleneck: projection, main conv(s) and expansion, each with its BN; the encoder's
  # (stages 1-3) also a PReLU after each; conv_1x5 + conv_5x1 in the asymmetric ones (2_3, 2_7,
  # 3_3, 3_7); the decoder's upsampling blocks a main_conv + main_bn on their shortcut.
  encoder = '{1_{0..4},2_{0..8},3_{1..8}}'
  asymmetric = expand('bottleneck{2,3}_{3,7}/conv')
  assert modules(params) == (expand(
      'initial/{conv,bn,prelu}', 'fullconv',
      f'bottleneck{encoder}/{{projection,conv,expansion}}{{,_bn}}',
      f'bottleneck{encoder}/{{projection,conv,output}}_prelu',
      'bottleneck{2,3}_{3,7}/{conv_1x5,conv_5x1}',
      'bottleneck{4_{0..2},5_{0..1}}/{projection,conv,expansion}{,_bn}',
      'bottleneck{4,5}_0/main_{conv,bn}') - asymmetric)
  x = np.random.default_rng(0).normal(size=(2, 3, 4, 6)).astype(np.float32)
  slope = np.linspace(-0.5, 0.7, 6).astype(np.float32)
  out = PReLU().apply({'params': {'slope': slope}}, x)
  np.testing.assert_allclose(out, np.where(x >= 0, x, slope * x), rtol=1e-6)
  init = PReLU().init(jax.random.key(0), x)['params']['slope']
  np.testing.assert_array_equal(init, np.full(6, 0.25, np.float32))


# ENet as the Torch7 code builds it (e-lab/ENet-training encoder.lua + decoder.lua); C = width,
# m = C / 4 internal channels; BN = 2 params per channel, PReLU = 1 per channel:
#   initial: 3x3 conv 3->13 with bias 364, BN 32, PReLU 16                         =     412
#   encoder regular/dilated (C, m): projection C*m, 3x3 conv 9m^2 + m, expansion m*C,
#     BN 2m + 2m + 2C, PReLU m + m + C  => 2Cm + 9m^2 + 7m + 3C: C=64: 4,656; C=128: 18,016
#   asymmetric 5 (C=128, m=32): 1x5 5m^2 (no bias) + 5x1 5m^2 + m instead of the 3x3 => 19,040
#   downsampling (in, out, m=out/4): 2x2 proj 4*in*m, 3x3 9m^2 + m, expansion m*out,
#     BN 4m + 2out, PReLU 2m + out: 16->64: 4,656; 64->128: 22,112
#   stage 1: 4,656 + 4 * 4,656 = 23,280; stage 2: 22,112 + 6 * 18,016 + 2 * 19,040 = 168,288;
#   stage 3: 146,176                                                    encoder = 338,156
#   upsampling (in, out, m=out/4): main 1x1 in*out + BN 2out; projection in*m + BN 2m;
#     3x3 transposed 9m^2 + m + BN 2m; expansion m*out + BN 2out: 128->64: 13,904; 64->16: 1,572
#   decoder regular (ReLU): 2Cm + 9m^2 + m + 4m + 2C: C=64: 4,560; C=16: 324
#   decoder: 13,904 + 2 * 4,560 + 1,572 + 324 = 24,920;  fullconv 2x2: 16*4*C + C = 65 C
#   => 363,076 + 65 C: 363,791 at 11 classes (CamVid), 364,311 at 19 (Cityscapes).
#   (The paper quotes 0.37M. PyTorch-ENet, by the same arithmetic: 348,924 + 144 C.)
@pytest.mark.parametrize('num_classes, expected', [(11, 363_791), (19, 364_311)])
def test_enet_parameter_count(num_classes, expected):
  variables, _ = _abstract_init(enet('enet', num_classes), (64, 64))
  assert _count(variables['params']) == expected


def test_bfloat16_logits_are_float32():
  for model in (enet('enet', NUM_CLASSES, dtype=jnp.bfloat16),
                unet('bn', NUM_CLASSES, dtype=jnp.bfloat16, **UNET_TINY)):
    variables, images = _abstract_init(model, HW)
    out = jax.eval_shape(lambda v, x, m=model: m.apply(v, x), variables, images)
    assert out['logits'].dtype == jnp.float32
    assert out['logits'].shape == (1, *HW, NUM_CLASSES)


def test_unknown_variants_raise():
  with pytest.raises(ValueError, match='paper'):
    unet('r50', NUM_CLASSES)
  with pytest.raises(ValueError, match='enet'):
    enet('enet-small', NUM_CLASSES)
  with pytest.raises(ValueError, match='depth'):
    jax.eval_shape(lambda: unet('paper', 2, depth=1).init(
        jax.random.key(0), jnp.zeros((1, 8, 8, 3))))
