"""STDC-Seg: model shapes, modes, parameter counts and names. (Its detail loss is tested in
tests/losses/test_detail.py, the resizes in test_layers.py.)"""


import jax
import jax.numpy as jnp
import pytest

from semseg_jax.models import stdc as stdc_model
from semseg_jax.models.backbones import stdc as stdc_backbone
from tests.helpers.param_trees import expand, modules
from tests.helpers.table_counts import table_counts

TINY = dict(stage_depths=(2, 1, 1), stage_channels=(8, 16, 32, 64, 128), context_channels=16,
            fusion_channels=32, channels=16, aux_channels=8, detail_channels=8)


def _stride8(size: int) -> int:
  for _ in range(3):
    size = (size - 1) // 2 + 1
  return size


def test_tiny_model_names_and_training_shapes():
  model = stdc_model.stdc('stdc1', 5, **TINY)
  images = jax.ShapeDtypeStruct((2, 37, 50, 3), jnp.float32)
  # Traced, not computed: the init's trace is the training forward (its outputs are the
  # training outputs). Inference, one train step, every BatchNorm statistic moving and dropout
  # from the 'dropout' rng are checked on the zoo's tiny STDC by test_zoo.py.
  out, variables = jax.eval_shape(lambda x: model.init_with_output(
      {'params': jax.random.key(1), 'dropout': jax.random.key(2)}, x, train=True), images)
  assert set(variables['params']) == {'backbone', 'decode_head', 'auxiliary_heads_0',
                                      'auxiliary_heads_1', 'detail_head'}
  assert set(variables['params']['backbone']) == {'stdc_net', 'arms_0', 'arms_1', 'convs_0',
                                                  'convs_1', 'conv_avg', 'ffm'}
  # mmseg's names: STDC modules of 4 ConvModules (layers_k; a stride-2 module also its
  # depthwise downsample), BiSeNet's ARMs on strides 32 and 16, the FFM's bias-free attention.
  stdc_module = '{layers_{0..3},downsample}/{conv,bn}'
  assert modules(variables['params']['backbone']) == expand(
      'stdc_net/stages_{0..1}/{conv,bn}', f'stdc_net/{{stages_2/blocks_0,stages_3/blocks_0,'
      f'stages_4/blocks_0}}/{stdc_module}', 'stdc_net/stages_2/blocks_1/layers_{0..3}/{conv,bn}',
      'arms_{0..1}/{conv_layer,atten_conv_layer}/{conv,bn}', '{convs_{0..1},conv_avg}/{conv,bn}',
      'ffm/conv0/{conv,bn}', 'ffm/{attention_reduce,attention_expand}')
  for head in ('decode_head', 'auxiliary_heads_0', 'auxiliary_heads_1', 'detail_head'):
    assert modules(variables['params'][head]) == expand('convs_0/{conv,bn}',
                                                        'classifier/conv_seg')
  h, w = _stride8(37), _stride8(50)  # 5 x 7; stride 16: 3 x 4.
  assert out['logits'].shape == (2, h, w, 5) and out['logits'].dtype == jnp.float32
  assert [a.shape for a in out['aux']] == [(2, h, w, 5), (2, 3, 4, 5)]
  assert [d.shape for d in out['detail']] == [(2, h, w, 1)]

  no_aux = stdc_model.stdc('stdc2', 5, aux_head=False, **TINY)
  shapes = jax.eval_shape(no_aux.init, jax.random.PRNGKey(0), images)
  assert set(shapes['params']) == {'backbone', 'decode_head'}


def test_bad_variant():
  with pytest.raises(ValueError, match='stdc1'):
    stdc_model.stdc('stdc3', 19)


def _stdc_module_params(cin: int, cout: int, stride: int) -> int:
  """One 'cat' STDC module, 4 blocks (conv weights + BN gamma/beta)."""
  total = cin * cout // 2 + cout  # layers_0: 1x1 to cout/2 + BN.
  if stride == 2:
    total += 9 * cout // 2 + cout  # downsample: depthwise 3x3 + BN.
  for cin_k, cout_k in ((cout // 2, cout // 4), (cout // 4, cout // 8), (cout // 8, cout // 8)):
    total += 9 * cin_k * cout_k + 2 * cout_k
  return total


def _expected_params(depths: tuple[int, ...], num_classes: int, heads: bool) -> int:
  channels = (32, 64, 256, 512, 1024)
  total = 27 * 32 + 64 + 9 * 32 * 64 + 128  # stages_0, stages_1.
  for i, depth in enumerate(depths):
    total += _stdc_module_params(channels[i + 1], channels[i + 2], 2)
    total += (depth - 1) * _stdc_module_params(channels[i + 2], channels[i + 2], 1)
  for cin in (1024, 512):  # ARMs: 3x3 ConvModule to 128 + 1x1 conv + BN.
    total += 9 * cin * 128 + 256 + 128 * 128 + 256
  total += 2 * (9 * 128 * 128 + 256)  # convs_0, convs_1.
  total += 1024 * 128 + 256  # conv_avg.
  total += 384 * 256 + 512 + 256 * 64 + 64 * 256  # FFM.
  total += 9 * 256 * 256 + 512 + 256 * num_classes + num_classes  # Decode head.
  if heads:
    total += 2 * (9 * 128 * 64 + 128 + 64 * num_classes + num_classes)  # Two aux FCN heads.
    total += 9 * 256 * 64 + 128 + 64 + 1  # Detail head, one channel.
  return total


# mmseg 1.2.2, configs/stdc/stdc{1,2}_4xb12-80k_cityscapes-512x1024.py built with the registry:
# trainable parameters with all heads (its detail head has 2 output channels: 65 more than ours)
# and without the auxiliary heads (backbone + decode head).
MMSEG_COUNTS = {'stdc1': (8573019, 8275123), 'stdc2': (12603483, 12305587)}


@pytest.mark.parametrize('variant', ['stdc1', 'stdc2'])
def test_full_size_parameter_count(variant):
  """Without the auxiliary and detail heads built here; with them, the README table's row
  (built from its config and counted by tests/models/test_zoo.py)."""
  depths = stdc_backbone.STDC_ARCHS[variant]
  with_heads, without = MMSEG_COUNTS[variant]
  assert table_counts('stdc')[(variant, 19)] == _expected_params(depths, 19, True) == (
      with_heads - 65)
  model = stdc_model.stdc(variant, 19, aux_head=False)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = sum(leaf.size for leaf in jax.tree.leaves(shapes['params']))
  assert count == _expected_params(depths, 19, False) == without
