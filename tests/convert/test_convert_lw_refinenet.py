"""The authors' Light-Weight RefineNet files -> our `lw_refinenet`, tensor by tensor.

tests/convert/lw_refinenet_state_dicts.json: the keys and shapes of DrSleep/light-weight-
refinenet's ResNetLW(Bottleneck, [3, 4, 6, 3], num_classes=21) (rf_lw50's layout, the file
its VOC weights load into), read from the module with torch 2.13 (the released files are on
a host not reachable here).
"""

import json
import pathlib

import safetensors.numpy

from semseg_jax import convert
from semseg_jax import models
from semseg_jax.convert import lw_refinenet as lw_naming
from semseg_jax.convert import torch_layout
from tests.convert.test_convert_mmseg import abstract_variables, assert_exact, filled, flat

FIXTURE = pathlib.Path(__file__).with_name('lw_refinenet_state_dicts.json')


def reference_shapes() -> dict[str, tuple[int, ...]]:
  with open(FIXTURE) as f:
    return {key: tuple(shape) for key, shape in json.load(f)['rf_lw50']}


def test_resnetlw_file_fills_our_model_exactly():
  """Encoder (torchvision's names at the top level), the decoder's 1x1 convs, each CRP block's
  four convs inside its one-element Sequential, the classifier."""
  state_dict = filled(reference_shapes())
  assert convert.detect_family(set(state_dict), 'x.pth') == 'lw_refinenet'
  variables = abstract_variables(models.MODELS['lw_refinenet']('r50', 21))
  conversion = torch_layout.convert_state_dict(state_dict, variables, lw_naming.model_key)
  assert_exact(conversion, state_dict, variables)
  spot = {'layer4.2.conv3.weight': 'params/backbone/layer4_block2/conv3/kernel',
          'mflow_conv_g1_pool.0.4_outvar_dimred.weight':
              'params/mflow_conv_g1_pool/outvar_dimred_4/kernel',
          'adapt_stage3_b2_joint_varout_dimred.weight':
              'params/adapt_stage3_b2_joint_varout_dimred/kernel',
          'clf_conv.bias': 'params/clf_conv/bias'}
  assert {key: leaf for leaf, key in conversion.assigned.items() if key in spot} == spot


def test_file_saved_from_data_parallel_loads_through_the_entry_point(tmp_path):
  path = tmp_path / 'rf_lw50_voc.safetensors'
  safetensors.numpy.save_file({f'module.{k}': v for k, v in filled(reference_shapes()).items()},
                              str(path))
  variables = abstract_variables(models.MODELS['lw_refinenet']('r50', 21))
  loaded = convert.load(str(path), variables, 'model', 'config.model.pretrained')
  assert loaded.family == 'lw_refinenet' and len(loaded.arrays) == len(flat(variables))
  assert loaded.preprocessing == convert.IMAGENET
