"""DrSleep's RefineNet and Light-Weight RefineNet files -> our `refinenet` and `lw_refinenet`,
tensor by tensor.

tests/convert/refinenet_state_dicts.json: the keys and shapes of light-weight-refinenet's
ResNetLW(Bottleneck, [3, 4, 6, 3], num_classes=21) (rf_lw50's layout, the file its VOC weights
load into) and refinenet-pytorch's RefineNet(Bottleneck, [3, 4, 23, 3], num_classes=21)
(RefineNet-101 VOC's), read from the modules with torch 2.13 (the released files are on a host
not reachable here).
"""

import json
import pathlib

import safetensors.numpy

from semseg_jax import convert
from semseg_jax import models
from semseg_jax.convert import refinenet as refinenet_naming
from semseg_jax.convert import torch_layout
from tests.convert.test_convert_mmseg import abstract_variables, assert_exact, filled, flat

FIXTURE = pathlib.Path(__file__).with_name('refinenet_state_dicts.json')


def reference_shapes(name: str = 'rf_lw50') -> dict[str, tuple[int, ...]]:
  with open(FIXTURE) as f:
    return {key: tuple(shape) for key, shape in json.load(f)[name]}


def test_resnetlw_file_fills_our_model_exactly():
  """Encoder (torchvision's names at the top level), the decoder's 1x1 convs, each CRP block's
  four convs inside its one-element Sequential, the classifier."""
  state_dict = filled(reference_shapes())
  assert convert.detect_family(set(state_dict), 'x.pth') == 'refinenet'
  variables = abstract_variables(models.MODELS['lw_refinenet']('r50', 21))
  conversion = torch_layout.convert_state_dict(state_dict, variables, refinenet_naming.model_key)
  assert_exact(conversion, state_dict, variables)
  spot = {'layer4.2.conv3.weight': 'params/backbone/layer4_block2/conv3/kernel',
          'mflow_conv_g1_pool.0.4_outvar_dimred.weight':
              'params/mflow_conv_g1_pool/outvar_dimred_4/kernel',
          'adapt_stage3_b2_joint_varout_dimred.weight':
              'params/adapt_stage3_b2_joint_varout_dimred/kernel',
          'clf_conv.bias': 'params/clf_conv/bias'}
  assert {key: leaf for leaf, key in conversion.assigned.items() if key in spot} == spot


def test_refinenet_101_file_fills_our_model_exactly():
  """The residual conv units' convs inside their one-element Sequentials (the first of each
  unit with bias) and CRP's 3x3 convs."""
  state_dict = filled(reference_shapes('rf101'))
  assert convert.detect_family(set(state_dict), 'x.pth') == 'refinenet'
  variables = abstract_variables(models.MODELS['refinenet']('r101', 21))
  conversion = torch_layout.convert_state_dict(state_dict, variables, refinenet_naming.model_key)
  assert_exact(conversion, state_dict, variables)
  spot = {'adapt_stage1_b.0.2_conv.bias': 'params/adapt_stage1_b/conv_2/bias',
          'mflow_conv_g3_b.0.3_conv_relu_varout_dimred.weight':
              'params/mflow_conv_g3_b/conv_relu_varout_dimred_3/kernel',
          'mflow_conv_g4_pool.0.2_outvar_dimred.weight':
              'params/mflow_conv_g4_pool/outvar_dimred_2/kernel'}
  assert {key: leaf for leaf, key in conversion.assigned.items() if key in spot} == spot


def test_file_saved_from_data_parallel_loads_through_the_entry_point(tmp_path):
  path = tmp_path / 'rf_lw50_voc.safetensors'
  safetensors.numpy.save_file({f'module.{k}': v for k, v in filled(reference_shapes()).items()},
                              str(path))
  variables = abstract_variables(models.MODELS['lw_refinenet']('r50', 21))
  loaded = convert.load(str(path), variables, 'model', 'config.model.pretrained')
  assert loaded.family == 'refinenet' and len(loaded.arrays) == len(flat(variables))
  assert loaded.preprocessing == convert.IMAGENET
