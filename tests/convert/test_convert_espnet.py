"""The authors' published ESPNet and ESPNet-C files -> our models/espnet.py, tensor by tensor.

tests/convert/espnet_state_dicts.json holds the keys and shapes of two published files of
sacmehta/ESPNet (pretrained/decoder/espnet_p_2_q_8.pth: ESPNet, and
pretrained/encoder/espnet_p_2_q_8.pth: ESPNet-C; 20 classes, the last for void), read once with
torch.load(weights_only=True) and stored ({name: [[key, shape], ...]}); the tests fill them with
seeded random values and need no torch.
"""

import json
import pathlib

import jax
import numpy as np
import pytest
import safetensors.numpy

from semseg_jax import convert
from semseg_jax import models
from semseg_jax.convert import espnet as espnet_naming
from semseg_jax.convert import torch_layout
from tests.convert.test_convert_mmseg import abstract_variables, assert_exact, filled, flat

FIXTURE = pathlib.Path(__file__).with_name('espnet_state_dicts.json')


def published_shapes(name: str) -> dict[str, tuple[int, ...]]:
  with open(FIXTURE) as f:
    return {key: tuple(shape) for key, shape in json.load(f)[name]}


def _model_variables(variant: str):
  return abstract_variables(models.MODELS['espnet'](variant, 19, void_output=True))


def test_published_espnet_fills_our_espnet_exactly():
  """All 189 tensors of espnet_p_2_q_8.pth land, each once, in our 'espnet' built with the void
  output (364,569 parameters: the paper's 0.364M), transposed convs' [in, out, kh, kw] too."""
  state_dict = filled(published_shapes('espnet_p_2_q_8'))
  assert espnet_naming.detect(set(state_dict))
  assert convert.detect_family(set(state_dict), 'x.pth') == 'espnet'
  variables = _model_variables('espnet')
  conversion = torch_layout.convert_state_dict(state_dict, variables,
                                               espnet_naming.model_naming(set(state_dict)))
  assert_exact(conversion, state_dict, variables)
  assert sum(np.prod(x.shape) for x in jax.tree.leaves(variables['params'])) == 364_569
  spot = {'encoder.level2.1.bn.act.weight': 'params/backbone/level2_block1/act/slope',
          'encoder.level3_0.d16.conv.weight': 'params/backbone/level3_0/d16/kernel',
          'encoder.level3.7.bn.bn.running_mean': 'batch_stats/backbone/level3_block7/bn/mean',
          'encoder.classifier.conv.weight': 'params/backbone/classifier/kernel',
          'combine_l2_l3.1.bn.bn.weight': 'params/combine_l2_l3_1/bn/scale',
          'up_l2.1.act.weight': 'params/up_l2_1/act/slope',
          'conv.conv.weight': 'params/conv/conv/kernel',
          'classifier.weight': 'params/classifier/kernel'}
  assert {key: leaf for leaf, key in conversion.assigned.items() if key in spot} == spot


def test_published_espnet_c_fills_our_espnet_c_exactly():
  state_dict = filled(published_shapes('espnet_c_p_2_q_8'))
  variables = _model_variables('espnet_c')
  conversion = torch_layout.convert_state_dict(state_dict, variables,
                                               espnet_naming.model_naming(set(state_dict)))
  assert_exact(conversion, state_dict, variables)
  assert conversion.assigned['params/backbone/classifier/kernel'] == 'classifier.conv.weight'


def test_espnet_c_file_starts_espnet_s_encoder_with_its_preprocessing(tmp_path):
  """The paper's second stage: ESPNet's encoder from trained ESPNet-C weights
  (config.model.backbone_pretrained); the whole-model file through config.model.pretrained;
  both bring the code's preprocessing (BGR, (x - mean) / std / 255)."""
  encoder_file, model_file = tmp_path / 'enc.safetensors', tmp_path / 'dec.safetensors'
  safetensors.numpy.save_file(filled(published_shapes('espnet_c_p_2_q_8')), str(encoder_file))
  safetensors.numpy.save_file(filled(published_shapes('espnet_p_2_q_8')), str(model_file))
  variables = _model_variables('espnet')
  backbone = convert.load(str(encoder_file), variables, 'backbone',
                          'config.model.backbone_pretrained')
  assert backbone.family == 'espnet'
  assert sorted(backbone.arrays) == sorted(k for k in flat(variables) if '/backbone/' in k)
  whole = convert.load(str(model_file), variables, 'model', 'config.model.pretrained')
  assert len(whole.arrays) == len(flat(variables))
  assert whole.preprocessing == backbone.preprocessing == dict(
      mean=(72.3923111, 82.90893555, 73.15840149),
      std=(45.3192215 * 255, 46.15289307 * 255, 44.91483307 * 255), channel_order='bgr')


def test_without_the_void_output_the_published_file_is_refused_by_name(tmp_path):
  """19 classes: every C-wide decoder layer misfits (not only the classifier), so the load
  fails naming them rather than loading a different network."""
  path = tmp_path / 'dec.safetensors'
  safetensors.numpy.save_file(filled(published_shapes('espnet_p_2_q_8')), str(path))
  variables = abstract_variables(models.MODELS['espnet']('espnet', 19))
  with pytest.raises(ValueError, match=r'br\.weight: source \(20\) vs model \(19\)'):
    convert.load(str(path), variables, 'model', 'config.model.pretrained')

