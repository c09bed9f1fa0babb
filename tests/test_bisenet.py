"""BiSeNet V1 and V2: shapes and output strides, auxiliary outputs, BatchNorm and dropout in
training, full-size parameter counts (equal to mmsegmentation's models built from its configs),
and the numeric pieces (PyTorch's 'nearest' resize, AvgPool2d with counted padding) against
brute force.

The whole network was also checked against mmseg 1.2.2 once, outside this suite (torch is not in
this environment): mmseg's state dicts (random weights and BN statistics) loaded into these
modules give the same backbone features, logits and auxiliary logits in eval mode on a
2 x 67 x 101 input (max abs difference 1e-4 of values up to 130 for V1-R18, 3e-6 for V2).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from semseg_jax.models.bisenet import bisenetv1, bisenetv2
from semseg_jax.models.layers import avg_pool_3x3_s2, nearest_indices, resize_nearest

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


# --- Numeric pieces ---------------------------------------------------------------------------

def test_nearest_indices_are_pytorchs():
  # F.interpolate(mode='nearest', size=...) source rows, recorded from torch 2.13 (CPU).
  assert nearest_indices(3, 5).tolist() == [0, 0, 1, 1, 2]
  assert nearest_indices(5, 3).tolist() == [0, 1, 3]
  assert nearest_indices(7, 4).tolist() == [0, 1, 3, 5]
  assert nearest_indices(4, 7).tolist() == [0, 0, 1, 1, 2, 2, 3]
  # PyTorch's float32 scale rounds these below the exact floor(i * in / out).
  assert nearest_indices(2, 82)[41] == 0 and 41 * 2 // 82 == 1
  assert nearest_indices(4, 82)[41] == 1 and 41 * 4 // 82 == 2
  # x2 (the ResNet's even sizes) repeats each row twice; equal sizes are the identity.
  assert nearest_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
  assert nearest_indices(6, 6).tolist() == list(range(6))


def test_resize_nearest_gathers_rows_and_columns():
  x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
  out_hw = (5, 7)
  expected = np.zeros((2, *out_hw, 5), np.float32)
  rows, cols = nearest_indices(3, 5), nearest_indices(4, 7)
  for i in range(out_hw[0]):
    for j in range(out_hw[1]):
      expected[:, i, j] = x[:, rows[i], cols[j]]
  np.testing.assert_array_equal(np.asarray(resize_nearest(jnp.asarray(x), out_hw)), expected)


@pytest.mark.parametrize('hw', [(7, 9), (8, 8), (3, 2), (1, 1)])
def test_avg_pool_counts_padding_like_pytorch(hw):
  """AvgPool2d(3, 2, padding=1) (count_include_pad=True): every window sum / 9, output
  floor((n - 1) / 2) + 1."""
  x = np.random.default_rng(1).normal(size=(2, *hw, 3)).astype(np.float32)
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out_h, out_w = (hw[0] - 1) // 2 + 1, (hw[1] - 1) // 2 + 1
  expected = np.zeros((2, out_h, out_w, 3), np.float32)
  for i in range(out_h):
    for j in range(out_w):
      expected[:, i, j] = padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].sum(axis=(1, 2)) / 9
  np.testing.assert_allclose(np.asarray(avg_pool_3x3_s2(jnp.asarray(x))), expected, rtol=1e-5,
                             atol=1e-6)


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


@pytest.mark.parametrize('kind,variant', list(EXPECTED_COUNTS))
def test_full_size_parameter_counts_equal_mmseg(kind, variant):
  ctor = bisenetv1 if kind == 'v1' else bisenetv2
  with_aux, without_aux, per_class, per_class_no_aux = EXPECTED_COUNTS[(kind, variant)]
  params = _params(ctor(variant, 19))
  assert _count(params) == with_aux
  assert _count({k: v for k, v in params.items() if 'auxiliary' not in k}) == without_aux
  if variant in ('r18', 'bisenetv2'):  # the per-class arithmetic, on the two small models
    assert _count(_params(ctor(variant, 150))) == with_aux + 131 * per_class
    assert _count(_params(ctor(variant, 11, aux_head=False))) == without_aux - 8 * per_class_no_aux


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


# --- Tiny forward passes ----------------------------------------------------------------------

def _ceil(n: int, d: int) -> int:
  return -(-n // d)


@pytest.mark.parametrize('kind', ['v1', 'v2'])
def test_tiny_model_train_and_eval(kind):
  spec = dict(TINY_V1 if kind == 'v1' else TINY_V2)
  ctor = bisenetv1 if kind == 'v1' else bisenetv2
  model = ctor(spec.pop('variant'), NUM_CLASSES, dropout_rate=0.5, **spec)
  images = jax.random.normal(jax.random.key(0), (2, *IMAGE_HW, 3))
  rngs = {'params': jax.random.key(1, impl='rbg'), 'dropout': jax.random.key(2, impl='rbg')}
  variables = jax.jit(lambda x: model.init(rngs, x, train=True))(images)

  @jax.jit
  def train_apply(x, key):
    return model.apply(variables, x, train=True, rngs={'dropout': key}, mutable=['batch_stats'])

  out, updates = train_apply(images, jax.random.key(3))
  out_b, _ = train_apply(images, jax.random.key(4))
  h, w = IMAGE_HW
  logits_hw = (_ceil(h, 8), _ceil(w, 8))
  assert out['logits'].shape == (2, *logits_hw, NUM_CLASSES)
  assert out['logits'].dtype == jnp.float32
  if kind == 'v1':  # context path 1/8 and 1/16
    aux_hw = [logits_hw, (_ceil(h, 16), _ceil(w, 16))]
  else:  # stem 1/4, semantic stages 1/8, 1/16, 1/32
    aux_hw = [(_ceil(h, s), _ceil(w, s)) for s in (4, 8, 16, 32)]
  assert [a.shape for a in out['aux']] == [(2, *hw, NUM_CLASSES) for hw in aux_hw]
  assert all(bool(jnp.isfinite(a).all()) for a in [out['logits'], *out['aux']])
  assert not np.allclose(out['logits'], out_b['logits'])  # dropout draws from the rng
  # Every BatchNorm's running variance moves (some means stay ~0: a BN after a BN'd
  # depthwise conv and a bias-free 1x1 conv sees zero-mean inputs).
  old = flatten_dict(variables['batch_stats'])
  new = flatten_dict(updates['batch_stats'])
  assert old.keys() == new.keys()
  assert all(not np.allclose(old[k], new[k]) for k in old if k[-1] == 'var')
  evaluated = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
  assert evaluated['logits'].shape == out['logits'].shape and evaluated['aux'] == []


def test_overrides_are_routed():
  model = bisenetv2('bisenetv2', 19, bga_channels=32, channels=64, aux_channels=(1, 2, 3, 4))
  assert model.backbone.bga_channels == 32 and model.decode_head.channels == 64
  assert [head.channels for head in model.auxiliary_heads] == [1, 2, 3, 4]
  assert [head.in_index for head in model.auxiliary_heads] == [1, 2, 3, 4]
  model = bisenetv1('r50', 19, out_channels=8, deep_stem=True, aux_head=False)
  assert model.backbone.out_channels == 8 and model.backbone.deep_stem
  assert model.backbone.spatial_channels == (256, 256, 256, 512)
  assert model.decode_head.channels == 1024 and model.auxiliary_heads == ()
