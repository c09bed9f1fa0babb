"""The authors' DRN files (fyu/drn) -> our DRN backbones and `drn` models, tensor by tensor.

tests/convert/drn_state_dicts.json holds the keys and shapes of fyu/drn's modules (torch 2.13):
drn.py's DRN for drn_c_26, drn_c_58, drn_d_22 and drn_d_54 (the ImageNet files' layout, `fc`
included), and for drn_c_26 / drn_d_22 the layout of segment.py's DRNSeg at 19 classes (`base`:
nn.Sequential of the DRN's children but avgpool and fc; `seg`; `up`), built from the module
code with random weights (the files on dl.yf.io are not reachable here):
    model = drn.<name>(pretrained=False); fixture[name] = [[k, shape] for model.state_dict()]
    base = nn.Sequential(*list(model.children())[:-2]); seg = nn.Conv2d(512, 19, 1)
    up = nn.ConvTranspose2d(19, 19, 16, stride=8, padding=4, groups=19, bias=False)
"""

import json
import pathlib

import pytest
import safetensors.numpy

from semseg_jax import convert
from semseg_jax import models
from semseg_jax.convert import drn as drn_naming
from semseg_jax.convert import torch_layout
from tests.convert.test_convert_mmseg import (abstract_variables, assert_exact, filled, flat,
                                              subtree)

FIXTURE = pathlib.Path(__file__).with_name('drn_state_dicts.json')


def reference_shapes(name: str) -> dict[str, tuple[int, ...]]:
  with open(FIXTURE) as f:
    return {key: tuple(shape) for key, shape in json.load(f)[name]}


@pytest.mark.parametrize('name, variant', [('drn_c_26', 'c26'), ('drn_c_58', 'c58'),
                                           ('drn_d_22', 'd22'), ('drn_d_54', 'd54')])
def test_imagenet_drn_fills_our_backbone_exactly(name, variant):
  """Every tensor but the ImageNet classifier lands once: DRN-D's plain conv levels
  (layer0.0, layer7.1...), DRN-C's non-residual level-7/8 blocks, DRN-C-58's projection ahead
  of level 7 (built, never added), bottleneck stages."""
  state_dict = filled(reference_shapes(name))
  assert drn_naming.detect(set(state_dict))
  assert convert.detect_family(set(state_dict), 'x.pth') == 'drn'
  variables = abstract_variables(models.MODELS['drn'](variant, 19))
  backbone = subtree(variables, 'backbone')
  conversion = torch_layout.convert_state_dict(state_dict, backbone, drn_naming.backbone_key)
  assert_exact(conversion, state_dict, backbone, unused=('fc.bias', 'fc.weight'))
  if variant == 'c58':
    assert conversion.assigned['params/layer7_0/downsample_0/kernel'] == (
        'layer7.0.downsample.0.weight')


@pytest.mark.parametrize('name, variant', [('drn_c_26_seg', 'c26'), ('drn_d_22_seg', 'd22')])
def test_drnseg_file_fills_our_model_exactly(name, variant):
  """DRNSeg's renumbered `base` (DRN-C: conv1, bn1, relu shift levels by 2) and `seg`; its
  frozen `up` is a constant here."""
  state_dict = filled(reference_shapes(name))
  variables = abstract_variables(models.MODELS['drn'](variant, 19))
  conversion = torch_layout.convert_state_dict(state_dict, variables,
                                               drn_naming.model_naming(set(state_dict)))
  assert_exact(conversion, state_dict, variables, unused=('up.weight',))
  spot = ({'base.0.weight': 'params/backbone/conv1/kernel',
           'base.3.0.conv1.weight': 'params/backbone/layer1_0/conv1/kernel',
           'base.10.0.bn2.running_var': 'batch_stats/backbone/layer8_0/bn2/var'}
          if variant == 'c26' else
          {'base.0.0.weight': 'params/backbone/layer0_0/kernel',
           'base.3.0.downsample.1.weight': 'params/backbone/layer3_0/downsample_1/scale',
           'base.8.1.running_mean': 'batch_stats/backbone/layer8_1/mean'})
  spot['seg.bias'] = 'params/seg/bias'
  assert {key: leaf for leaf, key in conversion.assigned.items() if key in spot} == spot


def test_files_load_through_the_entry_points_with_their_preprocessing(tmp_path):
  """An ImageNet file as config.model.backbone_pretrained (its classifier left out, ImageNet's
  mean and std); a DRNSeg file, saved from nn.DataParallel ('module.' keys), as
  config.model.pretrained with Cityscapes' statistics (datasets/cityscapes/info.json)."""
  imagenet, seg = tmp_path / 'drn_d_22.safetensors', tmp_path / 'drn_d_22_city.safetensors'
  safetensors.numpy.save_file(filled(reference_shapes('drn_d_22')), str(imagenet))
  safetensors.numpy.save_file(
      {f'module.{k}': v for k, v in filled(reference_shapes('drn_d_22_seg')).items()}, str(seg))
  variables = abstract_variables(models.MODELS['drn']('d22', 19))
  backbone = convert.load(str(imagenet), variables, 'backbone',
                          'config.model.backbone_pretrained')
  assert len(backbone.arrays) == len(flat(subtree(variables, 'backbone')))
  assert backbone.preprocessing == convert.IMAGENET
  whole = convert.load(str(seg), variables, 'model', 'config.model.pretrained')
  assert len(whole.arrays) == len(flat(variables)) and whole.family == 'drn'
  assert whole.preprocessing['std'] == pytest.approx((46.65, 47.57, 47.04), abs=0.01)
  assert whole.preprocessing['mean'] == pytest.approx((73.98, 83.66, 73.18), abs=0.01)
