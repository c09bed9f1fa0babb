"""PSPNet, DeepLabV3, DeepLabV3+ (and HF's DeepLabV3-MobileNetV2), the ResNet and MobileNetV2
backbones: shapes and output strides, ASPP rates, parameter counts and names. (Inference, one
train step, randomness and BatchNorm updates of the tiny models: test_zoo.py; the adaptive
pooling: test_layers.py.)"""

import math
import re

import jax
import jax.numpy as jnp
import pytest

from semseg_jax.models.backbones.mobilenet_v2 import MobileNetV2
from semseg_jax.models.backbones.resnet import ResNet
from semseg_jax.models.deeplabv3 import deeplabv3
from semseg_jax.models.deeplabv3_mobilenet import deeplabv3_mobilenet
from semseg_jax.models.deeplabv3plus import deeplabv3plus
from semseg_jax.models import layers
from semseg_jax.models.heads.aspp_head import ASPPHead, DepthwiseSeparableASPPHead
from semseg_jax.models.pspnet import pspnet
from semseg_jax.tools import model_stats
from tests.helpers.param_trees import expand, modules
from tests.helpers.table_counts import table_counts

NUM_CLASSES = 5
CONSTRUCTORS = {'pspnet': pspnet, 'deeplabv3': deeplabv3, 'deeplabv3plus': deeplabv3plus}


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _down(n: int, times: int) -> int:
  """`times` PyTorch 3x3 stride-2 padding-1 convs/poolings: floor((n + 2 - 3) / 2) + 1 each."""
  for _ in range(times):
    n = (n + 2 - 3) // 2 + 1
  return n


def _abstract_variables(model, hw=(64, 64)):
  """Variable shapes, initialised in eval mode as train.py does."""
  return model_stats.abstract_variables(model, hw)


def _train_output_shapes(model, hw, batch=1):
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  out, _ = jax.eval_shape(
      lambda: model.init_with_output(rngs, jnp.zeros((batch, *hw, 3)), train=True))
  return out


# --- Shapes and output strides (abstract evaluation only) -------------------------------------

@pytest.mark.parametrize('name,variant,overrides,logits_downs,aux_downs', [
    ('pspnet', 'r18-d8', dict(channels=16), 3, 3),
    ('pspnet', 'mv2-d8', dict(channels=16), 3, 3),
    ('deeplabv3', 'r18-d8', dict(channels=16), 3, 3),
    ('deeplabv3', 'r18-d16', dict(channels=16), 4, 4),
    ('deeplabv3', 'r18v1-d16', dict(channels=16), 4, 4),
    ('deeplabv3plus', 'r18-d8', dict(channels=16, c1_channels=8), 2, 3),
    ('deeplabv3plus', 'r18-d16', dict(channels=16, c1_channels=8), 2, 4),
    ('deeplabv3plus', 'mv2-d8', dict(channels=16, c1_channels=8), 2, 3),
])
def test_output_strides_follow_pytorch_conv_arithmetic(name, variant, overrides, logits_downs,
                                                       aux_downs):
  """Logits at the head's input stride (2^downs: each halving rounds up like PyTorch's 3x3/2
  convs): stride 8 / 16 for PSPNet and DeepLabV3, 4 for DeepLabV3+; aux on stage 3. At 33 x 64
  every halving rounds the height up and divides the width exactly."""
  model = CONSTRUCTORS[name](variant, NUM_CLASSES, **overrides)
  h, w = 33, 64
  out = _train_output_shapes(model, (h, w))
  assert out['logits'].shape == (1, _down(h, logits_downs), _down(w, logits_downs),
                                 NUM_CLASSES)
  assert [a.shape for a in out['aux']] == [(1, _down(h, aux_downs), _down(w, aux_downs),
                                            NUM_CLASSES)]


def test_no_aux_head_and_bfloat16():
  model = deeplabv3plus('r18-d8', NUM_CLASSES, aux_head=False, dtype=jnp.bfloat16, channels=16,
                        c1_channels=8)
  out = _train_output_shapes(model, (40, 40))
  assert out['aux'] == []
  assert out['logits'].dtype == jnp.float32
  variables = _abstract_variables(model, (40, 40))
  assert set(variables['params']) == {'backbone', 'decode_head'}
  assert {x.dtype for x in jax.tree.leaves(variables['params'])} == {jnp.dtype(jnp.float32)}


def test_eval_mode_init_creates_aux_params():
  """train.py initialises with train=False; the auxiliary heads' parameters must exist then too
  (needs EncoderDecoder to run its auxiliary heads while initialising)."""
  model = pspnet('r18-d8', NUM_CLASSES, channels=16)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 33, 33, 3)), train=False))
  assert set(variables['params']) == {'backbone', 'decode_head', 'auxiliary_heads_0'}


# --- ASPP rates -------------------------------------------------------------------------------

def _conv_dilations(module, features) -> list[int]:
  """The rhs_dilation of every convolution `module` runs, in order (from its jaxpr, traced with
  every convolution as XLA's: on CPU, 1x1 and depthwise ones are otherwise other operations)."""
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), features))
  with layers.conv_lowering('xla'):
    jaxpr = str(jax.make_jaxpr(lambda v: module.apply(v, features))(variables))
  return [int(d) for d in re.findall(r'rhs_dilation=\((\d+), \d+\)', jaxpr)]


@pytest.mark.parametrize('constructor', [deeplabv3, deeplabv3plus])
def test_aspp_rates_follow_output_stride(constructor):
  assert constructor('r50-d8', 19).decode_head.dilations == (1, 12, 24, 36)
  assert constructor('r101-d16', 19).decode_head.dilations == (1, 6, 12, 18)
  assert constructor('mv2-d8', 19).decode_head.dilations == (1, 12, 24, 36)
  assert constructor('r50-d16', 19, dilations=(1, 3, 6)).decode_head.dilations == (1, 3, 6)
  with pytest.raises(ValueError, match='output stride 32'):
    constructor('r50', 19)


def test_aspp_branches_use_the_rates():
  features = [jnp.zeros((1, 20, 20, 16))]
  # image pool 1x1, rate-1 1x1, three 3x3 at the rates, 3x3 bottleneck, classifier.
  assert _conv_dilations(ASPPHead(NUM_CLASSES, channels=8, dilations=(1, 6, 12, 18)),
                         features) == [1, 1, 6, 12, 18, 1, 1]
  # Separable: each rate is a depthwise 3x3 (dilated) + pointwise 1x1; then c1 1x1, two
  # separable 3x3 (depthwise + pointwise each) and the classifier.
  head = DepthwiseSeparableASPPHead(NUM_CLASSES, channels=8, c1_channels=4,
                                    dilations=(1, 12, 24, 36))
  assert _conv_dilations(head, features * 2) == [1, 1, 12, 1, 24, 1, 36, 1, 1, 1, 1, 1, 1, 1,
                                                 1]


# --- MobileNetV2 ------------------------------------------------------------------------------

# torchvision's mobilenet_v2 has 3,504,872 parameters; without its final 1x1 conv 320 -> 1280
# (409,600 + BN 2 * 1280) and classifier Linear(1280, 1000) (1,280,000 + 1,000), which mmseg
# does not build: 3,504,872 - 412,160 - 1,281,000 = 1,811,712.
MOBILENET_V2_TRUNK = 3_504_872 - (320 * 1280 + 2 * 1280) - (1280 * 1000 + 1000)


def _mobilenet_v2_count_by_hand() -> int:
  """Stem conv + BN, then per block: expand 1x1 + BN (if t > 1), depthwise 3x3 + BN, project
  1x1 + BN."""
  total, c_in = 3 * 9 * 32 + 2 * 32, 32
  for t, c, n, _ in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                     (6, 160, 3, 2), (6, 320, 1, 1)):
    for _ in range(n):
      hidden = c_in * t
      total += (c_in * hidden + 2 * hidden if t > 1 else 0) + 9 * hidden + 2 * hidden
      total += hidden * c + 2 * c
      c_in = c
  return total


def test_mobilenet_v2_trunk_matches_torchvision_and_strides():
  assert MOBILENET_V2_TRUNK == _mobilenet_v2_count_by_hand() == 1_811_712
  images = jnp.zeros((1, 37, 53, 3))
  for output_stride, downs in ((8, (2, 3, 3, 3)), (16, (2, 3, 4, 4)), (32, (2, 3, 4, 5))):
    backbone = MobileNetV2(output_stride=output_stride)
    feats, variables = jax.eval_shape(
        lambda: backbone.init_with_output(jax.random.key(0), images))
    assert _count(variables['params']) == MOBILENET_V2_TRUNK
    assert [f.shape for f in feats] == [(1, _down(37, d), _down(53, d), c)
                                        for d, c in zip(downs, (24, 32, 96, 320))]
  half = MobileNetV2(widen_factor=0.5, out_indices=(0, 6))
  feats = jax.eval_shape(lambda: half.init_with_output(jax.random.key(0), images)[0])
  assert [f.shape[-1] for f in feats] == [8, 160]


def test_mobilenet_v2_dilates_first_block_of_each_layer_only():
  """mmseg's M-V2-D8: dilations (1, 1, 1, 2, 2, 4, 4) go to the first block of layers 4-7."""
  dilations = _conv_dilations(MobileNetV2(output_stride=8), jnp.zeros((1, 32, 32, 3)))
  assert len(dilations) == 1 + 2 + 3 * 16  # stem, the t = 1 block, 16 blocks with expansion
  assert sorted(d for d in dilations if d > 1) == [2, 2, 4, 4]


# --- Parameter counts of the full-size models --------------------------------------------------

# ResNet trunks (torchvision's total minus its fc, plus V1c's deep stem: 3x3 convs 3->32->32->64
# with BN = 28,768 instead of the 7x7 conv + BN's 9,536, i.e. + 19,232):
RESNET50_V1C = 25_557_032 - (2048 * 1000 + 1000) + 19_232    # 23,527,264
RESNET101_V1C = 44_549_160 - (2048 * 1000 + 1000) + 19_232   # 42,519,392
BACKBONES = {'r50-d8': RESNET50_V1C, 'r101-d8': RESNET101_V1C, 'r101-d16': RESNET101_V1C,
             'mv2-d8': MOBILENET_V2_TRUNK}


def _conv_module(c_in: int, c_out: int, k: int) -> int:
  return c_in * c_out * k * k + 2 * c_out


def _separable(c_in: int, c_out: int) -> int:
  # depthwise 3x3 (9 weights per channel) + BN, pointwise 1x1 ConvModule.
  return 9 * c_in + 2 * c_in + _conv_module(c_in, c_out, 1)


def _psp_head(c_in: int, channels: int = 512) -> int:
  # 4 pooled 1x1 ConvModules; 3x3 bottleneck on the input + 4 levels.
  return 4 * _conv_module(c_in, channels, 1) + _conv_module(c_in + 4 * channels, channels, 3)


def _aspp_head(c_in: int, channels: int = 512) -> int:
  # image pool 1x1, rate-1 1x1, three 3x3, 3x3 bottleneck on 5 * channels.
  return (2 * _conv_module(c_in, channels, 1) + 3 * _conv_module(c_in, channels, 3)
          + _conv_module(5 * channels, channels, 3))


def _sep_aspp_head(c_in: int, c1_in: int, channels: int = 512, c1: int = 48) -> int:
  # image pool, rate-1 1x1, three separable branches, 3x3 bottleneck, c1 1x1, two separable.
  return (2 * _conv_module(c_in, channels, 1) + 3 * _separable(c_in, channels)
          + _conv_module(5 * channels, channels, 3) + _conv_module(c1_in, c1, 1)
          + _separable(channels + c1, channels) + _separable(channels, channels))


HEADS = {  # (decode head without classifier, auxiliary head without classifier)
    ('pspnet', 'resnet'): (_psp_head(2048), _conv_module(1024, 256, 3)),
    ('pspnet', 'mv2'): (_psp_head(320), _conv_module(96, 256, 3)),
    ('deeplabv3', 'resnet'): (_aspp_head(2048), _conv_module(1024, 256, 3)),
    ('deeplabv3', 'mv2'): (_aspp_head(320), _conv_module(96, 256, 3)),
    ('deeplabv3plus', 'resnet'): (_sep_aspp_head(2048, 256), _conv_module(1024, 256, 3)),
    ('deeplabv3plus', 'mv2'): (_sep_aspp_head(320, 24), _conv_module(96, 256, 3)),
}

# Totals with the auxiliary head at 19 / 150 classes (classifiers: 513 C decode, 257 C aux).
EXPECTED_WITH_AUX = {
    ('pspnet', 'r50-d8', 19): 48_975_494,
    ('pspnet', 'r101-d8', 19): 67_967_622,
    ('pspnet', 'mv2-d8', 150): 13_721_132,
    ('deeplabv3', 'r50-d8', 19): 68_113_030,
    ('deeplabv3', 'r101-d16', 150): 87_206_028,
    ('deeplabv3', 'mv2-d8', 19): 18_602_022,
    ('deeplabv3plus', 'r50-d8', 150): 43_690_748,
    ('deeplabv3plus', 'r101-d8', 19): 62_582_006,
    ('deeplabv3plus', 'mv2-d8', 19): 15_244_374,
}


def test_head_arithmetic_sums_to_the_totals():
  for (name, variant, classes), total in EXPECTED_WITH_AUX.items():
    decode, aux = HEADS[(name, 'mv2' if variant.startswith('mv2') else 'resnet')]
    assert BACKBONES[variant] + decode + aux + 770 * classes == total, (name, variant, classes)


def _in_table(name: str, variant: str, classes: int) -> bool:
  return (variant, classes) in table_counts(name)


def test_the_model_table_holds_these_counts():
  """Those of the counts above that the README table holds are its figures (its rows are built
  from their configs and counted by tests/models/test_zoo.py)."""
  held = {key: n for key, n in EXPECTED_WITH_AUX.items() if _in_table(*key)}
  assert set(EXPECTED_WITH_AUX) - set(held) == {('deeplabv3', 'r101-d16', 150),
                                                ('deeplabv3', 'mv2-d8', 19)}
  assert all(table_counts(name)[(variant, classes)] == n
             for (name, variant, classes), n in held.items())


@pytest.mark.parametrize('name,variant,classes',
                         sorted(key for key in EXPECTED_WITH_AUX if not _in_table(*key)))
def test_full_size_param_counts(name, variant, classes):
  """Backbone, decode head and auxiliary head apart, for the sizes the table does not hold."""
  model = CONSTRUCTORS[name](variant, classes)
  params = _abstract_variables(model)['params']
  kind = 'mv2' if variant.startswith('mv2') else 'resnet'
  decode, aux = HEADS[(name, kind)]
  assert _count(params['backbone']) == BACKBONES[variant]
  assert _count(params['decode_head']) == decode + 513 * classes
  assert _count(params['auxiliary_heads_0']) == aux + 257 * classes
  assert _count(params) == EXPECTED_WITH_AUX[(name, variant, classes)]


def test_param_names():
  def tree(name, variant):
    return _abstract_variables(CONSTRUCTORS[name](variant, NUM_CLASSES, channels=16))['params']
  psp = tree('pspnet', 'r18-d8')
  assert set(psp) == {'backbone', 'decode_head', 'auxiliary_heads_0'}
  assert set(psp['decode_head']) == {'psp_modules_0', 'psp_modules_1', 'psp_modules_2',
                                     'psp_modules_3', 'bottleneck', 'classifier'}
  assert set(psp['auxiliary_heads_0']) == {'convs_0', 'classifier'}
  aspp = tree('deeplabv3', 'r18-d8')['decode_head']
  assert set(aspp) == {'image_pool', 'aspp_modules_0', 'aspp_modules_1', 'aspp_modules_2',
                       'aspp_modules_3', 'bottleneck', 'classifier'}
  assert aspp['aspp_modules_0']['conv']['kernel'].shape == (1, 1, 512, 16)
  sep = tree('deeplabv3plus', 'mv2-d8')
  assert set(sep['decode_head']) == {'image_pool', 'aspp_modules_0', 'aspp_modules_1',
                                     'aspp_modules_2', 'aspp_modules_3', 'bottleneck',
                                     'c1_bottleneck', 'sep_bottleneck_0', 'sep_bottleneck_1',
                                     'classifier'}
  branch = sep['decode_head']['aspp_modules_1']
  assert branch['depthwise_conv']['conv']['kernel'].shape == (3, 3, 1, 320)
  assert branch['pointwise_conv']['conv']['kernel'].shape == (1, 1, 320, 16)
  assert sep['decode_head']['c1_bottleneck']['conv']['kernel'].shape == (1, 1, 24, 48)
  mv2 = sep['backbone']
  assert set(mv2) == {'conv1'} | {f'layer{i + 1}_block{j}' for i, n in
                                  enumerate((1, 2, 3, 4, 3, 3, 1)) for j in range(n)}
  assert set(mv2['layer1_block0']) == {'depthwise_conv', 'linear_conv'}
  assert set(mv2['layer2_block0']) == {'expand_conv', 'depthwise_conv', 'linear_conv'}
  assert modules(mv2) == expand(
      'conv1/{conv,bn}', 'layer1_block0/{depthwise,linear}_conv/{conv,bn}',
      *[f'layer{i + 1}_block{{0..{n - 1}}}/{{expand,depthwise,linear}}_conv/{{conv,bn}}'
        for i, n in enumerate((1, 2, 3, 4, 3, 3, 1)) if i])
  # Every ConvModule is conv + bn (mmseg's names), the classifiers conv_seg.
  assert modules(psp['decode_head']) == expand('{psp_modules_{0..3},bottleneck}/{conv,bn}',
                                               'classifier/conv_seg')
  assert modules(psp['auxiliary_heads_0']) == expand('convs_0/{conv,bn}', 'classifier/conv_seg')
  assert modules(tree('deeplabv3', 'r18-d8')['decode_head']) == expand(
      '{image_pool,aspp_modules_{0..3},bottleneck}/{conv,bn}', 'classifier/conv_seg')
  # Separable: the rate-1 branch a plain ConvModule, the dilated ones and the decoder's
  # depthwise + pointwise ConvModules.
  assert modules(sep['decode_head']) == expand(
      '{image_pool,aspp_modules_0,bottleneck,c1_bottleneck}/{conv,bn}',
      '{aspp_modules_{1..3},sep_bottleneck_{0..1}}/{depthwise,pointwise}_conv/{conv,bn}',
      'classifier/conv_seg')


@pytest.mark.parametrize('deep_stem', [False, True])
def test_resnet_param_names(deep_stem):
  """v1: conv1 + bn1; v1c: the three-conv deep stem; then each block's convs and BNs, with a
  projection shortcut where the shape changes (names the converters map)."""
  bottleneck = _abstract_variables(ResNet(50, deep_stem=deep_stem, output_stride=32))['params']
  stem = 'stem_{conv,bn}{1..3}' if deep_stem else '{conv,bn}1'
  assert modules(bottleneck) == expand(
      stem, 'layer1_block{0..2}/{conv,bn}{1..3}', 'layer2_block{0..3}/{conv,bn}{1..3}',
      'layer3_block{0..5}/{conv,bn}{1..3}', 'layer4_block{0..2}/{conv,bn}{1..3}',
      'layer{1..4}_block0/downsample_{conv,bn}')
  basic = _abstract_variables(ResNet(18, deep_stem=deep_stem, output_stride=8))['params']
  assert modules(basic) == expand(stem, 'layer{1..4}_block{0..1}/{conv,bn}{1..2}',
                                  'layer{2..4}_block0/downsample_{conv,bn}')


def test_deeplabv3_mobilenet_param_names():
  """Hugging Face's names (`layer_{i}` is its `layer.{i}`): conv + BN as convolution +
  normalization, no expansion in the stem (first_layer_is_expansion) nor its final conv."""
  params = _abstract_variables(deeplabv3_mobilenet('0.35-os8', NUM_CLASSES))['params']
  conv_bn = '{convolution,normalization}'
  assert modules(params['backbone']) == expand(
      f'conv_stem/{{first_conv,conv_3x3,reduce_1x1}}/{conv_bn}',
      f'layer_{{0..15}}/{{expand_1x1,conv_3x3,reduce_1x1}}/{conv_bn}')
  assert modules(params['segmentation_head']) == expand(
      f'{{conv_pool,conv_aspp,conv_projection}}/{conv_bn}', 'classifier/convolution')
  params = _abstract_variables(deeplabv3_mobilenet('0.35-os8', NUM_CLASSES, final_conv=True,
                                                   first_layer_is_expansion=False))['params']
  assert {'conv_stem/expand_1x1/convolution', 'conv_1x1/normalization'} <= modules(
      params['backbone'])


def test_invalid_options():
  with pytest.raises(ValueError, match="'r50-x8'.*mv2"):
    pspnet('r50-x8', 19)
  with pytest.raises(ValueError, match="'mv3-d8'"):
    deeplabv3('mv3-d8', 19)
  with pytest.raises(ValueError, match='multi_grid'):
    deeplabv3plus('mv2-d8', 19, multi_grid=(1, 2, 4))
