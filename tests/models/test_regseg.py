"""RegSeg: parameter counts and names against the official PyTorch module, shapes at odd sizes,
the model contract on a shrunken model, and the dilated group conv against NumPy brute force
(the ceil-mode average pool of its shortcuts is tested in test_layers.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.regseg import EXP48_DILATIONS, DilatedGroupConv, SqueezeExcite, regseg
from semseg_jax.tools import model_stats
from tests.helpers.param_trees import expand, modules

TINY = dict(widths=(8, 16, 16, 32, 48), depths=(1, 1), group_width=8,
            stage16_dilations=((1, 4),), decoder_widths=(16, 8, 16, 16))
TINY_BODY = {k: v for k, v in TINY.items() if k != 'decoder_widths'}
HW = (45, 61)
NUM_CLASSES = 5


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _abstract_variables(model, hw=(64, 64)):
  return model_stats.abstract_variables(model, hw)


def _abstract_logits_shape(model, hw):
  variables = _abstract_variables(model, hw)
  images = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
  return jax.eval_shape(lambda v, x: model.apply(v, x)['logits'], variables, images).shape


def _dblock_params(c_in: int, c_out: int, group_width: int, stride: int) -> int:
  """One D block by hand: 1x1 conv, grouped 3x3 conv(s) (c_out * group_width * 9 whatever the
  split), 1x1 conv, 3 BNs, SE with biases (squeeze c_in // 4), projection shortcut + BN."""
  se = c_in // 4
  params = c_in * c_out + c_out * group_width * 9 + c_out * c_out + 3 * 2 * c_out
  params += (c_out * se + se) + (se * c_out + c_out)
  if stride != 1 or c_in != c_out:
    params += c_in * c_out + 2 * c_out
  return params


def _exp48_decoder26_params(num_classes: int) -> int:
  """exp48_decoder26 by hand, from blocks.py/model.py of RolandGao/RegSeg."""
  stem = 3 * 32 * 9 + 2 * 32                                      # 928
  stage4 = _dblock_params(32, 48, 16, 2)                           # 13,496
  stage8 = _dblock_params(48, 128, 16, 2) + 2 * _dblock_params(128, 128, 16, 1)  # 171,980
  stage16 = (_dblock_params(128, 256, 16, 2) + 12 * _dblock_params(256, 256, 16, 1)
             + _dblock_params(256, 320, 16, 1))                    # 2,973,600
  conv_bn = lambda c_in, c_out, k: c_in * c_out * k * k + 2 * c_out  # noqa: E731
  decoder = (conv_bn(320, 128, 1) + conv_bn(128, 128, 1) + conv_bn(48, 8, 1)
             + conv_bn(128, 64, 3) + conv_bn(72, 64, 3))           # 173,712
  return stem + stage4 + stage8 + stage16 + decoder + 64 * num_classes + num_classes


def test_parameter_count_matches_official_module():
  # sum(p.numel()) of RolandGao/RegSeg's RegSeg("exp48_decoder26", 19) is 3,334,951 (the
  # paper's 3.34M): 3,333,716 + 65 per class.
  assert _exp48_decoder26_params(19) == 3_334_951
  variables = _abstract_variables(regseg('exp48_decoder26', 19))
  assert _count(variables['params']) == 3_334_951
  assert _count(variables['batch_stats']) == 26_832  # running means and variances
  for num_classes in (11, 21, 150):
    params = _abstract_variables(regseg('exp48_decoder26', num_classes))['params']
    assert _count(params) == _exp48_decoder26_params(num_classes) == 3_333_716 + 65 * num_classes


@pytest.mark.parametrize('variant, expected', [
    ('exp48_decoder4', 3_392_407), ('exp48_decoder14', 3_368_023),
    ('exp53_decoder29', 6_131_579)])
def test_other_variants_match_official_counts(variant, expected):
  # sum(p.numel()) of the official RegSeg(variant, 19).
  assert _count(_abstract_variables(regseg(variant, 19))['params']) == expected


def test_layout_and_dilations():
  params = _abstract_variables(regseg('exp48_decoder26', 19))['params']
  assert sorted(params) == ['body', 'decoder', 'stem']
  body = params['body']
  assert len([k for k in body if k.startswith('stage16_')]) == 1 + len(EXP48_DILATIONS) == 14
  assert sorted(body['stage16_13']['conv2']) == ['convs_0', 'convs_1']
  assert body['stage16_13']['conv2']['convs_1']['kernel'].shape == (3, 3, 16, 160)
  assert body['stage4_0']['se']['conv1']['kernel'].shape == (1, 1, 48, 8)  # squeeze 32 // 4
  assert sorted(params['decoder']) == ['classifier', 'conv4', 'conv8', 'head16', 'head4',
                                       'head8']
  # The reference's state_dict names (Sequential indices as _i): a D block is conv1/bn1, conv2
  # (one grouped conv, or convs_{j} per dilation)/bn2, se, conv3/bn3 and a projection shortcut
  # where the shape changes.
  block = '{conv1,bn1,bn2,se/conv1,se/conv2,conv3,bn3}'
  assert modules(params) == expand(
      'stem/{conv,bn}', f'body/{{stage4_0,stage8_{{0..2}},stage16_{{0..13}}}}/{block}',
      'body/{stage4_0,stage8_{0..2},stage16_{0..1}}/conv2',
      'body/stage16_{2..13}/conv2/convs_{0..1}',
      'body/{stage4_0,stage8_0,stage16_0,stage16_13}/shortcut/{conv,bn}',
      'decoder/{head16,head8,head4,conv8,conv4}/{conv,bn}', 'decoder/classifier')
  sum_decoder = _abstract_variables(regseg('exp48_decoder14', 19, **TINY_BODY))['params']
  assert modules(sum_decoder['decoder']) == expand('{head16,head8,conv}/{conv,bn}', 'classifier')


def test_output_stride_follows_torch_conv_arithmetic():
  # Each stride-2 3x3 conv (padding 1) maps n -> (n - 1) // 2 + 1, the ceil-mode pool the same.
  # At 33 x 64 the height rounds up at every halving and the width divides exactly.
  hw = (33, 64)
  quarter = tuple((((n - 1) // 2) // 2) + 1 for n in hw)
  eighth = tuple((n - 1) // 2 + 1 for n in quarter)
  assert _abstract_logits_shape(regseg('exp48_decoder26', 19), hw) == (1, *quarter, 19)
  assert _abstract_logits_shape(regseg('exp48_decoder4', 19, **TINY_BODY), hw) == (1, *eighth, 19)


def test_tiny_model_training_shapes_and_batch_norms():
  """Training shapes from the init's trace. Inference and what the training forward computes
  (finite logits, every BatchNorm statistic following the batch, no randomness: RegSeg has no
  dropout) are checked on the same tiny model by test_zoo.py."""
  model = regseg('exp48_decoder26', NUM_CLASSES, **TINY)
  images = jax.ShapeDtypeStruct((2, *HW, 3), jnp.float32)
  out, variables = jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(1), x, train=True), images)
  quarter = (12, 16)  # 45 -> 23 -> 12, 61 -> 31 -> 16
  assert out['logits'].shape == (2, *quarter, NUM_CLASSES)
  assert out['logits'].dtype == jnp.float32
  assert out['aux'] == []
  for path in (('stem', 'bn'), ('body', 'stage16_1', 'bn2'), ('decoder', 'conv4', 'bn')):
    stats = variables['batch_stats']
    for key in path:
      stats = stats[key]
    assert set(stats) == {'mean', 'var'}


def test_convolutions_keep_pytorch_default_init():
  """The reference leaves its convs at PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  for weights and biases (here the squeeze-excite's first conv, fan_in 16)."""
  se = jax.jit(SqueezeExcite(4).init)(jax.random.key(1), jnp.zeros((1, 3, 3, 16)))
  bound = 1 / math.sqrt(16)
  for leaf in (se['params']['conv1']['kernel'], se['params']['conv1']['bias']):
    assert float(jnp.abs(leaf).max()) <= bound and float(jnp.abs(leaf).max()) > bound / 2


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = regseg('exp48_decoder26', NUM_CLASSES, dtype=jnp.bfloat16, **TINY)
  variables = _abstract_variables(model, HW)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  images = jax.ShapeDtypeStruct((1, *HW, 3), jnp.float32)
  out = jax.eval_shape(lambda v, x: model.apply(v, x)['logits'], variables, images)
  assert out.dtype == jnp.float32


def test_bad_variant():
  with pytest.raises(ValueError, match='exp48_decoder26'):
    regseg('exp48_decoder99', 19)


def _brute_group_conv(x, kernel, stride, dilation, groups):
  """Cross-correlation by definition, zero padding `dilation` per side; NHWC x, HWIO kernel."""
  n, h, w, c = x.shape
  c_out = kernel.shape[-1]
  xp = np.pad(x, ((0, 0), (dilation, dilation), (dilation, dilation), (0, 0)))
  oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
  c_in_g, c_out_g = c // groups, c_out // groups
  out = np.zeros((n, oh, ow, c_out))
  for g in range(groups):
    for y in range(oh):
      for x_ in range(ow):
        for ky in range(3):
          for kx in range(3):
            patch = xp[:, y * stride + ky * dilation, x_ * stride + kx * dilation,
                       g * c_in_g:(g + 1) * c_in_g]
            out[:, y, x_, g * c_out_g:(g + 1) * c_out_g] += (
                patch @ kernel[ky, kx, :, g * c_out_g:(g + 1) * c_out_g])
  return out


@pytest.mark.parametrize('stride', [1, 2])
def test_dilated_group_conv_against_brute_force(stride):
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, 7, 9, 8)))
  module = DilatedGroupConv((1, 3), group_width=2, stride=stride)
  variables = module.init(jax.random.key(1), x)
  got = np.asarray(jax.jit(module.apply)(variables, x))
  convs = variables['params']
  want = np.concatenate([
      _brute_group_conv(x[..., :4], np.asarray(convs['convs_0']['kernel']), stride, 1, 2),
      _brute_group_conv(x[..., 4:], np.asarray(convs['convs_1']['kernel']), stride, 3, 2)],
      axis=-1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

