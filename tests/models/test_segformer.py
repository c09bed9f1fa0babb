"""SegFormer: shapes, parameter counts and names, initialisation, bfloat16. (Inference, one
train step and randomness: test_zoo.py; the bilinear resize and DropPath: test_layers.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models import layers
from semseg_jax.models.segformer import (SEGFORMER_VARIANTS, MixTransformer, SegFormer,
                                         SegFormerHead, segformer)
from semseg_jax.tools import model_table as table
from tests.helpers.param_trees import expand, modules

# A SegFormer small enough to compile in a second or two; same structure as B0.
TINY = dict(depths=(1, 1, 1, 1), widths=(16, 32, 40, 64), decoder_dim=32)
NUM_CLASSES = 5

# sum(p.numel() for p in SegformerForSemanticSegmentation(SegformerConfig(...,
# num_labels=150)).parameters()) with transformers 5.23 (published: 3.8M, 13.7M, 27.5M, 47.3M,
# 64.1M, 84.7M).
HF_PARAM_COUNTS_150 = {
    'b0': 3_752_694,
    'b1': 13_715_798,
    'b2': 27_461_974,
    'b3': 47_337_814,
    'b4': 64_108_374,
    'b5': 84_708_694,
}


def _torch_conv_size(n: int, k: int, s: int, p: int) -> int:
  return (n + 2 * p - k) // s + 1


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


@pytest.fixture(scope='module')
def tiny():
  """The tiny model's own initialisers, jitted (one compile), and images. Its inference, one
  train step, the BatchNorm statistics and randomness from the 'dropout' rng only: the same
  tiny SegFormer in tests/models/test_zoo.py."""
  model = segformer('b0', NUM_CLASSES, **TINY)
  images = jax.random.normal(jax.random.key(0), (2, 37, 53, 3))
  variables = jax.jit(lambda x: model.init({'params': jax.random.key(1)}, x))(images)
  return variables, images


def test_head_equals_the_written_form():
  """The head folds each stage's Linear into its block of the fuse conv and sums the upsampled
  results; with the same parameters this equals the paper's order (project, upsample,
  concatenate c4..c1, fuse, BatchNorm, ReLU, classify), written out here in NumPy."""
  rng = np.random.default_rng(0)
  sizes, widths, dim = [(10, 14), (5, 7), (3, 4), (2, 2)], (4, 6, 8, 10), 8
  features = [rng.normal(size=(2, *hw, c)).astype(np.float32) for hw, c in zip(sizes, widths)]
  head = SegFormerHead(NUM_CLASSES, decoder_dim=dim)
  variables = jax.eval_shape(head.init, jax.random.key(0), features)
  params = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32),
                        variables['params'])
  stats = {'mean': rng.normal(size=dim).astype(np.float32),
           'var': rng.uniform(0.5, 2, size=dim).astype(np.float32)}
  got = jax.jit(head.apply)({'params': params, 'batch_stats': {'fuse_norm': stats}}, features)
  projected = [np.asarray(layers.bilinear_resize(
      f @ params[f'linear_c{i + 1}']['kernel'] + params[f'linear_c{i + 1}']['bias'], sizes[0]))
               for i, f in enumerate(features)]
  x = np.concatenate(projected[::-1], axis=-1) @ params['linear_fuse']['kernel'][0, 0]
  norm = params['fuse_norm']
  x = (x - stats['mean']) / np.sqrt(stats['var'] + 1e-5) * norm['scale'] + norm['bias']
  want = np.maximum(x, 0) @ params['classifier']['kernel'][0, 0] + params['classifier']['bias']
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_shapes_follow_pytorch_conv_arithmetic():
  """Stage sizes are PyTorch's floor((H + 2p - k) / s) + 1; logits are at stage 1's size, in
  training (the init's trace) as at inference (test_zoo.py). At 33 x 64 the height rounds up
  at every stride and the width divides exactly."""
  model = segformer('b0', NUM_CLASSES, **TINY)
  h, w = 33, 64
  images = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  out, _ = jax.eval_shape(lambda x: model.init_with_output(rngs, x, train=True), images)
  assert out['logits'].shape == (1, math.ceil(h / 4), math.ceil(w / 4), NUM_CLASSES)
  assert out['aux'] == []

  encoder = MixTransformer(TINY['depths'], TINY['widths'])
  feats = jax.eval_shape(lambda x: encoder.init_with_output(rngs, x)[0], images)
  for i, (k, s, p) in enumerate([(7, 4, 3), (3, 2, 1), (3, 2, 1), (3, 2, 1)]):
    h, w = _torch_conv_size(h, k, s, p), _torch_conv_size(w, k, s, p)
    assert feats[i].shape == (1, h, w, TINY['widths'][i])


def test_the_model_table_counts_every_size_against_hugging_face():
  """tests/models/test_zoo.py builds ade20k_segformer:b0..b5 (the README table's rows) and
  checks their counts against these."""
  rows = [row for row in table.ROWS if row.config == 'ade20k_segformer']
  assert {row.argument: row.reference for row in rows} == HF_PARAM_COUNTS_150
  assert all(row.num_classes == 150 and row.params == row.reference for row in rows)
  assert sorted(HF_PARAM_COUNTS_150) == sorted(SEGFORMER_VARIANTS)


def test_param_names_for_optimizer_rules():
  model = segformer('b0', NUM_CLASSES, **TINY)
  variables = jax.eval_shape(
      lambda: model.init({'params': jax.random.key(0)}, jnp.zeros((1, 64, 64, 3))))
  params = variables['params']
  assert set(params) == {'backbone', 'decode_head'}
  block = params['backbone']['stage1']['block0']
  assert set(block) == {'norm1', 'attn', 'norm2', 'mlp'}
  assert set(block['attn']) == {'query', 'key', 'value', 'sr', 'sr_norm', 'proj'}
  assert set(block['mlp']) == {'fc1', 'dwconv', 'fc2'}
  assert block['mlp']['dwconv']['kernel'].shape == (3, 3, 1, 4 * 16)
  assert 'sr' not in params['backbone']['stage4']['block0']['attn']  # sr_ratio 1
  assert set(params['decode_head']) == {'linear_c1', 'linear_c2', 'linear_c3', 'linear_c4',
                                        'linear_fuse', 'fuse_norm', 'classifier'}
  assert modules(params['backbone']) == expand(
      'stage{1..4}/{patch_embed/{proj,norm},norm}',
      'stage{1..4}/block0/{norm1,norm2,attn/{query,key,value,proj},mlp/{fc1,dwconv,fc2}}',
      'stage{1..3}/block0/attn/{sr,sr_norm}')
  assert 'bias' not in params['decode_head']['linear_fuse']
  # Every parameter with 'scale' (a norm's weight) lives in a module whose name has 'norm'.
  paths = ['/'.join(str(k.key) for k in path)
           for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  assert all('norm' in p for p in paths if p.endswith('/scale'))
  assert sum("norm" in p for p in paths) == 2 * (4 * 4 + 3 + 1)  # 16 + 3 sr LayerNorms, 1 BN
  # The one BatchNorm's running mean and variance: 2 x decoder_dim.
  assert _count(variables['batch_stats']) == 2 * TINY['decoder_dim']


def test_init_statistics(tiny):
  variables, _ = tiny
  params = variables['params']
  block = params['backbone']['stage1']['block0']
  assert abs(float(jnp.std(block['mlp']['fc1']['kernel'])) - 0.02) < 0.003
  assert abs(float(jnp.std(block['mlp']['dwconv']['kernel'])) - math.sqrt(2 / 9)) < 0.06
  assert float(jnp.abs(block['mlp']['fc1']['bias']).max()) == 0.0
  np.testing.assert_array_equal(block['norm1']['scale'], 1.0)
  np.testing.assert_array_equal(block['norm1']['bias'], 0.0)


def test_bfloat16_runs_and_is_finite(tiny):
  variables, images = tiny  # float32 parameters serve any compute dtype
  model = SegFormer(NUM_CLASSES, dtype=jnp.bfloat16, **TINY)
  out, updated = jax.jit(lambda v, x: model.apply(
      v, x, train=True, rngs={'dropout': jax.random.key(2)}, mutable=['batch_stats']))(
          variables, images)
  assert out['logits'].shape == (2, 10, 14, NUM_CLASSES)
  assert bool(jnp.isfinite(out['logits']).all())
  assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(updated))


def test_unknown_variant():
  with pytest.raises(ValueError, match='b9'):
    segformer('b9', 3)
