"""SFNet: grid sampling and the flow warp against NumPy brute force, shapes and output stride,
deep-supervision outputs, and the exact parameter counts and names of the official
lxtGH/SFSegNets modules. (Inference, BatchNorm and dropout in training: test_zoo.py; the
align_corners=True resize: test_layers.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.layers import resize_align_corners
from semseg_jax.models.sfnet import flow_warp, grid_sample, sfnet
from tests.helpers.param_trees import expand, modules
from tests.helpers.table_counts import table_counts

NUM_CLASSES = 5
# The small form the shared zoo test builds (see the report); images 2 x 37 x 53.
TINY_SFNET = dict(variant='r18', fpn_dim=16)


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _stride4(n: int) -> int:
  """Stage 1's size: the stride-2 stem conv then the 3x3/2 max pooling (padding 1)."""
  return -(-(-(-n // 2)) // 2)


def _init_abstract(model, hw=(64, 64)):
  images = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  return jax.eval_shape(lambda x: model.init(rngs, x, train=True), images)


# --- Numeric pieces -----------------------------------------------------------------------

def _brute_grid_sample(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """torch.nn.functional.grid_sample(bilinear, padding_mode='zeros', align_corners=True)."""
  n, h, w, c = x.shape
  _, oh, ow, _ = grid.shape
  out = np.zeros((n, oh, ow, c))
  for b in range(n):
    for i in range(oh):
      for j in range(ow):
        px = (grid[b, i, j, 0] + 1) / 2 * (w - 1)
        py = (grid[b, i, j, 1] + 1) / 2 * (h - 1)
        x0, y0 = int(np.floor(px)), int(np.floor(py))
        for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
          for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
              out[b, i, j] += wy * wx * x[b, yy, xx]
  return out


def test_grid_sample_matches_brute_force():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 4, 6, 3)).astype(np.float32)
  grid = rng.uniform(-1.4, 1.4, size=(2, 5, 7, 2)).astype(np.float32)
  grid[0, 0, 0] = (-1.0, -1.0)  # Exact corners and pixel centres.
  grid[0, 0, 1] = (1.0, 1.0)
  grid[1, 2, 3] = (0.2, 1.0 / 3.0)
  np.testing.assert_allclose(jax.jit(grid_sample)(jnp.asarray(x), jnp.asarray(grid)),
                             _brute_grid_sample(x, grid), atol=1e-5)


def test_flow_warp_with_zero_flow_is_align_corners_upsampling():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 3, 5, 4)).astype(np.float32))
  flow = jnp.zeros((1, 7, 11, 2))
  np.testing.assert_allclose(jax.jit(flow_warp)(x, flow), resize_align_corners(x, (7, 11)),
                             atol=1e-5)


def test_flow_warp_moves_by_flow_over_output_size():
  """A flow of (out_w * 2 / (w - 1), 0) moves every sample one input pixel to the right."""
  x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 4, 5, 2)).astype(np.float32))
  flow = jnp.zeros((1, 4, 5, 2)).at[..., 0].set(5 * 2 / 4)
  expected = jnp.pad(x[:, :, 1:], ((0, 0), (0, 0), (0, 1), (0, 0)))  # Zeros past the edge.
  np.testing.assert_allclose(jax.jit(flow_warp)(x, flow), expected, atol=1e-5)


# --- The model ----------------------------------------------------------------------------

def test_tiny_model_names_and_shapes():
  model = sfnet(TINY_SFNET['variant'], NUM_CLASSES, aux_head=True,
                **{k: v for k, v in TINY_SFNET.items() if k != 'variant'})
  images = jax.ShapeDtypeStruct((2, 37, 53, 3), jnp.float32)
  rngs = {'params': jax.random.key(1), 'dropout': jax.random.key(2)}
  # Shapes only, initialised in inference mode as train.py does (the deep supervision heads
  # exist then too).
  variables = jax.eval_shape(lambda x: model.init(rngs, x, train=False), images)
  assert set(variables) == {'params', 'batch_stats'}
  assert {f'dsn_{i}' for i in range(3)} <= set(variables['params']['decode_head'])
  # The reference's names: the deep-base ResNet-18 (a 128 -> 64 projection in layer1 too) ...
  assert modules(variables['params']['backbone']) == expand(
      'stem_{conv,bn}{1..3}', 'layer{1..4}_block{0..1}/{conv,bn}{1..2}',
      'layer{1..4}_block0/downsample_{conv,bn}')
  # ... and UperNetAlignHead: PPM, fpn_in laterals, FAMs, fpn_out convs, conv_last, classifier,
  # the fpn_dsn heads.
  assert modules(variables['params']['decode_head']) == expand(
      'ppm/{stages_{0..3},bottleneck}/{conv,bn}', '{fpn_in_{0..2},fpn_out_{0..2}}/{conv,bn}',
      'fpn_out_align_{0..2}/{down_h,down_l,flow_make}', 'conv_last/{conv,bn}', 'classifier',
      'dsn_{0..2}/{conv_bn/{conv,bn},classifier}')

  # Inference and what the training forward computes (finite outputs, every running mean and
  # variance moving, the PPM's Dropout2d drawing from the 'dropout' rng) are checked on the same
  # tiny model by tests/models/test_zoo.py; here its training shapes.
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, rngs={'dropout': rngs['dropout']},
                                                mutable=['batch_stats'])[0], variables, images)
  h, w = _stride4(37), _stride4(53)  # 10 x 14
  assert out['logits'].shape == (2, h, w, NUM_CLASSES) and out['logits'].dtype == jnp.float32
  # Deep supervision, coarsest first: strides 16, 8, 4.
  assert [a.shape[1:3] for a in out['aux']] == [(3, 4), (5, 7), (h, w)]
  assert all(a.shape[-1] == NUM_CLASSES and a.dtype == jnp.float32 for a in out['aux'])
  assert 'bn' in variables['batch_stats']['decode_head']['conv_last']


def test_without_aux_head_and_bfloat16():
  model = sfnet('r18', NUM_CLASSES, dtype=jnp.bfloat16, fpn_dim=16)
  variables = _init_abstract(model, (33, 64))
  assert not any(k.startswith('dsn') for k in variables['params']['decode_head'])
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables['params']))
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, rngs={'dropout':
                                                jax.random.key(0)}, mutable=['batch_stats'])[0],
                       variables, jax.ShapeDtypeStruct((1, 33, 64, 3), jnp.float32))
  assert out['aux'] == [] and out['logits'].shape == (1, 9, 16, NUM_CLASSES)
  assert out['logits'].dtype == jnp.float32


def test_invalid_variant():
  with pytest.raises(ValueError, match="'r34'"):
    sfnet('r34', NUM_CLASSES)


# Counts of the official modules (network/sfnet_resnet.py DeepR{18,50,101}_SF_deeply) at 19
# classes, printed by sum(p.numel()) in the reference environment; R18 by hand:
#   backbone 11,324,992: stem 3*64*9 + 64*64*9 + 64*128*9 + 2*(64+64+128) = 112,832; stages
#     193,152 (layer1 incl. a 128->64 projection) + 525,568 + 2,099,712 + 8,393,728;
#   head 1,544,723: PPM 4 * (512*128 + 256) + (1024*128 + 256) = 394,496; fpn_in
#     (64 + 128 + 256) * 128 + 3 * (128 + 256) = 58,496; fpn_out 3 * (9*128*128 + 256) =
#     443,136; FAMs 3 * (2 * 128*64 + 9*128*2) = 56,064; conv_last 9*512*128 + 256 = 590,080;
#     classifier 128*19 + 19 = 2,451.
#   dsn heads (aux_head): 3 * (9*128*128 + 128 + 256 + 128*19 + 19) = 450,873.
# The paper's Table (Cityscapes test) gives SFNet(ResNet-18) 12.87M.
COUNTS = {  # (variant, classes, aux_head) -> count
    ('r18', 19, False): 12_869_715,
    ('r18', 19, True): 13_320_588,
    ('r50', 19, False): 31_325_139,
    ('r101', 19, False): 50_317_267,
    ('r50', 150, False): 31_358_806,
}
# The README table's rows (built from their configs and counted by tests/models/test_zoo.py).
IN_TABLE = {('r18', 19, False), ('r50', 19, False), ('r101', 19, False)}


def test_the_model_table_holds_these_counts():
  assert table_counts('sfnet', aux_head=False) == {
      key[:2]: COUNTS[key] for key in sorted(IN_TABLE)}
  assert table_counts('sfnet', aux_head=True) == {}


@pytest.mark.parametrize('key', sorted(set(COUNTS) - IN_TABLE))
def test_full_size_parameter_count(key):
  variant, num_classes, aux_head = key
  model = sfnet(variant, num_classes, aux_head=aux_head)
  assert _count(_init_abstract(model)['params']) == COUNTS[key]
