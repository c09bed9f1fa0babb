"""BiSeNet V1 and V2: shapes and output strides, auxiliary outputs, full-size parameter counts
(equal to mmsegmentation's models built from its configs) and names (inference, BatchNorm and
dropout in training: test_zoo.py). (The numeric pieces, PyTorch's 'nearest' resize and
AvgPool2d with counted padding, are tested in test_layers.py.)

The whole network was also checked against mmseg 1.2.2 once, outside this suite (torch is not in
this environment): mmseg's state dicts (random weights and BN statistics) loaded into these
modules give the same backbone features, logits and auxiliary logits in eval mode on a
2 x 67 x 101 input (max abs difference 1e-4 of values up to 130 for V1-R18, 3e-6 for V2).
"""

import math

import jax
import jax.numpy as jnp
import pytest

from semseg_jax.models.bisenet import bisenetv1, bisenetv2
from tests.helpers.param_trees import expand, modules
from tests.helpers.table_counts import table_counts

NUM_CLASSES = 5
IMAGE_HW = (37, 53)
# The small forms the shared zoo test can build (see the report): logits at ceil(hw / 8).
TINY_V1 = dict(variant='r18', spatial_channels=(8, 8, 8, 16), context_channels=16,
               out_channels=16, channels=16, aux_channels=(8, 8))
TINY_V2 = dict(variant='bisenetv2', detail_channels=(8, 8, 16), semantic_channels=(8, 8, 16, 16),
               bga_channels=16, channels=16, aux_channels=(8, 8, 8, 8))


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _params(model, hw=(64, 64)) -> dict:
  """The parameter tree as shapes (no compute); initialising in training mode creates the
  auxiliary heads."""
  images = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  return jax.eval_shape(lambda x: model.init(rngs, x, train=True), images)['params']


# --- Parameter counts -------------------------------------------------------------------------

# Class-independent parameters + per-class ones (each classifier: channels + 1 per class), with
# and without the auxiliary heads. The totals at 19 classes (171 for R-101, which mmseg
# configures only on COCO-Stuff) equal sum(p.numel()) of mmseg 1.2.2's EncoderDecoder built
# from configs/bisenetv1/*_cityscapes-1024x1024.py, *_coco-stuff164k-512x512.py and
# configs/bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py.
#   V1-R18: decode 256 + 1, aux 2 x (64 + 1)       -> 387 per class (257 without aux)
#   V1-R50/R101: decode 1024 + 1, aux 2 x (256 + 1) -> 1539 per class (1025 without aux)
#   V2: decode 1024 + 1, boosters 16+1, 64+1, 256+1, 1024+1 -> 2389 per class (1025 without)
EXPECTED_COUNTS = {
    # (constructor, variant): (total at 19 classes with aux, without aux, per class w/, w/o)
    ('v1', 'r18'): (13_425_721, 13_275_539, 387, 257),
    ('v1', 'r50'): (59_243_385, 56_873_299, 1539, 1025),
    ('v1', 'r101'): (78_469_441 - 152 * 1539, 76_021_227 - 152 * 1025, 1539, 1025),
    ('v2', 'bisenetv2'): (14_804_255, 3_358_883, 2389, 1025),
}


def test_the_model_table_holds_these_counts():
  """The README table's rows (built from their configs and counted by
  tests/models/test_zoo.py) are these counts at 19 classes with the auxiliary heads."""
  assert table_counts('bisenetv1') == {('r18', 19): EXPECTED_COUNTS[('v1', 'r18')][0],
                                       ('r50', 19): EXPECTED_COUNTS[('v1', 'r50')][0]}
  assert table_counts('bisenetv2') == {('bisenetv2', 19): EXPECTED_COUNTS[('v2', 'bisenetv2')][0]}


@pytest.mark.parametrize('kind,variant', list(EXPECTED_COUNTS))
def test_full_size_parameter_counts_equal_mmseg(kind, variant):
  """The models the table does not hold: R-101 at 19 classes (with and without the auxiliary
  heads), R-50 without them, and the per-class arithmetic on the two small models."""
  ctor = bisenetv1 if kind == 'v1' else bisenetv2
  with_aux, without_aux, per_class, per_class_no_aux = EXPECTED_COUNTS[(kind, variant)]
  if variant == 'r101':
    params = _params(ctor(variant, 19))
    assert _count(params) == with_aux
    assert _count({k: v for k, v in params.items() if 'auxiliary' not in k}) == without_aux
  if variant == 'r50':
    assert _count(_params(ctor(variant, 19, aux_head=False))) == without_aux
  if variant in ('r18', 'bisenetv2'):
    assert _count(_params(ctor(variant, 150))) == with_aux + 131 * per_class
    assert _count(_params(ctor(variant, 11, aux_head=False))) == without_aux - 8 * per_class_no_aux


CONV_BN = '{conv,bn}'


def test_v1_param_names():
  """mmseg's names; every ConvModule holds conv + bn."""
  spec = dict(TINY_V1)
  params = _params(bisenetv1(spec.pop('variant'), NUM_CLASSES, **spec))
  resnet18 = expand('{conv,bn}1', 'layer{1..4}_block{0..1}/{conv,bn}{1..2}',
                    'layer{2..4}_block0/downsample_{conv,bn}')
  assert modules(params['backbone']) == expand(
      *[f'context_path/backbone/{name}' for name in resnet18],
      f'context_path/{{gap_conv,conv_head32,conv_head16}}/{CONV_BN}',
      f'context_path/arm{{32,16}}/{{conv_layer,atten_conv_layer}}/{CONV_BN}',
      f'spatial_path/layer{{1..4}}/{CONV_BN}', f'ffm/{{conv1,conv_atten}}/{CONV_BN}')
  assert set(params) == {'backbone', 'decode_head', 'auxiliary_heads_0', 'auxiliary_heads_1'}
  for head in ('decode_head', 'auxiliary_heads_0', 'auxiliary_heads_1'):
    assert modules(params[head]) == expand(f'convs_0/{CONV_BN}', 'classifier/conv_seg')


def test_v2_param_names():
  spec = dict(TINY_V2)
  params = _params(bisenetv2(spec.pop('variant'), NUM_CLASSES, **spec))
  strided_ge = f'{{conv1,dwconv_0,dwconv_1,conv2,shortcut/{{depthwise,pointwise}}_conv}}/{CONV_BN}'
  assert modules(params['backbone']) == expand(
      f'detail/{{stage1_{{0..1}},stage{{2..3}}_{{0..2}}}}/{CONV_BN}',
      f'semantic/stage1/{{conv_first,convs_0,convs_1,fuse_last}}/{CONV_BN}',
      f'semantic/{{stage2_0,stage3_0,stage4_0}}/{strided_ge}',
      f'semantic/{{stage2_1,stage3_1,stage4_{{1..3}}}}/{{conv1,dwconv,conv2}}/{CONV_BN}',
      'semantic/ce_block/gap_bn', f'semantic/ce_block/{{conv_gap,conv_last}}/{CONV_BN}',
      f'bga/{{detail_dwconv,semantic_dwconv}}/depthwise_conv/{CONV_BN}',
      'bga/{detail_dwconv,semantic_dwconv}/pointwise_conv',  # A conv with bias, no BN.
      f'bga/{{detail_down,semantic_conv,conv}}/{CONV_BN}')
  assert modules(params['decode_head']) == expand(f'convs_0/{CONV_BN}', 'classifier/conv_seg')
  for i in range(4):  # The booster heads: two ConvModules each.
    assert modules(params[f'auxiliary_heads_{i}']) == expand(f'convs_{{0..1}}/{CONV_BN}',
                                                             'classifier/conv_seg')


def test_v2_detail_branch_count_by_hand():
  # 3x3 convs 3->64, 64->64 | 64->64 x3 | 64->128, 128->128 x2, no bias; BN 2 per channel.
  convs = 9 * (3 * 64 + 64 * 64 + 3 * 64 * 64 + 64 * 128 + 2 * 128 * 128)
  norms = 2 * (5 * 64 + 3 * 128)
  params = _params(bisenetv2('bisenetv2', 19))
  assert _count(params['backbone']['detail']) == convs + norms == 519_232


def test_v1_uses_torchvision_resnet_stem():
  """mmseg's config builds `ResNet` (7x7 stem): ResNet-18's trunk is torchvision's 11,176,512."""
  resnet = _params(bisenetv1('r18', 19))['backbone']['context_path']['backbone']
  assert resnet['conv1']['kernel'].shape == (7, 7, 3, 64)
  assert _count(resnet) == 11_689_512 - 513_000  # torchvision resnet18 minus its fc


def test_bad_variants_raise():
  with pytest.raises(ValueError, match='r101'):
    bisenetv1('r34', 19)
  with pytest.raises(ValueError, match='bisenetv2'):
    bisenetv2('r18', 19)
  with pytest.raises(ValueError, match='aux_channels'):
    bisenetv2('bisenetv2', 19, aux_channels=(8, 8))


# --- Tiny model shapes ------------------------------------------------------------------------

def _ceil(n: int, d: int) -> int:
  return -(-n // d)


@pytest.mark.parametrize('kind', ['v1', 'v2'])
def test_tiny_model_output_and_auxiliary_shapes(kind):
  """Training shapes of the tiny model (the zoo's), from its init's trace: logits at 1/8, one
  auxiliary output per context stage. Its inference, one train step, every BatchNorm's running
  statistics following the batch and dropout from the 'dropout' rng are checked on the same
  model by tests/models/test_zoo.py."""
  spec = dict(TINY_V1 if kind == 'v1' else TINY_V2)
  ctor = bisenetv1 if kind == 'v1' else bisenetv2
  model = ctor(spec.pop('variant'), NUM_CLASSES, **spec)
  images = jax.ShapeDtypeStruct((2, *IMAGE_HW, 3), jnp.float32)
  rngs = {'params': jax.random.key(1), 'dropout': jax.random.key(2)}
  out, _ = jax.eval_shape(lambda x: model.init_with_output(rngs, x, train=True), images)
  h, w = IMAGE_HW
  logits_hw = (_ceil(h, 8), _ceil(w, 8))
  assert out['logits'].shape == (2, *logits_hw, NUM_CLASSES)
  assert out['logits'].dtype == jnp.float32
  if kind == 'v1':  # context path 1/8 and 1/16
    aux_hw = [logits_hw, (_ceil(h, 16), _ceil(w, 16))]
  else:  # stem 1/4, semantic stages 1/8, 1/16, 1/32
    aux_hw = [(_ceil(h, s), _ceil(w, s)) for s in (4, 8, 16, 32)]
  assert [a.shape for a in out['aux']] == [(2, *hw, NUM_CLASSES) for hw in aux_hw]


def test_overrides_are_routed():
  model = bisenetv2('bisenetv2', 19, bga_channels=32, channels=64, aux_channels=(1, 2, 3, 4))
  assert model.backbone.bga_channels == 32 and model.decode_head.channels == 64
  assert [head.channels for head in model.auxiliary_heads] == [1, 2, 3, 4]
  assert [head.in_index for head in model.auxiliary_heads] == [1, 2, 3, 4]
  model = bisenetv1('r50', 19, out_channels=8, deep_stem=True, aux_head=False)
  assert model.backbone.out_channels == 8 and model.backbone.deep_stem
  assert model.backbone.spatial_channels == (256, 256, 256, 512)
  assert model.decode_head.channels == 1024 and model.auxiliary_heads == ()
