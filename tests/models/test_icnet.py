"""ICNet: the whole forward (R-18 trunk, three branches, pyramid pooling, cascade feature fusion,
the decode and label-guidance heads) against a NumPy transcription of mmseg's ICNet at odd
sizes, its half-resolution resize against PyTorch's interpolate(scale_factor=0.5), and
full-size parameter counts by mmseg's layer lists.
(A train step, BatchNorm in training: test_zoo.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax.models.backbones.resnet import halve
from semseg_jax.models.icnet import icnet
from tests.helpers import host_init
from tests.helpers.torch_reference import np_batch_norm, np_bilinear, np_conv2d, np_max_pool

NUM_CLASSES = 5
NARROW = dict(light_channels=8, branch_channels=(8, 16, 16), psp_channels=16,
              fusion_channels=16)
HW = (73, 101)


def _relu(x):
  return np.maximum(x, 0)


def _bn_running(x, p, s):
  return np_batch_norm(x, p, s)


def _bn_batch(x, p, s):
  """BatchNorm in training: the batch's mean and (biased) variance."""
  del s
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  return np_batch_norm(x, p, {'mean': mean, 'var': var})


def _np_conv_module(x, p, s, bn, stride=1, dilation=1):
  """mmcv's ConvModule: conv (no bias, padding dilation * (k - 1) / 2), BN, ReLU."""
  k = p['conv']['kernel'].shape[0]
  pad = dilation * (k - 1) // 2
  y = np_conv2d(x, p['conv']['kernel'], stride, (pad, pad), (dilation, dilation))
  return _relu(bn(y, p['bn'], s['bn']))


def _np_basic_block(x, p, s, bn, stride, dilation):
  """mmseg's BasicBlock: 3x3 conv (strided, dilated) BN ReLU, 3x3 conv BN, + shortcut, ReLU."""
  conv = lambda y, name, st, d: np_conv2d(y, p[name]['kernel'], st, (d, d), (d, d))
  y = _relu(bn(conv(x, 'conv1', stride, dilation), p['bn1'], s['bn1']))
  y = bn(conv(y, 'conv2', 1, 1), p['bn2'], s['bn2'])
  if 'downsample_conv' in p:
    x = bn(np_conv2d(x, p['downsample_conv']['kernel'], stride), p['downsample_bn'],
           s['downsample_bn'])
  return _relu(x + y)


def _np_interpolate_half(x):
  """F.interpolate(x, scale_factor=0.5, mode='bilinear', align_corners=False) by its
  definition: output size floor(n / 2), source coordinate (i + 0.5) / 0.5 - 0.5, two taps."""
  def axis(y, dim):
    n = y.shape[dim]
    src = np.maximum((np.arange(n // 2) + 0.5) * 2 - 0.5, 0)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = (src - lo).reshape([-1 if d == dim else 1 for d in range(y.ndim)])
    return np.take(y, lo, dim) * (1 - w) + np.take(y, hi, dim) * w
  return axis(axis(x, 1), 2)


def _np_adaptive_avg_pool(x, bins):
  """AdaptiveAvgPool2d(bins): bin i spans [floor(i n / b), ceil((i + 1) n / b))."""
  h, w = x.shape[1:3]
  edges = lambda n: [(i * n // bins, -(-(i + 1) * n // bins)) for i in range(bins)]
  return np.stack([np.stack([x[:, a:b, c:d].mean(axis=(1, 2)) for c, d in edges(w)], 1)
                   for a, b in edges(h)], 1)


def _np_icnet(x, p, s, bn):
  """mmseg's ICNet + ICNeck + FCN heads (dropout off), BatchNorm by `bn`: (decode logits,
  [label-guidance logits at 1/16, at 1/8])."""
  sub1 = x
  for i in range(3):
    sub1 = _np_conv_module(sub1, p[f'conv_sub1_{i}'], s[f'conv_sub1_{i}'], bn, stride=2)
  bp, bs = p['backbone'], s['backbone']
  y = _np_interpolate_half(x)
  for i in range(1, 4):
    y = np_conv2d(y, bp[f'stem_conv{i}']['kernel'], 2 if i == 1 else 1, (1, 1))
    y = _relu(bn(y, bp[f'stem_bn{i}'], bs[f'stem_bn{i}']))
  y = np_max_pool(y, 3, 2, padding=1, ceil_mode=True)
  stages = []
  for stage, (stride, dilations) in enumerate(((1, (1, 1)), (2, (1, 1)), (1, (1, 2)),
                                               (1, (2, 4))), start=1):
    if stage == 3:
      y = _np_interpolate_half(y)
    for j, d in enumerate(dilations):
      name = f'layer{stage}_block{j}'
      y = _np_basic_block(y, bp[name], bs[name], bn, stride if j == 0 else 1, d)
    stages.append(y)
  sub2 = _np_conv_module(stages[1], p['conv_sub2'], s['conv_sub2'], bn)
  top = stages[3]
  levels = [np_bilinear(_np_conv_module(_np_adaptive_avg_pool(top, bins),
                                        p[f'psp_modules_{i}'], s[f'psp_modules_{i}'], bn),
                        *top.shape[1:3])
            for i, bins in enumerate((1, 2, 3, 6))]
  top = _np_conv_module(np.concatenate([*levels, top], -1), p['psp_bottleneck'],
                        s['psp_bottleneck'], bn)
  sub4 = _np_conv_module(top, p['conv_sub4'], s['conv_sub4'], bn)

  def cff(low, high, name):
    low = _np_conv_module(np_bilinear(low, *high.shape[1:3]), p[name]['conv_low'],
                          s[name]['conv_low'], bn, dilation=2)
    high = _np_conv_module(high, p[name]['conv_high'], s[name]['conv_high'], bn)
    return _relu(low + high), low

  fused24, guide24 = cff(sub4, sub2, 'cff_24')
  fused12, guide12 = cff(fused24, sub1, 'cff_12')

  def fcn_head(features, name):
    y = _np_conv_module(features, p[name]['convs_0'], s[name]['convs_0'], bn)
    classifier = p[name]['classifier']['conv_seg']
    return np_conv2d(y, classifier['kernel'], bias=classifier['bias'])

  return (fcn_head(fused12, 'decode_head'),
          [fcn_head(guide24, 'auxiliary_heads_0'), fcn_head(guide12, 'auxiliary_heads_1')])


def _variables_and_image(model, seed):
  variables = host_init.with_random_vectors(host_init.variables(model, HW))
  x = np.random.default_rng(seed).normal(size=(2, *HW, 3)).astype(np.float32)
  return variables, x


def test_inference_equals_a_numpy_transcription_of_mmseg_s_icnet():
  """R-18-D8 with narrow branches at 73 x 101: the trunk sees 36 x 50 (the image halved, the
  odd row and column dropped), its max pooling rounds 18 x 25 up to 10 x 13 (floor: 9 x 13),
  stage 2's 5 x 7 map is halved to 2 x 3 for stages 3-4; sub1 is 10 x 13. Logits at 1/8
  (10 x 13), no aux."""
  model = icnet('r18-d8', NUM_CLASSES, **NARROW)
  variables, x = _variables_and_image(model, 1)
  with jax.default_matmul_precision('highest'):
    out = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
  expected, _ = _np_icnet(x.astype(np.float64), variables['params'], variables['batch_stats'],
                          _bn_running)
  assert out['logits'].shape == expected.shape == (2, 10, 13, NUM_CLASSES) and out['aux'] == []
  np.testing.assert_allclose(out['logits'], expected, rtol=1e-4,
                             atol=1e-4 * np.abs(expected).max())


def test_training_outputs_equal_the_transcription_with_label_guidance():
  """In training (batch statistics, the heads' dropout off): the decode logits and the two
  label-guidance heads' logits, at 1/16 (5 x 7) on cff_24's convolved coarse map and at 1/8 on
  cff_12's."""
  model = icnet('r18-d8', NUM_CLASSES, aux_dropout_rate=0.0, **NARROW)
  variables, x = _variables_and_image(model, 2)
  with jax.default_matmul_precision('highest'):
    out, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(
        variables, x)
  expected, expected_aux = _np_icnet(x.astype(np.float64), variables['params'],
                                     variables['batch_stats'], _bn_batch)
  assert [a.shape for a in out['aux']] == [(2, 5, 7, NUM_CLASSES), (2, 10, 13, NUM_CLASSES)]
  for got, want in zip([out['logits'], *out['aux']], [expected, *expected_aux]):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_halving_is_pytorch_s_bilinear_interpolation_at_scale_half():
  """mmseg resizes with scale_factor=0.5, so PyTorch samples at 2 i + 0.5 (not at the
  size-ratio positions of an explicit-size resize, which differ at odd sizes)."""
  x = np.random.default_rng(0).normal(size=(2, 9, 14, 3)).astype(np.float32)
  np.testing.assert_allclose(halve(x), _np_interpolate_half(x.astype(np.float64)), rtol=1e-6,
                             atol=1e-6)
  assert halve(x).shape == (2, 4, 7, 3)


def _conv_module(c_in: int, c_out: int, k: int) -> int:
  return c_in * c_out * k * k + 2 * c_out


def _mmseg_count(depth: int, num_classes: int) -> int:
  """mmseg's icnet_r<depth>-d8 (ICNet backbone, ICNeck, FCN decode head, two FCN auxiliary
  heads), layer by layer: the ResNetV1c trunk (torchvision's resnet total minus its fc, plus
  the deep stem's 19,232), conv_sub1 (3 -> 32 -> 32 -> 64, 3x3), conv_sub2 (1x1 from stage 2),
  the PPM (4 x 1x1 to 512) and its 3x3 bottleneck (stage 4 + 4 x 512 -> 512), conv_sub4 (1x1
  512 -> 256), cff_24 (3x3 256 -> 128 beside 1x1 256 -> 128), cff_12 (3x3 128 -> 128 beside
  1x1 64 -> 128), three FCN heads (3x3 128 -> 128, classifier with bias)."""
  torchvision = {18: 11_689_512, 50: 25_557_032, 101: 44_549_160}[depth]
  c2, c4 = (128, 512) if depth == 18 else (512, 2048)
  trunk = torchvision - (c4 * 1000 + 1000) + 19_232
  branches = (_conv_module(3, 32, 3) + _conv_module(32, 32, 3) + _conv_module(32, 64, 3)
              + _conv_module(c2, 256, 1) + 4 * _conv_module(c4, 512, 1)
              + _conv_module(c4 + 4 * 512, 512, 3) + _conv_module(512, 256, 1))
  neck = (_conv_module(256, 128, 3) + _conv_module(256, 128, 1) + _conv_module(128, 128, 3)
          + _conv_module(64, 128, 1))
  heads = 3 * (_conv_module(128, 128, 3) + 128 * num_classes + num_classes)
  return trunk + branches + neck + heads


@pytest.mark.parametrize('variant, depth, expected', [('r18-d8', 18, 25_174_393),
                                                      ('r50-d8', 50, 47_827_833),
                                                      ('r101-d8', 101, 66_819_961)])
def test_full_size_parameter_count_is_mmseg_s(variant, depth, expected):
  model = icnet(variant, 19)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(variables['params']))
  assert count == _mmseg_count(depth, 19) == expected


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="'r34-d8'"):
    icnet('r34-d8', NUM_CLASSES)
