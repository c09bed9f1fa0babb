"""TopFormer: shapes, exact parameter counts and names, the attention against NumPy,
initialisation. (Inference, randomness and BatchNorm updates: test_zoo.py; the token pooling, an
adaptive average pool: test_layers.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.topformer import (TOPFORMER_VARIANTS, Attention, InvertedResidual,
                                         SimpleHead, TransformerBlock, h_sigmoid, topformer)
from tests.helpers.param_trees import expand, modules

NUM_CLASSES = 5
# Narrow injection and head, a single transformer block.
NARROW = dict(channels=16, depth=1)
# Also one inverted residual block per token scale (strides 4, 8, 16, 32), with kernels 3 and 5,
# expansions 1 (with the residual) and 3.
TINY = dict(NARROW, blocks=((3, 1, 16, 1), (3, 3, 16, 2), (5, 3, 24, 2), (3, 3, 32, 2),
                            (5, 3, 40, 2)), token_indices=(1, 2, 3, 4))

# sum(p.numel() for p in model.parameters()) of the official hustvl/TopFormer modules
# (mmseg/models/backbones/topformer.py: Topformer with the local_configs/topformer/topformer_*.py
# settings, plus SimpleHead's linear_fuse ConvModule and conv_seg), instantiated with torch 2.13.
# Published (README / paper Table): 1.4M, 3.1M, 5.1M. Per part at 150 classes:
#   T: tpm 256,832 + trans 1,037,056 + SIM 76,032 + head 19,734
#   S: tpm 688,272 + trans 2,120,064 + SIM 160,128 + head 66,198
#   B: tpm 1,097,056 + trans 3,586,048 + SIM 274,944 + head 104,598
# The head by hand, T: depthwise 1x1 linear_fuse 128 + BN 2 * 128 + classifier 128 * 150 + 150
#   = 19,734; S: 192^2 + 2 * 192 + 192 * 150 + 150 = 66,198; B: 256^2 + 512 + 256 * 150 + 150
#   = 104,598. SIM of the stride-8 token of T: 3 * (32 * 128 + 2 * 128) = 13,056.
REFERENCE_PARAM_COUNTS = {
    ('t', 150): 1_389_654, ('s', 150): 3_034_662, ('b', 150): 5_062_646,
    ('t', 19): 1_372_755, ('s', 19): 3_009_379, ('b', 19): 5_028_979,
}
REFERENCE_PART_COUNTS_150 = {
    't': dict(tpm=256_832, trans=1_037_056, sim=76_032, head=19_734),
    's': dict(tpm=688_272, trans=2_120_064, sim=160_128, head=66_198),
    'b': dict(tpm=1_097_056, trans=3_586_048, sim=274_944, head=104_598),
}
# BatchNorm running mean + var entries of the reference (its buffers without num_batches).
REFERENCE_BN_STATS = {'t': 18_208, 's': 29_504, 'b': 38_304}


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _init_shapes(model, hw=(64, 64)):
  return jax.eval_shape(
      lambda: model.init({'params': jax.random.key(0)}, jnp.zeros((1, *hw, 3))))


def test_tiny_training_shapes_and_batch_norm_layout():
  """Training shapes and BatchNorm layout of the tiny model, from its init's trace. Its
  inference and what the training forward computes (every running statistic following the
  batch, Dropout2d and drop path drawing from the 'dropout' rng) are checked on the same tiny
  model by test_zoo.py."""
  model = topformer('t', NUM_CLASSES, **TINY)
  images = jax.ShapeDtypeStruct((2, 45, 67, 3), jnp.float32)
  rngs = {'params': jax.random.key(1), 'dropout': jax.random.key(2)}
  out, variables = jax.eval_shape(lambda x: model.init_with_output(rngs, x, train=True), images)
  assert out['logits'].shape == (2, 6, 9, NUM_CLASSES)  # ceil(45 / 8), ceil(67 / 8)
  assert out['logits'].dtype == jnp.float32
  assert out['aux'] == []
  for path in (('decode_head', 'linear_fuse'), ('backbone', 'tpm', 'stem'),
               ('backbone', 'trans', 'block0', 'attn', 'to_q'), ('backbone', 'sim3', 'global_act')):
    stats = variables['batch_stats']
    for name in path:
      stats = stats[name]
    assert set(stats['bn']) == {'mean', 'var'}, path
  assert set(variables['batch_stats']['backbone']['tpm']) == {'stem'} | {
      f'layer{i}' for i in range(1, 6)}


def _torch_conv(n: int, k: int, s: int) -> int:
  return (n + 2 * (k // 2) - k) // s + 1


@pytest.mark.parametrize('variant,hw', [('t', (33, 64)), ('s', (64, 33))])
def test_shapes_follow_pytorch_conv_arithmetic(variant, hw):
  """Logits are at the stride-8 token's size, computed with PyTorch's conv arithmetic. At 33 x
  64 one side rounds up at every stride, the other divides exactly."""
  model = topformer(variant, NUM_CLASSES, **NARROW)
  images = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
  variables = _init_shapes(model, hw)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'],
                                                rngs={'dropout': jax.random.key(0)})[0],
                       variables, images)
  config = TOPFORMER_VARIANTS[variant]
  h, w = _torch_conv(hw[0], 3, 2), _torch_conv(hw[1], 3, 2)  # The stem.
  sizes = []
  for kernel, _, _, stride in config['blocks']:
    h, w = _torch_conv(h, kernel, stride), _torch_conv(w, kernel, stride)
    sizes.append((h, w))
  assert out['logits'].shape == (1, *sizes[config['token_indices'][1]], NUM_CLASSES)
  assert out['aux'] == []


@pytest.mark.parametrize('variant', sorted(TOPFORMER_VARIANTS))
def test_param_counts_match_the_official_modules(variant):
  variables = _init_shapes(topformer(variant, 150))
  params = variables['params']
  assert _count(params) == REFERENCE_PARAM_COUNTS[(variant, 150)]
  backbone = params['backbone']
  parts = dict(tpm=_count(backbone['tpm']), trans=_count(backbone['trans']),
               sim=sum(_count(backbone[f'sim{i}']) for i in (1, 2, 3)),
               head=_count(params['decode_head']))
  assert parts == REFERENCE_PART_COUNTS_150[variant]
  assert _count(variables['batch_stats']) == REFERENCE_BN_STATS[variant]
  # At 19 classes only the classifier changes.
  config = TOPFORMER_VARIANTS[variant]
  head = SimpleHead(19, config['head_depthwise'])
  features = [jnp.zeros((1, 4, 4, config['channels']))]
  head_19 = _count(jax.eval_shape(lambda: head.init(jax.random.key(0), features))['params'])
  assert (_count(params) - parts['head'] + head_19 == REFERENCE_PARAM_COUNTS[(variant, 19)])


def test_param_layout():
  params = _init_shapes(topformer('t', 150), (32, 32))['params']
  assert set(params) == {'backbone', 'decode_head'}
  backbone = params['backbone']
  assert set(backbone) == {'tpm', 'trans', 'sim1', 'sim2', 'sim3'}
  assert set(backbone['tpm']) == {'stem'} | {f'layer{i}' for i in range(1, 10)}
  assert set(backbone['tpm']['layer1']) == {'depthwise', 'project'}  # expansion 1
  assert set(backbone['tpm']['layer8']) == {'expand', 'depthwise', 'project'}
  assert set(backbone['trans']) == {f'block{i}' for i in range(4)}
  block = backbone['trans']['block0']
  assert set(block['attn']) == {'to_q', 'to_k', 'to_v', 'proj'}
  assert set(block['mlp']) == {'fc1', 'dwconv', 'fc2'}
  # T: tokens 16 + 32 + 64 + 96 = 208 ch; q/k 4 heads x 16, v 4 x 32; MLP hidden 416.
  assert block['attn']['to_q']['conv']['kernel'].shape == (1, 1, 208, 64)
  assert block['attn']['to_v']['conv']['kernel'].shape == (1, 1, 208, 128)
  assert block['mlp']['dwconv']['kernel'].shape == (3, 3, 1, 416)
  assert set(backbone['sim1']) == {'local_embedding', 'global_act', 'global_embedding'}
  assert backbone['sim1']['local_embedding']['conv']['kernel'].shape == (1, 1, 32, 128)
  assert set(params['decode_head']) == {'linear_fuse', 'classifier'}
  assert params['decode_head']['linear_fuse']['conv']['kernel'].shape == (1, 1, 1, 128)
  # The reference's names: every Conv2d_BN / ConvModule is conv + bn.
  assert modules(backbone) == expand(
      'tpm/{stem,layer{1..9}/{depthwise,project},layer{2..9}/expand}/{conv,bn}',
      'trans/block{0..3}/{attn/{to_q,to_k,to_v,proj},mlp/{fc1,fc2}}/{conv,bn}',
      'trans/block{0..3}/mlp/dwconv',
      'sim{1..3}/{local_embedding,global_act,global_embedding}/{conv,bn}')
  assert modules(params['decode_head']) == {'linear_fuse/conv', 'linear_fuse/bn',
                                            'classifier/conv_seg'}


def test_init():
  x = jnp.zeros((1, 8, 8, 64))
  block = TransformerBlock(key_dim=16, num_heads=4, attn_ratio=2, mlp_ratio=2, drop_path=0.1)
  params = jax.jit(block.init)(jax.random.key(0), x)['params']
  # The attention projection's BN gamma starts at 0, the other gammas at 1; conv biases at 0.
  np.testing.assert_array_equal(params['attn']['proj']['bn']['scale'], 0.0)
  np.testing.assert_array_equal(params['attn']['to_q']['bn']['scale'], 1.0)
  np.testing.assert_array_equal(params['mlp']['dwconv']['bias'], 0.0)
  # Convs: N(0, 2 / (k * k * out / groups)); 2 / 25 for a 5x5 depthwise one.
  params = jax.jit(InvertedResidual(96, 5, 2, 6).init)(jax.random.key(1), x)['params']
  kernel = params['depthwise']['conv']['kernel']  # 5x5, 6 * 64 ch
  assert kernel.shape == (5, 5, 1, 384)
  assert abs(float(jnp.std(kernel)) / math.sqrt(2 / 25) - 1) < 0.1
  kernel = params['expand']['conv']['kernel']  # 1x1, 64 -> 384
  assert abs(float(jnp.std(kernel)) / math.sqrt(2 / 384) - 1) < 0.1
  kernel = jax.jit(SimpleHead(150).init)(jax.random.key(2), [x])['params']['classifier'][
      'conv_seg']['kernel']
  assert abs(float(jnp.std(kernel)) / 0.01 - 1) < 0.1


def test_h_sigmoid():
  x = jnp.linspace(-5.0, 5.0, 41)
  np.testing.assert_allclose(h_sigmoid(x), np.clip(np.asarray(x) + 3, 0, 6) / 6, atol=1e-7)


def _numpy_conv_bn(x, module_params, module_stats):
  y = x @ module_params['conv']['kernel'][0, 0]
  bn, stats = module_params['bn'], module_stats['bn']
  return (y - stats['mean']) / np.sqrt(stats['var'] + 1e-5) * bn['scale'] + bn['bias']


def test_attention_matches_numpy():
  """Heads split the projections' channels in blocks (the reference's reshape); unscaled
  softmax over the keys; ReLU6 then the BN-ed projection."""
  key_dim, heads, ratio = 4, 3, 2
  attention = Attention(key_dim, heads, ratio)
  x = np.random.default_rng(1).normal(size=(2, 3, 5, 10)).astype(np.float32)
  variables = jax.jit(attention.init)(jax.random.key(0), jnp.asarray(x))
  leaves, tree = jax.tree.flatten(variables)
  rng = np.random.default_rng(2)
  leaves = [rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32) for leaf in leaves]
  variables = jax.tree.unflatten(tree, leaves)  # Random weights, BN affine and statistics.
  out = jax.jit(attention.apply)(variables, jnp.asarray(x))

  p, s = jax.tree.map(np.asarray, variables['params']), variables['batch_stats']
  s = jax.tree.map(np.asarray, s)
  tokens = x.reshape(2, 15, 10)
  q = _numpy_conv_bn(tokens, p['to_q'], s['to_q'])
  k = _numpy_conv_bn(tokens, p['to_k'], s['to_k'])
  v = _numpy_conv_bn(tokens, p['to_v'], s['to_v'])
  expected = np.zeros((2, 15, heads * ratio * key_dim))
  for head in range(heads):
    qh = q[..., head * key_dim:(head + 1) * key_dim]
    kh = k[..., head * key_dim:(head + 1) * key_dim]
    vh = v[..., head * ratio * key_dim:(head + 1) * ratio * key_dim]
    scores = np.einsum('nqd,nkd->nqk', qh, kh)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    expected[..., head * ratio * key_dim:(head + 1) * ratio * key_dim] = probs @ vh
  expected = _numpy_conv_bn(np.clip(expected, 0, 6), p['proj'], s['proj'])
  np.testing.assert_allclose(out, expected.reshape(2, 3, 5, 10), rtol=2e-4, atol=2e-4)


def test_dtype_and_bad_variant():
  model = topformer('t', NUM_CLASSES, dtype=jnp.bfloat16, **TINY)
  variables = _init_shapes(model)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables['params']))
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 64, 64, 3))), variables)
  assert out['logits'].dtype == jnp.float32 and out['logits'].shape == (1, 8, 8, NUM_CLASSES)
  with pytest.raises(ValueError, match="'t', 's', 'b'|\\['b', 's', 't'\\]"):
    topformer('xl', NUM_CLASSES)
