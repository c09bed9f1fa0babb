"""UPerNet, GCN and DUC-HDC: shapes and output strides, auxiliary outputs, parameter counts and
names, and their own numeric pieces against brute force (pixel shuffle, HDC dilation rates).
(The adaptive pooling and the bilinear transposed conv are tested in test_layers.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models import layers
from semseg_jax.models.duc_hdc import block_rates, duc_hdc, pixel_shuffle
from semseg_jax.models.gcn import gcn
from semseg_jax.models.upernet import upernet
from tests.helpers.param_trees import expand, leaves, modules
from tests.helpers.table_counts import table_counts

NUM_CLASSES = 5
# The small forms the shared zoo test builds (see the report); images 2 x 37 x 53.
TINY_UPERNET = dict(variant='r18', channels=16)
TINY_GCN = dict(variant='r18', kernel_size=7)
TINY_DUC = dict(variant='r18-hdc')


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _ceil_div(n: int, d: int) -> int:
  return -(-n // d)


def _abstract(model, hw, train=False, batch=1):
  """Variables and outputs as shapes only. Initialising in training mode also creates the
  auxiliary heads, which EncoderDecoder calls only when training."""
  images = jax.ShapeDtypeStruct((batch, *hw, 3), jnp.float32)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  out, variables = jax.eval_shape(lambda x: model.init_with_output(rngs, x, train=True), images)
  if not train:  # (The init's own output is the training one.)
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
  return variables, out


def _param_count(model, hw=(64, 64)) -> int:
  images = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  with layers.conv_lowering('xla'):  # Shapes only: the shortest trace.
    return _count(jax.eval_shape(lambda x: model.init(rngs, x, train=True), images)['params'])


def _tiny_training_shapes(model):
  """Variables and training outputs of a tiny model on 2 x 37 x 53 images, as shapes (the
  init's trace is the training forward). Its inference, one train step, the BatchNorm
  statistics that follow the batch and dropout from the 'dropout' rng are checked on the same
  tiny model by tests/models/test_zoo.py."""
  return _abstract(model, (37, 53), train=True, batch=2)


# --- Pixel shuffle and HDC rates (DUC-HDC) ----------------------------------------------------

def test_pixel_shuffle_matches_pytorch_order():
  r, c, h, w = 4, 3, 2, 5
  x = np.random.default_rng(3).normal(size=(2, h, w, c * r * r)).astype(np.float32)
  expected = np.zeros((2, h * r, w * r, c), np.float32)
  for ch in range(c):
    for i in range(r):
      for j in range(r):
        expected[:, i::r, j::r, ch] = x[:, :, :, ch * r * r + i * r + j]
  np.testing.assert_array_equal(np.asarray(pixel_shuffle(jnp.asarray(x), r)), expected)


def test_hdc_rates_are_the_official_ones():
  # TuSimple-DUC's get_resnet_hdc: res4 conv4_1..conv4_23 and res5 conv5_1..conv5_3.
  official_res4 = (2, 2, 5, 9, 1, 2, 5, 9, 1, 2, 5, 9, 1, 2, 5, 9, 1, 2, 5, 9, 1, 2, 5)
  assert block_rates(101, hdc=True) == ((1,) * 3, (1,) * 4, official_res4, (5, 9, 17))
  assert block_rates(50, hdc=True) == ((1,) * 3, (1,) * 4, (2, 2, 5, 9, 1, 2), (5, 9, 17))
  assert block_rates(18, hdc=True) == ((1, 1), (1, 1), (2, 2), (5, 9))
  assert block_rates(101, hdc=False) == ((1,) * 3, (1,) * 4, (2,) * 23, (4, 4, 4))


def _conv_dilations(jaxpr) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
  """(kernel spatial shape, rhs_dilation) of every convolution in execution order."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated':
      spec = eqn.params['dimension_numbers'].rhs_spec
      shape = eqn.invars[1].aval.shape
      found.append((tuple(shape[d] for d in spec[2:]), tuple(eqn.params['rhs_dilation'])))
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (tuple, list)) else (value,)):
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          found.extend(_conv_dilations(inner))
  return found


def test_hdc_backbone_dilates_each_block_as_listed():
  """The traced backbone's 3x3 convs (stem, then each Bottleneck's conv2) carry the rates."""
  model = duc_hdc('r50-hdc', NUM_CLASSES)
  images = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  variables, _ = _abstract(model, (32, 32))
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x))(variables, images).jaxpr
  dilations = [d[0] for k, d in _conv_dilations(jaxpr) if k == (3, 3)]
  rates = [r for stage in block_rates(50, hdc=True) for r in stage]
  # 3 stem convs, one 3x3 per block, then the DUC head's 4 dilated convs.
  assert dilations == [1, 1, 1] + rates + [6, 12, 18, 24]


# --- Whole models at tiny sizes ---------------------------------------------------------------

def test_upernet_tiny_names_and_shapes():
  spec = dict(TINY_UPERNET)
  model = upernet(spec.pop('variant'), NUM_CLASSES, **spec)
  variables, out = _tiny_training_shapes(model)
  assert out['logits'].shape == (2, 10, 14, NUM_CLASSES)  # Stride 4: ceil(37/4), ceil(53/4).
  assert [a.shape for a in out['aux']] == [(2, 3, 4, NUM_CLASSES)]  # Stage 3, stride 16.
  assert out['logits'].dtype == jnp.float32 and out['aux'][0].dtype == jnp.float32
  # The decode head's and the auxiliary head's BatchNorms (every running mean moves in the zoo
  # test's step) and the decode head's dropout 0.1 (zoo_specs.RANDOM).
  assert 'bn' in variables['batch_stats']['decode_head']['fpn_bottleneck']
  assert 'bn' in variables['batch_stats']['auxiliary_heads_0']['convs_0']
  assert set(variables['params']) == {'backbone', 'decode_head', 'auxiliary_heads_0'}
  # mmseg's UPerHead: the PPM's ConvModules under psp_modules, laterals and FPN convs on stages
  # 1-3, fusion, classifier.
  assert modules(variables['params']['decode_head']) == expand(
      '{psp_modules/convs_{0..3},bottleneck,lateral_convs_{0..2},fpn_convs_{0..2},'
      'fpn_bottleneck}/{conv,bn}', 'classifier/conv_seg')
  assert modules(variables['params']['auxiliary_heads_0']) == {'convs_0/conv', 'convs_0/bn',
                                                               'classifier/conv_seg'}


def test_gcn_tiny_names_and_shapes():
  spec = dict(TINY_GCN)
  model = gcn(spec.pop('variant'), NUM_CLASSES, **spec)
  variables, out = _tiny_training_shapes(model)
  assert out['logits'].shape == (2, 37, 53, NUM_CLASSES)  # Full resolution.
  assert out['aux'] == []
  assert 'bn1' in variables['batch_stats']['backbone']['layer4_block1']  # Moves: test_zoo.
  head = variables['params']['decode_head']
  assert head['gcn1']['left_kx1']['kernel'].shape == (7, 1, 64, NUM_CLASSES)
  assert head['gcn4']['right_1xk']['kernel'].shape == (1, 7, 512, NUM_CLASSES)
  assert len([k for k in head if 'br' in k]) == 9 and len([k for k in head if 'deconv' in k]) == 5
  # A GCN and a BR on each stage (1..4), a deconv from stage s to s - 1 and a BR after each sum,
  # then the two x2 deconvs + BRs to full resolution.
  assert leaves(head) == expand('gcn{1..4}/{left_kx1,left_1xk,right_1xk,right_kx1}/{kernel,bias}',
                                '{br{1..4},fuse_br{3..1},br_half,br_full}/{conv1,conv2}/'
                                '{kernel,bias}', '{deconv{4..2},deconv_half,deconv_full}/kernel')


def test_duc_hdc_tiny_names_and_shapes():
  spec = dict(TINY_DUC)
  model = duc_hdc(spec.pop('variant'), NUM_CLASSES, **spec)
  variables, out = _tiny_training_shapes(model)
  assert out['logits'].shape == (2, 19, 27, NUM_CLASSES)  # Stride 2: ceil(37/2), ceil(53/2).
  assert out['aux'] == []
  assert 'bn1' in variables['batch_stats']['backbone']['layer4_block1']  # Moves: test_zoo.
  assert variables['params']['decode_head']['aspp_convs_0']['kernel'].shape == (
      3, 3, 512, NUM_CLASSES * 16)
  assert leaves(variables['params']['decode_head']) == expand('aspp_convs_{0..3}/{kernel,bias}')
  # The backbone has backbones/resnet.py's names (ResNet-18: BasicBlocks, a projection
  # shortcut where the width changes), so its ImageNet weights load unchanged.
  assert modules(variables['params']['backbone']) == expand(
      'stem_{conv,bn}{1..3}', 'layer{1..4}_block{0..1}/{conv,bn}{1..2}',
      'layer{2..4}_block0/downsample_{conv,bn}')


def test_output_strides_follow_pytorch_conv_arithmetic():
  """Every strided step halves with ceil (k3/p1 or k7/p3 stride-2 convs, k3/p1 max pool). At
  33 x 64 every halving rounds the height up and divides the width exactly."""
  hw = h, w = 33, 64
  _, out = _abstract(upernet('r18', NUM_CLASSES, channels=16), hw, train=True)
  assert out['logits'].shape == (1, _ceil_div(h, 4), _ceil_div(w, 4), NUM_CLASSES)
  assert [a.shape for a in out['aux']] == [(1, _ceil_div(h, 16), _ceil_div(w, 16), NUM_CLASSES)]
  for variant in ('r18', 'r18v1'):
    _, out = _abstract(gcn(variant, NUM_CLASSES, kernel_size=7), hw)
    assert out['logits'].shape == (1, h, w, NUM_CLASSES)
  _, out = _abstract(duc_hdc('r18-hdc', NUM_CLASSES), hw)
  assert out['logits'].shape == (1, _ceil_div(h, 2), _ceil_div(w, 2), NUM_CLASSES)
  _, out = _abstract(duc_hdc('r18v1', NUM_CLASSES, upscale_factor=8), hw)
  assert out['logits'].shape == (1, h, w, NUM_CLASSES)
  assert out['aux'] == []


def test_bfloat16_keeps_float32_params_and_logits():
  for model in (upernet('r18', NUM_CLASSES, channels=16, dtype=jnp.bfloat16),
                gcn('r18', NUM_CLASSES, kernel_size=7, dtype=jnp.bfloat16),
                duc_hdc('r18-hdc', NUM_CLASSES, dtype=jnp.bfloat16)):
    variables, out = _abstract(model, (40, 40), train=True)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables['params']))
    assert all(x.dtype == jnp.float32 for x in [out['logits'], *out['aux']])


@pytest.mark.parametrize('build', [
    lambda: upernet('r50-d8', 19), lambda: upernet('x50', 19), lambda: gcn('r50-d16', 19),
    lambda: gcn('r51', 19), lambda: duc_hdc('r101-d8', 19), lambda: duc_hdc('r99-hdc', 19)])
def test_bad_variants_raise(build):
  with pytest.raises(ValueError, match='variant'):
    build()


# --- Full-size parameter counts ---------------------------------------------------------------
# ResNet trunks (no fc; equal to torchvision's): R-50 23,508,032, R-101 42,500,160,
# R-152 58,143,808 with the 7x7 stem (conv 9,408 + BN 128 = 9,536). ResNetV1c's stem is
# 3x3 convs 3->32->32->64 + BNs: 864 + 64 + 9,216 + 64 + 18,432 + 128 = 28,768, i.e. +19,232:
# V1c R-50 23,527,264, R-101 42,519,392, R-152 58,163,040.
TRUNK_V1C = {'r50': 23_527_264, 'r101': 42_519_392, 'r152': 58_163_040}
TRUNK_V1 = {'r152v1': 58_143_808}

# UPerHead, channels 512 on (256, 512, 1024, 2048); a ConvModule = conv (no bias) + BN (2 x out):
#   PPM 4 x (2048 * 512 + 1,024) = 4,198,400
#   bottleneck 3x3 (2048 + 4 * 512) -> 512: 9 * 4096 * 512 + 1,024 = 18,875,392
#   laterals (256 + 512 + 1024) * 512 + 3 * 1,024 = 920,576
#   fpn_convs 3 x (9 * 512 * 512 + 1,024) = 7,080,960
#   fpn_bottleneck 9 * 2048 * 512 + 1,024 = 9,438,208
#   total 40,513,536 + classifier 513 K.
# Auxiliary FCN head: 3x3 1024 -> 256 + BN: 2,359,296 + 512 = 2,359,808, classifier 257 K.
UPER_HEAD = 40_513_536
AUX_HEAD = 2_359_808
UPERNET_COUNTS = {  # (variant, classes, aux) -> count
    ('r50', 19, False): TRUNK_V1C['r50'] + UPER_HEAD + 513 * 19,                     # 64,050,547
    ('r50', 19, True): TRUNK_V1C['r50'] + UPER_HEAD + AUX_HEAD + 770 * 19,           # 66,415,238
    ('r101', 19, True): TRUNK_V1C['r101'] + UPER_HEAD + AUX_HEAD + 770 * 19,         # 85,407,366
    ('r50', 150, True): TRUNK_V1C['r50'] + UPER_HEAD + AUX_HEAD + 770 * 150,         # 66,516,108
    ('r101', 150, False): TRUNK_V1C['r101'] + UPER_HEAD + 513 * 150,                 # 83,109,878
    ('r101', 150, True): TRUNK_V1C['r101'] + UPER_HEAD + AUX_HEAD + 770 * 150,       # 85,508,236
}


def _gcn_head(k: int, kernel: int = 15) -> int:
  """GCN head with k classes on (256, 512, 1024, 2048) channels:
  4 GCNs: two paths, (kernel x 1: C_in -> k) + (1 x kernel: k -> k), with biases:
          2 * kernel * k * (C_in + k) + 4 k each, sum C_in = 3,840;
  9 BRs: 2 x (3x3 k -> k + bias) = 18 k^2 + 2 k each;
  5 deconvs: 4x4 k -> k, no bias = 16 k^2 each."""
  gcns = 2 * kernel * k * 3840 + 4 * (2 * kernel * k * k + 4 * k)
  return gcns + 9 * (18 * k * k + 2 * k) + 5 * 16 * k * k


GCN_COUNTS = {  # K = 19: head 2,320,128; K = 21: head 2,579,556.
    ('r50', 19): TRUNK_V1C['r50'] + 2_320_128,          # 25,847,392
    ('r101', 19): TRUNK_V1C['r101'] + 2_320_128,        # 44,839,520
    ('r152', 19): TRUNK_V1C['r152'] + 2_320_128,        # 60,483,168
    ('r152v1', 19): TRUNK_V1['r152v1'] + 2_320_128,     # 60,463,936 (the paper's backbone)
    ('r50', 21): TRUNK_V1C['r50'] + 2_579_556,          # 26,106,820
    ('r101', 21): TRUNK_V1C['r101'] + 2_579_556,        # 45,098,948
    ('r152', 21): TRUNK_V1C['r152'] + 2_579_556,        # 60,742,596
}

# DUC head, r = 4, K = 19: 4 x (3x3 2048 -> 16 K, with bias) = 4 x (9 * 2048 * 304 + 304)
# = 4 x 5,603,632 = 22,414,528. Dilations do not change a trunk's parameters.
DUC_COUNTS = {
    ('r50-hdc', 19): TRUNK_V1C['r50'] + 22_414_528,     # 45,941,792
    ('r101-hdc', 19): TRUNK_V1C['r101'] + 22_414_528,   # 64,933,920
}


def test_head_arithmetic():
  assert _gcn_head(19) == 2_320_128 and _gcn_head(21) == 2_579_556
  assert 4 * (9 * 2048 * 16 * 19 + 16 * 19) == 22_414_528


def test_the_model_table_holds_these_counts():
  """The README table's rows of these models (built from their configs and counted by
  tests/models/test_zoo.py) are the counts above; the tests below build only the others."""
  upernet_rows = table_counts('upernet')
  assert upernet_rows == {key[:2]: n for key, n in UPERNET_COUNTS.items() if key[2]}
  assert table_counts('gcn') == {key: n for key, n in GCN_COUNTS.items() if key in
                                 (('r50', 19), ('r101', 19), ('r152v1', 19))}
  assert table_counts('duc_hdc') == DUC_COUNTS


@pytest.mark.parametrize('key', sorted(key for key in UPERNET_COUNTS if not key[2]))
def test_upernet_param_count(key):
  variant, classes, aux = key
  assert _param_count(upernet(variant, classes, aux_head=aux)) == UPERNET_COUNTS[key]


@pytest.mark.parametrize('key', sorted(set(GCN_COUNTS) - set(table_counts('gcn'))))
def test_gcn_param_count(key):
  assert _param_count(gcn(key[0], key[1])) == GCN_COUNTS[key]
