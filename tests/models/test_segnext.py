"""SegNeXt (MSCAN + LightHamHead): shapes and stride, exact parameter counts and names, a scanned
stage, and the NMF against a NumPy transcription of the reference's updates. (Inference, one
train step, randomness and determinism: test_zoo.py.)"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models import layers
from semseg_jax.models.backbones.mscan import MSCAN, MSCANStage
from semseg_jax.models.heads.ham_head import (EVAL_BASES_SEED, NMF2D, LightHamHead,
                                              nmf_reconstruct, normalized_random_bases)
from semseg_jax.models.layers import EncoderDecoder
from semseg_jax.models.segnext import segnext
from semseg_jax.tools import model_stats
from semseg_jax.tools import model_table as table
from tests.helpers import host_init
from tests.helpers.param_trees import expand, modules

NUM_CLASSES = 5
# MSCAN with every part of the real one (stem, strip convs, layer scale, stage LayerNorms) but
# tiny widths; head widths 32 so that GroupNorm(32) applies as published.
TINY_BACKBONE = dict(widths=(8, 16, 24, 40), depths=(1, 1, 1, 1), mlp_ratios=(2, 2, 2, 2),
                     drop_path_rate=0.2)
TINY_HEAD = dict(channels=32, ham_channels=32, rank=4, dropout_rate=0.1)

# sum(p.numel() for p in ...) of mmseg 1.2.2's MSCAN + LightHamHead built from the configs
# (BN norm_cfg, GN(32) head, cls_seg conv with bias). Backbone: T 3,903,584, S 13,450,176,
# B 26,277,824, L 44,636,864. The head at K classes: squeeze sum(w2..w4)*c + 2c, ham_in c*c + c,
# ham_out c*c + 2c, align c*c + 2c, conv_seg c*K + K; e.g. T (c=256, widths 64+160+256=480):
# 480*256 + 512 + 65,792 + 66,048 + 66,048 + 256*150 + 150 = 359,830.
# Published (paper Table 4 / official README): 4.3M, 13.9M, 27.6M, 48.9M.
PARAM_COUNTS = {
    ('t', 150): 4_263_414,
    ('s', 150): 13_932_886,
    ('b', 150): 27_636_310,
    ('l', 150): 48_926_550,
    ('t', 19): 4_229_747,
}


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _conv_out(n: int) -> int:
  """PyTorch conv arithmetic for k=3, s=2, p=1."""
  return (n + 2 - 3) // 2 + 1


@functools.cache
def _tiny_training_shapes():
  """(training outputs, variables) of the tiny SegNeXt on 2 x 37 x 50 images, as shapes (the
  init's trace is the training forward). Its inference, one train step, the BatchNorm statistics
  and randomness from the 'dropout' rng only are checked on the zoo's tiny SegNeXt
  (tests/models/test_zoo.py)."""
  model = EncoderDecoder(MSCAN(**TINY_BACKBONE), LightHamHead(NUM_CLASSES, **TINY_HEAD))
  images = jax.ShapeDtypeStruct((2, 37, 50, 3), jnp.float32)
  rngs = {'params': jax.random.key(1), 'dropout': jax.random.key(2)}
  return jax.eval_shape(lambda x: model.init_with_output(rngs, x, train=True), images)


def test_backbone_strides_follow_pytorch_conv_arithmetic():
  images = jax.ShapeDtypeStruct((1, 37, 50, 3), jnp.float32)
  backbone = MSCAN(**TINY_BACKBONE)
  variables = jax.eval_shape(lambda x: backbone.init(jax.random.key(0), x), images)
  features = jax.eval_shape(lambda v, x: backbone.apply(v, x), variables, images)
  h, w = 37, 50
  for s, feature in enumerate(features):
    for _ in range(2 if s == 0 else 1):  # The stem is two stride-2 convs.
      h, w = _conv_out(h), _conv_out(w)
    assert feature.shape == (1, h, w, TINY_BACKBONE['widths'][s])
  assert [f.shape[1:3] for f in features] == [(10, 13), (5, 7), (3, 4), (2, 2)]


def test_training_outputs():
  out, _ = _tiny_training_shapes()
  assert out['logits'].shape == (2, 5, 7, NUM_CLASSES)  # Stride 8: ceil(37/8), ceil(50/8).
  assert out['logits'].dtype == jnp.float32
  assert out['aux'] == []


def test_param_names():
  """mmseg's names (the stem BNs bn1/bn2 hold no 'norm', like mmseg's proj.1/proj.4); the
  layer-scale vectors live in the block itself."""
  params = _tiny_training_shapes()[1]['params']
  assert modules(params['backbone']) == expand(
      'stage1/patch_embed/{conv1,bn1,conv2,bn2}', 'stage{2..4}/patch_embed/{proj,norm}',
      'stage{1..4}/{norm,block0}', 'stage{1..4}/block0/{norm1,norm2,mlp/{fc1,dwconv,fc2}}',
      'stage{1..4}/block0/attn/{proj_1,proj_2}',
      'stage{1..4}/block0/attn/spatial_gating_unit/{conv0,conv{0..2}_{1..2},conv3}')
  assert set(params['backbone']['stage1']['block0']) >= {'layer_scale_1', 'layer_scale_2'}
  assert modules(params['decode_head']) == expand(
      '{squeeze,align,hamburger/ham_out}/{conv,gn}', 'hamburger/ham_in/conv',
      'classifier/conv_seg')
  assert set(params['decode_head']['hamburger']['ham_in']['conv']) == {'kernel', 'bias'}


def test_a_scanned_stage_equals_the_unrolled_one():
  """A stage of two blocks scanned (layers.repeated_blocks: the strip convolutions' CPU
  lowering and the BatchNorms inside a lax.scan) gives the unrolled stage's training features
  and BatchNorm statistics; MSCAN scans the stages that deep and no other (evaluation and
  gradients of a scan: tests/models/test_layers.py)."""
  x = jax.random.normal(jax.random.key(0), (2, 10, 13, 8))
  unrolled, scanned = (MSCANStage(16, 2, (0.0, 0.0), is_first=False, scan_min_depth=depth)
                       for depth in (0, 2))
  variables = host_init.draw(jax.eval_shape(unrolled.init, jax.random.key(1), x))

  def outputs(stage):
    with layers.conv_lowering('cpu'):  # (The model tests' default is XLA's: tests/conftest.py.)
      return jax.jit(lambda v: stage.apply(v, x, train=True, mutable=['batch_stats']))(variables)
  want, got = outputs(unrolled), outputs(scanned)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

  images = jax.ShapeDtypeStruct((1, 37, 50, 3), jnp.float32)
  spec = {**TINY_BACKBONE, 'depths': (1, 1, 2, 1)}

  def scans(scan_min_depth: int) -> int:
    backbone = MSCAN(**spec, scan_min_depth=scan_min_depth)
    variables = jax.eval_shape(backbone.init, jax.random.key(0), images)
    return str(jax.make_jaxpr(backbone.apply)(variables, images)).count(' scan[')
  assert (scans(0), scans(2), scans(3)) == (0, 1, 0)


def test_eval_nmf_is_per_sample():
  """At inference every sample gets the same fixed bases: its output does not depend on the rest
  of its batch. In training the bases are per-sample draws from the 'dropout' rng."""
  x = jnp.asarray(np.random.default_rng(3).random((2, 3, 4, 8)), jnp.float32)
  module = NMF2D(rank=3)
  evaluate = jax.jit(lambda x: module.apply({}, x, train=False))
  train = jax.jit(lambda x, key: module.apply({}, x, train=True, rngs={'dropout': key}))
  both = evaluate(x)
  np.testing.assert_allclose(evaluate(x[1:])[0], both[1], rtol=1e-6)
  key = jax.random.key(5)
  trained = train(x, key)
  np.testing.assert_array_equal(trained, train(x, key))
  assert not np.allclose(trained, both)


def test_full_size_shapes_and_tiny_spec():
  """The constructor's T with a narrow head, and MSCAN narrowed by overrides."""
  model = segnext('t', NUM_CLASSES, channels=32, ham_channels=32, rank=8)
  images = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  variables = jax.eval_shape(lambda x: model.init(rngs, x), images)
  out = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, rngs={'dropout': rngs['dropout']},
                               mutable=['batch_stats'])[0], variables, images)
  assert out['logits'].shape == (2, 8, 8, NUM_CLASSES)
  assert out['aux'] == []
  with pytest.raises(ValueError, match="'x'"):
    segnext('x', NUM_CLASSES)
  # The shared tiny spec narrows MSCAN too: widths/depths/mlp_ratios go to the backbone.
  small = segnext('t', NUM_CLASSES, widths=(8, 16, 24, 32), depths=(1, 1, 1, 2),
                  mlp_ratios=(2, 2, 2, 2), channels=16, num_groups=8)
  variables = jax.eval_shape(lambda x: small.init(rngs, x), images)
  stages = variables['params']['backbone']
  assert [stages[f'stage{i}']['norm']['scale'].shape[0] for i in range(1, 5)] == [8, 16, 24, 32]
  assert sorted(k for k in stages['stage4'] if k.startswith('block')) == ['block0', 'block1']
  assert stages['stage1']['block0']['mlp']['fc1']['kernel'].shape[-1] == 16
  assert variables['params']['decode_head']['align']['conv']['kernel'].shape[-1] == 16


@functools.cache
def _table_counts() -> dict:
  """{(variant, classes): reference count} of the README table's SegNeXt rows, whose models
  tests/models/test_zoo.py builds and counts."""
  return {(table.load_config(row.config, row.argument).model.variant, row.num_classes):
          row.reference for row in table.ROWS if row.config.endswith('_segnext')}


def test_the_model_table_counts_segnext_at_150_classes_with_these_references():
  assert _table_counts() == {key: n for key, n in PARAM_COUNTS.items() if key[1] == 150}


@pytest.mark.parametrize('variant,num_classes', sorted(set(PARAM_COUNTS) - set(_table_counts())))
def test_parameter_counts_equal_the_reference(variant, num_classes):
  """The counts the README table does not hold (its rows are counted by the table test)."""
  variables = model_stats.abstract_variables(segnext(variant, num_classes), (64, 64))
  assert set(variables) == {'params', 'batch_stats'}
  assert _count(variables['params']) == PARAM_COUNTS[(variant, num_classes)]


def _numpy_nmf(x: np.ndarray, bases: np.ndarray, steps: int) -> np.ndarray:
  """The reference's NMF2D in its own layout: x [M, D, N], bases [M, D, R] -> [M, D, N]."""
  eps = 1e-6
  logits = np.einsum('mdn,mdr->mnr', x, bases)
  coef = np.exp(logits - logits.max(-1, keepdims=True))
  coef /= coef.sum(-1, keepdims=True)
  for i in range(steps + 1):
    num = np.transpose(x, (0, 2, 1)) @ bases
    den = coef @ (np.transpose(bases, (0, 2, 1)) @ bases)
    coef = coef * num / (den + eps)
    if i == steps:  # compute_coef: the last update leaves the bases alone.
      break
    num = x @ coef
    den = bases @ (np.transpose(coef, (0, 2, 1)) @ coef)
    bases = bases * num / (den + eps)
  return bases @ np.transpose(coef, (0, 2, 1))


def test_nmf_matches_numpy():
  rng = np.random.default_rng(0)
  x = rng.random((3, 12, 20))  # [M, D, N], non-negative like the ReLU output it gets.
  bases = rng.random((3, 12, 4))
  bases /= np.linalg.norm(bases, axis=1, keepdims=True)
  expected = _numpy_nmf(x, bases, steps=6)
  got = nmf_reconstruct(jnp.asarray(x.transpose(0, 2, 1), jnp.float32),
                        jnp.asarray(bases, jnp.float32), steps=6)
  np.testing.assert_allclose(np.asarray(got).transpose(0, 2, 1), expected, rtol=2e-4, atol=1e-5)


def test_nmf_module_segments_and_fixed_eval_bases():
  """Eval: channel groups of C / S (the reference's view(B*S, D, N)), 7 steps, bases from
  a threefry key of EVAL_BASES_SEED (whatever the default generator) as unit-norm non-negative
  columns."""
  rng = np.random.default_rng(1)
  n, h, w, c, s, r = 2, 3, 5, 8, 2, 3
  x = rng.random((n, h, w, c)).astype(np.float32)
  module = NMF2D(rank=r, num_segments=s)
  got = np.asarray(module.apply({}, jnp.asarray(x), train=False))
  bases = np.asarray(normalized_random_bases(jax.random.key(EVAL_BASES_SEED, impl='threefry2x32'),
                                             (s, c // s, r)))
  assert (bases >= 0).all()
  np.testing.assert_allclose(np.linalg.norm(bases, axis=1), 1.0, rtol=1e-6)
  x_ref = x.transpose(0, 3, 1, 2).reshape(n * s, c // s, h * w)  # NCHW view(B*S, D, N)
  expected = _numpy_nmf(x_ref, np.tile(bases, (n, 1, 1)).astype(np.float64), steps=7)
  expected = expected.reshape(n, c, h, w).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-5)


def test_nmf_gradient_flows_through_all_steps_unless_one_step():
  """As the reference (no torch.no_grad), the iterations are differentiated; one_step_gradient
  keeps the forward but stops the gradient through them."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.random((1, 10, 6)), jnp.float32)
  bases = normalized_random_bases(jax.random.key(0), (1, 6, 3))
  weights = jnp.asarray(rng.normal(size=(1, 10, 6)), jnp.float32)

  def loss(x, one_step):
    return jnp.sum(nmf_reconstruct(x, bases, 2, one_step) * weights)

  np.testing.assert_allclose(nmf_reconstruct(x, bases, 2, False),
                             nmf_reconstruct(x, bases, 2, True))
  gradient = jax.jit(jax.grad(loss), static_argnums=1)
  full, one = gradient(x, False), gradient(x, True)
  assert bool(jnp.isfinite(full).all()) and not np.allclose(full, one)


def test_head_runs_in_bfloat16():
  head = LightHamHead(NUM_CLASSES, dtype=jnp.bfloat16, **TINY_HEAD)
  features = [jnp.ones((1, 8, 8, 8)), jnp.ones((1, 4, 4, 16)), jnp.ones((1, 2, 2, 24)),
              jnp.ones((1, 1, 1, 40))]
  variables = jax.jit(head.init)(jax.random.key(0), features)
  logits = jax.jit(head.apply)(variables, features)
  assert logits.shape == (1, 4, 4, NUM_CLASSES) and logits.dtype == jnp.bfloat16
  assert bool(jnp.isfinite(logits.astype(jnp.float32)).all())
