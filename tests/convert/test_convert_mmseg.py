"""mmsegmentation, torchvision and timm state dicts -> our models, tensor by tensor.

Every model is compared with the state dict of the real reference module: its keys and shapes
are in tests/convert/mmseg_state_dicts.json ({model: [[key, shape], ...]}), read once from
mmsegmentation 1.2.2 (mmengine 0.10, torch 2.13) and stored, so these tests need neither torch
nor mmseg. The state dicts are filled here with seeded random values (one seed per key), so
every assigned leaf can be compared with its source tensor after the expected layout change.

How the fixture was made (not run by the tests):
    configs = mmseg's package configs (site-packages/mmseg/.mim/configs/):
      fcn_r18-d8           fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py
      pspnet_r18-d8        pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py
      deeplabv3_r18-d8     deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py
      deeplabv3plus_r18-d8 deeplabv3plus/deeplabv3plus_r18-d8_4xb2-80k_cityscapes-512x1024.py
      upernet_r18          upernet/upernet_r18_4xb2-80k_cityscapes-512x1024.py
      segnext_mscan-t      segnext/segnext_mscan-t_1xb16-adamw-160k_ade20k-512x512.py
      fcn_mv2-d8           mobilenet_v2/mobilenet-v2-d8_fcn_4xb2-80k_cityscapes-512x1024.py
      deeplabv3_mv2-d8     mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb2-80k_cityscapes-512x1024.py
      stdc1                stdc/stdc1_4xb12-80k_cityscapes-512x1024.py
      bisenetv1_r18-d32    bisenetv1/bisenetv1_r18-d32_4xb4-160k_cityscapes-1024x1024.py
      bisenetv1_r50-d32    bisenetv1/bisenetv1_r50-d32_4xb4-160k_cityscapes-1024x1024.py
      bisenetv2            bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py
      segformer_mit-b0     segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py
    (the last five with their configs' class counts and auxiliary heads as they are; mmseg's
    SegFormer naming is not supported, and the tests check that loading it says so)
    sys.modules['mmcv.ops'] = a module with names point_sample, sigmoid_focal_loss, PSAMask,
        CrissCrossAttention set to None (mmcv-lite has no compiled ops; these models use none)
    import mmseg.models; mmengine.registry.init_default_scope('mmseg')
    for each config: cfg = mmengine.config.Config.fromfile(path).model.to_dict()
        cfg['pretrained'] = None; cfg['backbone'].pop('init_cfg', None)
        cfg['decode_head']['num_classes'] = cfg['auxiliary_head']['num_classes'] = 19
        every dict(type='SyncBN') -> 'BN'
        net = mmseg.registry.MODELS.build(cfg)
        fixture[name] = [[key, list(tensor.shape)] for key, tensor in net.state_dict().items()]
    json.dump(fixture, separators=(',', ':'))

The R-18 configs narrow the heads (decode channels 128, DeepLabV3+'s c1_channels 12, auxiliary
channels 64); our models take the first two as overrides and the auxiliary width by replacing
the auxiliary head.
"""

import functools
import json
import pathlib
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from semseg_jax import convert
from semseg_jax import models
from semseg_jax.convert import mmseg
from semseg_jax.convert import torch_layout
from semseg_jax.convert import torchvision_resnet
from semseg_jax.models.backbones.resnet import ResNet
from semseg_jax.models.layers import EncoderDecoder
from semseg_jax.models.heads.fcn_head import auxiliary_fcn_head

FIXTURE = pathlib.Path(__file__).parent / 'mmseg_state_dicts.json'
NUM_CLASSES = 19
R18_HEAD = dict(channels=128)


def _with_aux_channels(model: EncoderDecoder, channels: int) -> EncoderDecoder:
  return model.clone(auxiliary_heads=(auxiliary_fcn_head(NUM_CLASSES, channels=channels),))


# Fixture name -> our model with the reference config's settings.
OUR_MODELS: dict[str, Callable[[], nn.Module]] = {
    'fcn_r18-d8': lambda: _with_aux_channels(
        models.MODELS['fcn']('r18-d8', NUM_CLASSES, **R18_HEAD), 64),
    'pspnet_r18-d8': lambda: _with_aux_channels(
        models.MODELS['pspnet']('r18-d8', NUM_CLASSES, **R18_HEAD), 64),
    'deeplabv3_r18-d8': lambda: _with_aux_channels(
        models.MODELS['deeplabv3']('r18-d8', NUM_CLASSES, **R18_HEAD), 64),
    'deeplabv3plus_r18-d8': lambda: _with_aux_channels(
        models.MODELS['deeplabv3plus']('r18-d8', NUM_CLASSES, c1_channels=12, **R18_HEAD), 64),
    'upernet_r18': lambda: models.MODELS['upernet']('r18', NUM_CLASSES),
    'segnext_mscan-t': lambda: models.MODELS['segnext']('t', NUM_CLASSES),
    'fcn_mv2-d8': lambda: models.MODELS['fcn']('mv2-d8', NUM_CLASSES),
    'deeplabv3_mv2-d8': lambda: models.MODELS['deeplabv3']('mv2-d8', NUM_CLASSES),
    'stdc1': lambda: models.MODELS['stdc']('stdc1', NUM_CLASSES),
    'bisenetv1_r18-d32': lambda: models.MODELS['bisenetv1']('r18', NUM_CLASSES),
    'bisenetv1_r50-d32': lambda: models.MODELS['bisenetv1']('r50', NUM_CLASSES),
    'bisenetv2': lambda: models.MODELS['bisenetv2']('bisenetv2', NUM_CLASSES),
}
# Tensors of a reference with no counterpart here, and leaves of ours whose reference tensor has
# another shape: STDC's detail head (mmseg's STDCHead) has two outputs where ours has the
# paper's one, and fixed Laplacian/fusion kernels, which are constants here.
REALTIME = ('stdc1', 'bisenetv1_r18-d32', 'bisenetv1_r50-d32', 'bisenetv2')
STDC_DETAIL = 'auxiliary_head.2.'
UNUSED = {'stdc1': (STDC_DETAIL + 'fusion_kernel', STDC_DETAIL + 'laplacian_kernel')}
MISMATCHED = {'stdc1': ('params/detail_head/classifier/conv_seg/bias',
                        'params/detail_head/classifier/conv_seg/kernel')}


@functools.cache
def reference_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
  with open(FIXTURE) as f:
    return {name: {key: tuple(shape) for key, shape in entries}
            for name, entries in json.load(f).items()}


def abstract_variables(model: nn.Module) -> dict[str, Any]:
  """The model's variables as ShapeDtypeStructs (traced, not compiled)."""
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  return jax.eval_shape(lambda: model.init(rngs, jnp.zeros((1, 64, 64, 3)), train=False))


@functools.cache
def model_variables(name: str) -> dict[str, Any]:
  return abstract_variables(OUR_MODELS[name]())


def filled(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
  """A state dict of the given shapes, each tensor from its own seed (so values differ)."""
  return {key: np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
          for seed, (key, shape) in enumerate(sorted(shapes.items()))}


@functools.lru_cache(maxsize=1)  # Tests of one model run one after another.
def converted_model(name: str) -> tuple[dict[str, np.ndarray], torch_layout.Conversion]:
  """(the filled reference state dict, its conversion into our model with mmseg's names)."""
  state_dict = filled(reference_shapes()[name])
  return state_dict, torch_layout.convert_state_dict(state_dict, model_variables(name),
                                                     mmseg.model_naming(set(state_dict)))


def flat(tree: dict[str, Any]) -> dict[str, Any]:
  return {'/'.join(str(k.key) for k in path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def in_our_layout(tensor: np.ndarray, leaf_name: str) -> np.ndarray:
  """Conv2d weight [O, I/g, kh, kw] -> kernel [kh, kw, I/g, O]; Linear [O, I] -> [I, O];
  norm parameters, running statistics and other tensors as they are."""
  if leaf_name == 'kernel':
    return tensor.transpose(2, 3, 1, 0) if tensor.ndim == 4 else tensor.T
  return tensor


def assert_exact(conversion: torch_layout.Conversion, state_dict: dict[str, np.ndarray],
                 variables: dict[str, Any], unused: tuple[str, ...] = (),
                 mismatched: tuple[str, ...] = ()) -> None:
  """Nothing missing, mis-shaped (but our leaves `mismatched`) or left over (but `unused`);
  every other leaf of ours filled, each from a different tensor, equal to it in our layout."""
  assert conversion.missing == []
  assert sorted(m.leaf_path for m in conversion.mismatched) == sorted(mismatched)
  assert conversion.unused == sorted(unused)
  assert sorted(conversion.assigned) == sorted(set(flat(variables)) - set(mismatched))
  assert len(set(conversion.assigned.values())) == len(conversion.assigned)
  expected_sources = {k for k in state_dict if not k.endswith('num_batches_tracked')}
  assert set(conversion.assigned.values()) == (expected_sources - set(unused)
                                               - {m.key for m in conversion.mismatched})
  converted = flat(conversion.variables)
  for leaf_path, key in conversion.assigned.items():
    expected = in_our_layout(state_dict[key], leaf_path.rsplit('/', 1)[1])
    assert converted[leaf_path].shape == expected.shape, (leaf_path, key)
    np.testing.assert_array_equal(converted[leaf_path], expected, err_msg=f'{leaf_path} {key}')


def subtree(variables: dict[str, Any], part: str) -> dict[str, Any]:
  return {collection: tree[part] for collection, tree in variables.items() if part in tree}


@pytest.mark.parametrize('name', sorted(OUR_MODELS))
def test_whole_model_converts_exactly(name):
  state_dict, conversion = converted_model(name)
  assert_exact(conversion, state_dict, model_variables(name), UNUSED.get(name, ()),
               MISMATCHED.get(name, ()))


@pytest.mark.parametrize('name', sorted(OUR_MODELS))
def test_mmseg_detects_its_files(name):
  keys = set(reference_shapes()[name])
  backbone_keys = {k.removeprefix('backbone.') for k in keys if k.startswith('backbone.')}
  # STDC and BiSeNet have no open-mmlab backbone files (BiSeNet V1's ResNets are detected as
  # ResNets), so only their whole models need detecting.
  assert mmseg.detect(keys) and (mmseg.detect(backbone_keys) or name in REALTIME)
  assert not torchvision_resnet.detect(keys) and not torchvision_resnet.detect_timm(keys)


# (model, mmseg key, our leaf), written out by hand from mmseg's module structure.
SPOT_CHECKS = [
    ('stdc1', 'backbone.backbone.stages.2.1.layers.3.conv.weight',
     'params/backbone/stdc_net/stages_2/blocks_1/layers_3/conv/kernel'),
    ('stdc1', 'backbone.ffm.attention.2.conv.weight', 'params/backbone/ffm/attention_expand/kernel'),
    ('stdc1', 'backbone.arms.1.atten_conv_layer.1.bn.running_var',
     'batch_stats/backbone/arms_1/atten_conv_layer/bn/var'),
    ('stdc1', 'auxiliary_head.2.convs.0.conv.weight', 'params/detail_head/convs_0/conv/kernel'),
    ('stdc1', 'auxiliary_head.1.convs.0.bn.weight', 'params/auxiliary_heads_1/convs_0/bn/scale'),
    ('bisenetv1_r18-d32', 'backbone.context_path.gap_conv.1.bn.running_mean',
     'batch_stats/backbone/context_path/gap_conv/bn/mean'),
    ('bisenetv1_r18-d32', 'backbone.context_path.backbone.layer3.1.conv2.weight',
     'params/backbone/context_path/backbone/layer3_block1/conv2/kernel'),
    ('bisenetv1_r18-d32', 'backbone.ffm.conv_atten.0.conv.weight',
     'params/backbone/ffm/conv_atten/conv/kernel'),
    ('bisenetv2', 'backbone.detail.detail_branch.2.1.conv.weight',
     'params/backbone/detail/stage3_1/conv/kernel'),
    ('bisenetv2', 'backbone.semantic.stage4_CEBlock.gap.1.running_mean',
     'batch_stats/backbone/semantic/ce_block/gap_bn/mean'),
    ('bisenetv2', 'backbone.semantic.stage3.0.dwconv.1.conv.weight',
     'params/backbone/semantic/stage3_0/dwconv_1/conv/kernel'),
    ('bisenetv2', 'backbone.semantic.stage3.1.conv2.0.bn.weight',
     'params/backbone/semantic/stage3_1/conv2/bn/scale'),
    ('bisenetv2', 'backbone.bga.semantic_dwconv.0.pointwise_conv.conv.weight',
     'params/backbone/bga/semantic_dwconv/pointwise_conv/kernel'),
    ('bisenetv2', 'auxiliary_head.3.convs.1.conv.weight',
     'params/auxiliary_heads_3/convs_1/conv/kernel'),
    ('pspnet_r18-d8', 'decode_head.psp_modules.2.1.conv.weight',
     'params/decode_head/psp_modules_2/conv/kernel'),
    ('pspnet_r18-d8', 'decode_head.psp_modules.0.1.bn.running_mean',
     'batch_stats/decode_head/psp_modules_0/bn/mean'),
    ('pspnet_r18-d8', 'backbone.layer4.1.bn1.running_mean',
     'batch_stats/backbone/layer4_block1/bn1/mean'),
    ('pspnet_r18-d8', 'backbone.stem.3.weight', 'params/backbone/stem_conv2/kernel'),
    ('pspnet_r18-d8', 'backbone.stem.7.running_var', 'batch_stats/backbone/stem_bn3/var'),
    ('pspnet_r18-d8', 'backbone.layer3.0.downsample.1.running_mean',
     'batch_stats/backbone/layer3_block0/downsample_bn/mean'),
    ('pspnet_r18-d8', 'auxiliary_head.convs.0.bn.weight',
     'params/auxiliary_heads_0/convs_0/bn/scale'),
    ('pspnet_r18-d8', 'decode_head.conv_seg.bias', 'params/decode_head/classifier/conv_seg/bias'),
    ('fcn_r18-d8', 'decode_head.conv_cat.conv.weight', 'params/decode_head/conv_cat/conv/kernel'),
    ('deeplabv3_r18-d8', 'decode_head.image_pool.1.bn.running_var',
     'batch_stats/decode_head/image_pool/bn/var'),
    ('deeplabv3_r18-d8', 'decode_head.aspp_modules.3.conv.weight',
     'params/decode_head/aspp_modules_3/conv/kernel'),
    ('deeplabv3plus_r18-d8', 'decode_head.aspp_modules.2.pointwise_conv.bn.bias',
     'params/decode_head/aspp_modules_2/pointwise_conv/bn/bias'),
    ('deeplabv3plus_r18-d8', 'decode_head.sep_bottleneck.1.depthwise_conv.conv.weight',
     'params/decode_head/sep_bottleneck_1/depthwise_conv/conv/kernel'),
    ('upernet_r18', 'decode_head.psp_modules.3.1.bn.bias',
     'params/decode_head/psp_modules/convs_3/bn/bias'),
    ('upernet_r18', 'decode_head.fpn_convs.0.conv.weight',
     'params/decode_head/fpn_convs_0/conv/kernel'),
    ('upernet_r18', 'decode_head.lateral_convs.2.conv.weight',
     'params/decode_head/lateral_convs_2/conv/kernel'),
    ('upernet_r18', 'decode_head.fpn_bottleneck.bn.running_mean',
     'batch_stats/decode_head/fpn_bottleneck/bn/mean'),
    ('segnext_mscan-t', 'backbone.patch_embed1.proj.4.running_mean',
     'batch_stats/backbone/stage1/patch_embed/bn2/mean'),
    ('segnext_mscan-t', 'backbone.patch_embed3.norm.weight',
     'params/backbone/stage3/patch_embed/norm/scale'),
    ('segnext_mscan-t', 'backbone.block3.4.layer_scale_2',
     'params/backbone/stage3/block4/layer_scale_2'),
    ('segnext_mscan-t', 'backbone.block2.1.attn.spatial_gating_unit.conv2_1.weight',
     'params/backbone/stage2/block1/attn/spatial_gating_unit/conv2_1/kernel'),
    ('segnext_mscan-t', 'backbone.norm4.bias', 'params/backbone/stage4/norm/bias'),
    ('segnext_mscan-t', 'decode_head.hamburger.ham_in.conv.bias',
     'params/decode_head/hamburger/ham_in/conv/bias'),
    ('segnext_mscan-t', 'decode_head.hamburger.ham_out.gn.weight',
     'params/decode_head/hamburger/ham_out/gn/scale'),
    ('fcn_mv2-d8', 'backbone.conv1.bn.running_var', 'batch_stats/backbone/conv1/bn/var'),
    ('fcn_mv2-d8', 'backbone.layer1.0.conv.0.conv.weight',
     'params/backbone/layer1_block0/depthwise_conv/conv/kernel'),
    ('fcn_mv2-d8', 'backbone.layer1.0.conv.1.bn.bias',
     'params/backbone/layer1_block0/linear_conv/bn/bias'),
    ('deeplabv3_mv2-d8', 'backbone.layer3.2.conv.1.bn.weight',
     'params/backbone/layer3_block2/depthwise_conv/bn/scale'),
    ('deeplabv3_mv2-d8', 'backbone.layer6.2.conv.0.conv.weight',
     'params/backbone/layer6_block2/expand_conv/conv/kernel'),
    ('deeplabv3_mv2-d8', 'backbone.layer7.0.conv.2.bn.weight',
     'params/backbone/layer7_block0/linear_conv/bn/scale'),
]


@pytest.mark.parametrize('name,key,leaf_path', SPOT_CHECKS)
def test_spot_checks(name, key, leaf_path):
  # Besides the layout, these catch swaps of equally shaped siblings, which the exhaustive test
  # (every tensor used once, values as the naming says) cannot tell from the naming itself.
  state_dict, conversion = converted_model(name)
  assert conversion.assigned[leaf_path] == key
  leaf = flat(conversion.variables)[leaf_path]
  np.testing.assert_array_equal(leaf, in_our_layout(state_dict[key], leaf_path.rsplit('/')[-1]))


def test_spot_check_layouts():
  """A 3x3 conv lands as [kh, kw, in, out], a depthwise one as [kh, kw, 1, channels]."""
  state_dict, conversion = converted_model('deeplabv3plus_r18-d8')
  leaves = flat(conversion.variables)
  conv = state_dict['decode_head.bottleneck.conv.weight']  # [128, 640, 3, 3]
  assert leaves['params/decode_head/bottleneck/conv/kernel'][2, 0, 5, 7] == conv[7, 5, 2, 0]
  depthwise = state_dict['decode_head.sep_bottleneck.0.depthwise_conv.conv.weight']  # [140, 1..]
  kernel = leaves['params/decode_head/sep_bottleneck_0/depthwise_conv/conv/kernel']
  assert kernel.shape == (3, 3, 1, 140) and kernel[0, 2, 0, 139] == depthwise[139, 0, 0, 2]


@pytest.mark.parametrize('name', ['pspnet_r18-d8', 'segnext_mscan-t', 'deeplabv3_mv2-d8'])
def test_backbone_file_converts_into_backbone(name):
  """A backbone-only file (mmseg's keys without 'backbone.', plus an ImageNet classifier, as in
  open-mmlab's resnet18_v1c.pth) fills our backbone subtree."""
  shapes = {k.removeprefix('backbone.'): s for k, s in reference_shapes()[name].items()
            if k.startswith('backbone.')}
  shapes.update({'fc.weight': (1000, 512), 'fc.bias': (1000,)})
  state_dict = filled(shapes)
  variables = subtree(model_variables(name), 'backbone')
  conversion = torch_layout.convert_state_dict(state_dict, variables, mmseg.backbone_key)
  assert_exact(conversion, state_dict, variables, unused=('fc.bias', 'fc.weight'))


@pytest.mark.parametrize('name', sorted(OUR_MODELS))
def test_model_key_of_backbone_is_backbone_key(name):
  paths = torch_layout.module_leaves(model_variables(name))
  backbone_paths = [p.removeprefix('backbone/') for p in paths if p.startswith('backbone/')]
  assert backbone_paths
  for path in backbone_paths:
    assert mmseg.model_key('backbone/' + path) == 'backbone.' + mmseg.backbone_key(path)


def test_auxiliary_heads_single_and_list():
  assert mmseg.model_key('auxiliary_heads_0/convs_0/bn') == 'auxiliary_head.convs.0.bn'
  single, listed = (set(reference_shapes()[name]) for name in ('fcn_r18-d8', 'bisenetv2'))
  assert mmseg.model_naming(single)('auxiliary_heads_0/convs_0/bn') == 'auxiliary_head.convs.0.bn'
  assert mmseg.model_naming(listed)('auxiliary_heads_0/convs_0/bn') == 'auxiliary_head.0.convs.0.bn'
  assert (mmseg.model_key('auxiliary_heads_1/classifier/conv_seg', aux_list=True)
          == 'auxiliary_head.1.conv_seg')
  with pytest.raises(ValueError, match='aux_list=True'):
    mmseg.model_key('auxiliary_heads_1/convs_0/conv')


def test_paths_outside_the_models_have_no_key():
  for path in ('segmentation_head/conv', 'decode_head/unknown/conv', 'backbone/stage9/x',
               'backbone/layer1_block0/expand_conv/conv'):
    assert mmseg.model_key(path) is None, path


def torchvision_resnet_shapes(depth: int = 50,
                              timm_deep_stem: bool = False) -> dict[str, tuple[int, ...]]:
  """Keys and shapes of torchvision's resnet18/50 (or timm's resnet50c) state dict, from their
  structure: stem, then basic blocks (2, 2, 2, 2) of widths 64..512 (ResNet-18) or
  Bottlenecks (3, 4, 6, 3) of widths 64..512, x4 out (ResNet-50), fc to 1000 classes."""
  shapes: dict[str, tuple[int, ...]] = {}

  def conv(name, out, inp, k):
    shapes[f'{name}.weight'] = (out, inp, k, k)

  def bn(name, channels):
    for leaf in ('weight', 'bias', 'running_mean', 'running_var'):
      shapes[f'{name}.{leaf}'] = (channels,)
    shapes[f'{name}.num_batches_tracked'] = ()

  if timm_deep_stem:
    conv('conv1.0', 32, 3, 3), bn('conv1.1', 32), conv('conv1.3', 32, 32, 3)
    bn('conv1.4', 32), conv('conv1.6', 64, 32, 3)
  else:
    conv('conv1', 64, 3, 7)
  bn('bn1', 64)
  bottleneck, depths = {18: (False, (2, 2, 2, 2)), 50: (True, (3, 4, 6, 3))}[depth]
  expansion = 4 if bottleneck else 1
  inplanes = 64
  for stage, (blocks, width) in enumerate(zip(depths, (64, 128, 256, 512)), start=1):
    for j in range(blocks):
      block = f'layer{stage}.{j}'
      if bottleneck:
        conv(f'{block}.conv1', width, inplanes, 1), bn(f'{block}.bn1', width)
        conv(f'{block}.conv2', width, width, 3), bn(f'{block}.bn2', width)
        conv(f'{block}.conv3', 4 * width, width, 1), bn(f'{block}.bn3', 4 * width)
      else:
        conv(f'{block}.conv1', width, inplanes, 3), bn(f'{block}.bn1', width)
        conv(f'{block}.conv2', width, width, 3), bn(f'{block}.bn2', width)
      if j == 0 and (stage > 1 or bottleneck):
        conv(f'{block}.downsample.0', expansion * width, inplanes, 1)
        bn(f'{block}.downsample.1', expansion * width)
      inplanes = expansion * width
  shapes.update({'fc.weight': (1000, 512 * expansion), 'fc.bias': (1000,)})
  return shapes


RESNET_CASES = {  # name -> (deep stem?, naming)
    'torchvision resnet50': (False, torchvision_resnet.backbone_key),
    'timm resnet50': (False, torchvision_resnet.timm_backbone_key),
    'timm resnet50c': (True, torchvision_resnet.timm_backbone_key),
}


@pytest.mark.parametrize('case', sorted(RESNET_CASES))
def test_torchvision_and_timm_resnet50(case):
  deep_stem, naming = RESNET_CASES[case]
  state_dict = filled(torchvision_resnet_shapes(timm_deep_stem=deep_stem))
  variables = abstract_variables(ResNet(50, deep_stem=deep_stem, output_stride=32))
  conversion = torch_layout.convert_state_dict(state_dict, variables, naming)
  assert_exact(conversion, state_dict, variables, unused=('fc.bias', 'fc.weight'))
  if deep_stem:
    spot = {'conv1.4.weight': 'params/stem_bn2/scale', 'conv1.6.weight': 'params/stem_conv3/kernel',
            'bn1.running_mean': 'batch_stats/stem_bn3/mean'}
  else:
    spot = {'conv1.weight': 'params/conv1/kernel', 'bn1.running_var': 'batch_stats/bn1/var'}
  spot['layer2.0.downsample.1.running_var'] = 'batch_stats/layer2_block0/downsample_bn/var'
  spot['layer4.2.conv3.weight'] = 'params/layer4_block2/conv3/kernel'
  assert {key: leaf for leaf, key in conversion.assigned.items() if key in spot} == spot


def test_torchvision_resnet18_is_linknet_s_encoder():
  """The ImageNet weights configs/camvid_linknet.py asks for: torchvision's resnet18 file fills
  LinkNet's whole `backbone` (its initial block and four encoder blocks)."""
  state_dict = filled(torchvision_resnet_shapes(18))
  model = models.MODELS['linknet']('r18', NUM_CLASSES)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  backbone = {kind: tree['backbone'] for kind, tree in variables.items()}
  conversion = torch_layout.convert_state_dict(state_dict, backbone,
                                               torchvision_resnet.backbone_key)
  assert_exact(conversion, state_dict, backbone, unused=('fc.bias', 'fc.weight'))
  spot = {'layer1.1.conv2.weight': 'params/layer1_block1/conv2/kernel',
          'layer4.0.downsample.1.running_var': 'batch_stats/layer4_block0/downsample_bn/var'}
  assert {key: leaf for leaf, key in conversion.assigned.items() if key in spot} == spot


def mmseg_erfnet_shapes(num_classes: int = 19) -> dict[str, tuple[int, ...]]:
  """Keys and shapes of mmseg's erfnet_fcn state dict, from mmseg/models/backbones/erfnet.py
  and its FCNHead config (in 16, channels 128, one conv): downsamplers `conv` + `bn` (the
  pooling has none), non-bt-1Ds `convs_layers.{0, 2, 5, 7}` (3x1 / 1x3 convs with bias) and
  `{3, 8}` (BNs), upsamplers' ConvTranspose2d `conv` ([in, out, 3, 3]) + `bn`."""
  shapes: dict[str, tuple[int, ...]] = {}

  def bn(name, channels):
    for leaf in ('weight', 'bias', 'running_mean', 'running_var'):
      shapes[f'{name}.{leaf}'] = (channels,)
    shapes[f'{name}.num_batches_tracked'] = ()

  def down(name, c_in, c_out):
    shapes[f'{name}.conv.weight'], shapes[f'{name}.conv.bias'] = (c_out - c_in, c_in, 3, 3), (
        c_out - c_in,)
    bn(f'{name}.bn', c_out)

  def non_bt(name, c):
    for index, kernel in ((0, (3, 1)), (2, (1, 3)), (5, (3, 1)), (7, (1, 3))):
      shapes[f'{name}.convs_layers.{index}.weight'] = (c, c, *kernel)
      shapes[f'{name}.convs_layers.{index}.bias'] = (c,)
    bn(f'{name}.convs_layers.3', c), bn(f'{name}.convs_layers.8', c)

  def up(name, c_in, c_out):
    shapes[f'{name}.conv.weight'], shapes[f'{name}.conv.bias'] = (c_in, c_out, 3, 3), (c_out,)
    bn(f'{name}.bn', c_out)

  encoder = [(down, 16), (down, 64)] + [(non_bt, 64)] * 5 + [(down, 128)] + [(non_bt, 128)] * 8
  decoder = [(up, 64), (non_bt, 64), (non_bt, 64), (up, 16), (non_bt, 16), (non_bt, 16)]
  c_in = 3
  for part, blocks in (('encoder', encoder), ('decoder', decoder)):
    for i, (block, c) in enumerate(blocks):
      if block is non_bt:
        non_bt(f'backbone.{part}.{i}', c)
      else:
        block(f'backbone.{part}.{i}', c_in, c)
      c_in = c
  shapes['decode_head.convs.0.conv.weight'] = (128, 16, 3, 3)
  bn('decode_head.convs.0.bn', 128)
  shapes['decode_head.conv_seg.weight'] = (num_classes, 128, 1, 1)
  shapes['decode_head.conv_seg.bias'] = (num_classes,)
  return shapes


def test_mmseg_erfnet_converts_exactly():
  """mmseg's ERFNet + FCN head (erfnet_fcn_4xb4-160k_cityscapes-512x1024's structure) fills our
  'mmseg' ERFNet tensor by tensor; the transposed convs' [in, out, kh, kw] weights too."""
  state_dict = filled(mmseg_erfnet_shapes())
  assert mmseg.detect(set(state_dict))
  variables = abstract_variables(models.MODELS['erfnet']('mmseg', 19))
  conversion = torch_layout.convert_state_dict(state_dict, variables,
                                               mmseg.model_naming(set(state_dict)))
  assert_exact(conversion, state_dict, variables)
  spot = {'backbone.encoder.2.convs_layers.5.weight': 'params/backbone/layer3/conv3x1_2/kernel',
          'backbone.encoder.15.convs_layers.8.running_var': 'batch_stats/backbone/layer16/bn2/var',
          'backbone.decoder.0.conv.weight': 'params/backbone/layer17/conv/kernel',
          'backbone.decoder.5.convs_layers.7.bias': 'params/backbone/layer22/conv1x3_2/bias',
          'decode_head.convs.0.bn.weight': 'params/decode_head/convs_0/bn/scale',
          'decode_head.conv_seg.weight': 'params/decode_head/classifier/conv_seg/kernel'}
  assert {key: leaf for leaf, key in conversion.assigned.items() if key in spot} == spot


def mmseg_cgnet_shapes(num_classes: int = 19) -> dict[str, tuple[int, ...]]:
  """Keys and shapes of mmseg's cgnet state dict (configs/_base_/models/cgnet.py), from
  mmseg/models/backbones/cgnet.py and its FCNHead(num_convs=0): ConvModules `conv` (no bias),
  `bn`, `activate` (PReLU `weight` [C]); norm_prelu_{i} Sequential(BN, PReLU); CG blocks
  `conv1x1`, depthwise `f_loc` / `f_sur` ([C, 1, 3, 3]), `bn`, `activate`, the downsampling
  block's `bottleneck` and `f_glo.fc.{0,2}` (Linear, with bias)."""
  shapes: dict[str, tuple[int, ...]] = {}

  def bn(name, channels):
    for leaf in ('weight', 'bias', 'running_mean', 'running_var'):
      shapes[f'{name}.{leaf}'] = (channels,)
    shapes[f'{name}.num_batches_tracked'] = ()

  def conv_module(name, c_in, c_out, k):
    shapes[f'{name}.conv.weight'] = (c_out, c_in, k, k)
    bn(f'{name}.bn', c_out)
    shapes[f'{name}.activate.weight'] = (c_out,)

  def cg_block(name, c_in, c_out, reduction, downsample):
    c = c_out if downsample else c_out // 2
    conv_module(f'{name}.conv1x1', c_in, c, 3 if downsample else 1)
    shapes[f'{name}.f_loc.weight'] = shapes[f'{name}.f_sur.weight'] = (c, 1, 3, 3)
    bn(f'{name}.bn', 2 * c)
    shapes[f'{name}.activate.weight'] = (2 * c,)
    if downsample:
      shapes[f'{name}.bottleneck.weight'] = (c_out, 2 * c, 1, 1)
    shapes[f'{name}.f_glo.fc.0.weight'] = (c_out // reduction, c_out)
    shapes[f'{name}.f_glo.fc.0.bias'] = (c_out // reduction,)
    shapes[f'{name}.f_glo.fc.2.weight'] = (c_out, c_out // reduction)
    shapes[f'{name}.f_glo.fc.2.bias'] = (c_out,)

  for i in range(3):
    conv_module(f'backbone.stem.{i}', 3 if i == 0 else 32, 32, 3)
  for i, (c_in, blocks, width, reduction) in enumerate(((35, 3, 64, 8), (131, 21, 128, 16))):
    bn(f'backbone.norm_prelu_{i}.0', c_in)
    shapes[f'backbone.norm_prelu_{i}.1.weight'] = (c_in,)
    for j in range(blocks):
      cg_block(f'backbone.level{i + 1}.{j}', c_in if j == 0 else width, width, reduction, j == 0)
  bn('backbone.norm_prelu_2.0', 256)
  shapes['backbone.norm_prelu_2.1.weight'] = (256,)
  shapes['decode_head.conv_seg.weight'] = (num_classes, 256, 1, 1)
  shapes['decode_head.conv_seg.bias'] = (num_classes,)
  return shapes


def test_mmseg_cgnet_converts_exactly():
  """mmseg's CGNet + FCN head (cgnet_fcn_4xb8-60k_cityscapes-512x1024's structure) fills our
  'mmseg' CGNet tensor by tensor: PReLU slopes, depthwise kernels and the global context's
  Linear weights included."""
  state_dict = filled(mmseg_cgnet_shapes())
  assert mmseg.detect(set(state_dict))
  variables = abstract_variables(models.MODELS['cgnet']('mmseg', 19))
  conversion = torch_layout.convert_state_dict(state_dict, variables,
                                               mmseg.model_naming(set(state_dict)))
  assert_exact(conversion, state_dict, variables)
  spot = {'backbone.stem.2.activate.weight': 'params/backbone/stem_2/activate/slope',
          'backbone.norm_prelu_1.0.running_mean': 'batch_stats/backbone/norm_prelu_1/bn/mean',
          'backbone.norm_prelu_2.1.weight': 'params/backbone/norm_prelu_2/prelu/slope',
          'backbone.level1.0.bottleneck.weight': 'params/backbone/level1_0/bottleneck/kernel',
          'backbone.level2.20.f_sur.weight': 'params/backbone/level2_20/f_sur/kernel',
          'backbone.level2.7.f_glo.fc.2.weight': 'params/backbone/level2_7/f_glo/fc_2/kernel',
          'backbone.level2.3.conv1x1.activate.weight':
              'params/backbone/level2_3/conv1x1/activate/slope',
          'decode_head.conv_seg.bias': 'params/decode_head/classifier/conv_seg/bias'}
  assert {key: leaf for leaf, key in conversion.assigned.items() if key in spot} == spot


def mmseg_icnet_r18_shapes(num_classes: int = 19) -> dict[str, tuple[int, ...]]:
  """Keys and shapes of mmseg's icnet_r18-d8 state dict: its ResNetV1c-18 is the recorded one
  of fcn_r18-d8 (the fixture), under 'backbone.backbone.'; the rest from mmseg's
  backbones/icnet.py (conv_sub1 a Sequential of three ConvModules, the PPM's ConvModules after
  their pooling at index 1), necks/ic_neck.py and the config's three FCN heads (128 channels,
  one conv; the auxiliary heads a list)."""
  shapes = {f'backbone.{key}': shape for key, shape in reference_shapes()['fcn_r18-d8'].items()
            if key.startswith('backbone.')}

  def conv_module(name, c_in, c_out, k):
    shapes[f'{name}.conv.weight'] = (c_out, c_in, k, k)
    for leaf in ('weight', 'bias', 'running_mean', 'running_var'):
      shapes[f'{name}.bn.{leaf}'] = (c_out,)
    shapes[f'{name}.bn.num_batches_tracked'] = ()

  for i, (c_in, c_out) in enumerate(((3, 32), (32, 32), (32, 64))):
    conv_module(f'backbone.conv_sub1.{i}', c_in, c_out, 3)
  conv_module('backbone.conv_sub2', 128, 256, 1)
  for i in range(4):
    conv_module(f'backbone.psp_modules.{i}.1', 512, 512, 1)
  conv_module('backbone.psp_bottleneck', 512 + 4 * 512, 512, 3)
  conv_module('backbone.conv_sub4', 512, 256, 1)
  for name, low, high in (('neck.cff_24', 256, 256), ('neck.cff_12', 128, 64)):
    conv_module(f'{name}.conv_low', low, 128, 3)
    conv_module(f'{name}.conv_high', high, 128, 1)
  for head in ('decode_head', 'auxiliary_head.0', 'auxiliary_head.1'):
    conv_module(f'{head}.convs.0', 128, 128, 3)
    shapes[f'{head}.conv_seg.weight'] = (num_classes, 128, 1, 1)
    shapes[f'{head}.conv_seg.bias'] = (num_classes,)
  return shapes


def test_mmseg_icnet_converts_exactly():
  """mmseg's ICNet (icnet_r18-d8_4xb2-80k_cityscapes-832x832's structure) fills our ICNet tensor
  by tensor: the ResNet nested in mmseg's ICNet backbone, the branches, ICNeck's fusions, the
  decode head and both label-guidance heads."""
  state_dict = filled(mmseg_icnet_r18_shapes())
  assert mmseg.detect(set(state_dict))
  variables = abstract_variables(models.MODELS['icnet']('r18-d8', 19))
  conversion = torch_layout.convert_state_dict(state_dict, variables,
                                               mmseg.model_naming(set(state_dict)))
  assert_exact(conversion, state_dict, variables)
  spot = {'backbone.backbone.stem.3.weight': 'params/backbone/stem_conv2/kernel',
          'backbone.backbone.layer3.1.conv1.weight': 'params/backbone/layer3_block1/conv1/kernel',
          'backbone.conv_sub1.2.bn.running_var': 'batch_stats/conv_sub1_2/bn/var',
          'backbone.psp_modules.3.1.conv.weight': 'params/psp_modules_3/conv/kernel',
          'backbone.psp_bottleneck.conv.weight': 'params/psp_bottleneck/conv/kernel',
          'neck.cff_12.conv_high.conv.weight': 'params/cff_12/conv_high/conv/kernel',
          'auxiliary_head.1.conv_seg.bias': 'params/auxiliary_heads_1/classifier/conv_seg/bias',
          'decode_head.convs.0.bn.weight': 'params/decode_head/convs_0/bn/scale'}
  assert {key: leaf for leaf, key in conversion.assigned.items() if key in spot} == spot


def test_imagenet_resnet_fills_icnet_s_trunk(tmp_path):
  """mmseg's in1k-pre ICNet configs start the trunk from open-mmlab's resnet*_v1c files:
  `backbone_pretrained` fills our ICNet's `backbone` (the ResNet alone) from such a file."""
  resnet = {key[len('backbone.'):]: shape for key, shape in
            reference_shapes()['fcn_r18-d8'].items() if key.startswith('backbone.')}
  path = tmp_path / 'resnet18_v1c.safetensors'
  safetensors.numpy.save_file(filled(resnet), str(path))
  variables = abstract_variables(models.MODELS['icnet']('r18-d8', 19))
  loaded = convert.load(str(path), variables, 'backbone', 'config.model.backbone_pretrained')
  assert len(loaded.arrays) == len(flat(subtree(variables, 'backbone')))


def test_mmseg_cgnet_weights_load_with_cgnet_s_preprocessing(tmp_path):
  """Through the entry point that config.model.pretrained uses: every array filled, and the
  mean and std that mmseg's CGNet configs train with (Cityscapes' mean, std 1) come with the
  weights instead of mmseg's usual ImageNet ones; ERFNet's stay ImageNet's."""
  cgnet_path, erfnet_path = tmp_path / 'cgnet.safetensors', tmp_path / 'erfnet.safetensors'
  safetensors.numpy.save_file(filled(mmseg_cgnet_shapes()), str(cgnet_path))
  safetensors.numpy.save_file(filled(mmseg_erfnet_shapes()), str(erfnet_path))
  variables = abstract_variables(models.MODELS['cgnet']('mmseg', 19))
  loaded = convert.load(str(cgnet_path), variables, 'model', 'config.model.pretrained')
  assert loaded.family == 'mmseg' and len(loaded.arrays) == len(flat(variables))
  expected = dict(mean=(72.39239876, 82.90891754, 73.15835921), std=(1.0, 1.0, 1.0),
                  channel_order='rgb')
  assert loaded.preprocessing == expected
  assert convert.preprocessing_of(str(cgnet_path), 'config.model.pretrained') == expected
  assert convert.preprocessing_of(str(erfnet_path), 'config.model.pretrained') == convert.IMAGENET


def test_resnet_detection():
  torchvision_keys = set(torchvision_resnet_shapes())
  timm_c_keys = set(torchvision_resnet_shapes(timm_deep_stem=True))
  assert torchvision_resnet.detect(torchvision_keys)
  assert not torchvision_resnet.detect_timm(torchvision_keys)
  assert torchvision_resnet.detect_timm(timm_c_keys)
  assert not torchvision_resnet.detect(timm_c_keys)
  assert not mmseg.detect(torchvision_keys) and not mmseg.detect(timm_c_keys)


def test_torchvision_naming_has_no_deep_stem():
  assert torchvision_resnet.backbone_key('stem_conv1') is None
  assert torchvision_resnet.timm_backbone_key('stem_bn3') == 'bn1'


# mmseg checkpoints this naming does not cover (fixture: their real key lists) -> a model to
# load them into, and what loading must say.
UNSUPPORTED = {
    'segformer_mit-b0': (lambda: models.MODELS['segformer']('b0', 150),
                         "mmsegmentation's own SegFormer"),
    'fcn_r18-d8': (lambda: models.MODELS['unet']('bn', NUM_CLASSES), 'no mmsegmentation naming'),
}


@pytest.mark.parametrize('name', sorted(UNSUPPORTED))
def test_unsupported_mmseg_checkpoints_say_what_is_unsupported(name, tmp_path):
  """Before: mmseg's SegFormer files ended on hundreds of misfits under SegNeXt's naming."""
  make_model, expected = UNSUPPORTED[name]
  path = tmp_path / 'weights.safetensors'
  state_dict = filled(reference_shapes()[name])
  assert mmseg.detect(set(state_dict))
  safetensors.numpy.save_file(state_dict, str(path))
  variables = abstract_variables(make_model())
  for part in ('model', 'backbone'):
    with pytest.raises(ValueError, match=expected) as raised:
      convert.load(str(path), variables, part, 'config.model.pretrained')
    assert str(raised.value).startswith(f"config.model.pretrained='{path}': ")
    assert len(str(raised.value)) < 600  # One reason, not a list of every tensor.


@pytest.mark.parametrize('name', ['stdc1', 'bisenetv1_r18-d32', 'bisenetv2'])
def test_stdc_and_bisenet_checkpoints_load_through_the_entry_point(name, tmp_path, caplog):
  """Before: 'use model_key(path, aux_list=True)', an internal message. STDC's detail
  classifier (two outputs in mmseg, one here) keeps its initialisation, with a warning."""
  path = tmp_path / 'weights.safetensors'
  state_dict = filled(reference_shapes()[name])
  safetensors.numpy.save_file(state_dict, str(path))
  loaded = convert.load(str(path), model_variables(name), 'model', 'config.model.pretrained')
  assert loaded.family == 'mmseg'
  assert len(loaded.arrays) == len(flat(model_variables(name))) - len(MISMATCHED.get(name, ()))
  if name == 'stdc1':
    assert 'detail_head/classifier/conv_seg' in caplog.text


def test_segnext_rank_recorded_in_an_mmseg_checkpoint_is_compared():
  base, tiny = models.MODELS['segnext']('b', NUM_CLASSES), models.MODELS['segnext']('t', 19)
  recorded = "decode_head=dict(ham_kwargs=dict(MD_R=16, MD_S=1, train_steps=6), type='LightHamHead')"
  (warning,) = mmseg.recorded_rank_warnings(recorded, base)  # mmseg 1.x's B: rank 16, ours 64.
  assert 'MD_R=16' in warning and "(('rank', 16),)" in warning
  assert mmseg.recorded_rank_warnings(recorded, tiny) == []
  assert mmseg.recorded_rank_warnings(recorded.replace('16', '64'), base) == []
  (reminder,) = mmseg.recorded_rank_warnings(None, base)  # No record: the two sources differ.
  assert 'official' in reminder and "(('rank', 16),)" in reminder
  assert mmseg.recorded_rank_warnings(None, tiny) == []
  assert mmseg.recorded_rank_warnings(None, models.MODELS['fcn']('r50-d8', 19)) == []
