"""Hugging Face MobileNetV2 weights -> `semseg_jax.models.deeplabv3_mobilenet`.

Namings for `torch_layout.convert_state_dict`:
- `model_key`: our whole model from a `MobileNetV2ForSemanticSegmentation` state dict
  (google/deeplabv3_mobilenet_v2_*_513), keys 'mobilenet_v2.conv_stem.first_conv.convolution',
  'mobilenet_v2.layer.3.expand_1x1.normalization', 'segmentation_head.classifier.convolution'.
  HF's model also holds the backbone's final `conv_1x1`, which ours builds only with
  `final_conv=True`; without it those keys come back as unused.
- `backbone_key`: paths under our 'backbone' module (relative to it) -> keys relative to
  'mobilenet_v2.', i.e. a `MobileNetV2Model` state dict as it is, or an ImageNet
  `MobileNetV2ForImageClassification` one with its 'mobilenet_v2.' prefix stripped (its
  conv_1x1, unless final_conv=True, and its classifier are then unused). Convert
  `{'params': variables['params']['backbone'], 'batch_stats': variables['batch_stats']
  ['backbone']}` with it.

Our module names are HF's, with HF's `layer.{i}` (a ModuleList) spelled `layer_{i}`.
`detect` recognises this naming and `IGNORED` lists what may stay unused (for convert.FAMILIES);
`check_config` compares a config.json with our model where shapes cannot tell them apart.
"""

import re
from typing import Any

from semseg_jax.models import deeplabv3_mobilenet

# HF's MobileNetV2ImageProcessor: rescale by 1/255, then mean 0.5, std 0.5 per channel, on RGB;
# i.e. x / 127.5 - 1 in 0..255 units, as TensorFlow's DeepLab feeds its MobileNetV2.
PREPROCESSING = dict(mean=(127.5,) * 3, std=(127.5,) * 3, channel_order='rgb')

BACKBONE_PREFIX = 'mobilenet_v2'
HEAD_PREFIX = 'segmentation_head'

_LAYER_PARTS = frozenset({'convolution', 'normalization'})
_BACKBONE_PARTS = frozenset({'conv_stem', 'first_conv', 'expand_1x1', 'conv_3x3', 'reduce_1x1',
                             'conv_1x1'}) | _LAYER_PARTS
_HEAD_PARTS = frozenset({'conv_pool', 'conv_aspp', 'conv_projection', 'classifier'})
_HEAD_PARTS |= _LAYER_PARTS
_BLOCK = re.compile(r'layer_(\d+)')

# A backbone tensor, with or without the 'mobilenet_v2.' prefix of whole models.
_HF_BACKBONE_KEY = re.compile(
    r'(mobilenet_v2\.)?(conv_stem\.first_conv|layer\.\d+\.(expand_1x1|conv_3x3|reduce_1x1))\.')

# Source keys with no counterpart by default: an ImageNet classifier, and the final 1x1 conv
# (HF's segmentation model never reads it; ours builds it only with final_conv=True).
IGNORED = (r'^classifier\.', r'(^|\.)conv_1x1\.')


def detect(keys: set[str]) -> bool:
  """Whether `keys` (state-dict keys) follow HF's MobileNetV2 naming."""
  return any(_HF_BACKBONE_KEY.match(key) for key in keys)


def _block_name(part: str) -> str | None:
  """'layer_3' -> 'layer.3' (an entry of HF's ModuleList); None for other names."""
  block = _BLOCK.fullmatch(part)
  return None if block is None else f'layer.{block[1]}'


def _join(names: list[str | None]) -> str | None:
  """The dotted key of HF names, None if any component has no counterpart."""
  return None if not names or None in names else '.'.join(names)


def backbone_key(path: str) -> str | None:
  """A module path inside our 'backbone' ('layer_3/conv_3x3/normalization') -> HF's key
  relative to 'mobilenet_v2.' ('layer.3.conv_3x3.normalization'); None if it has none."""
  return _join([_block_name(part) or (part if part in _BACKBONE_PARTS else None)
                for part in path.split('/')])


def model_key(path: str) -> str | None:
  """A module path of our model ('segmentation_head/conv_pool/convolution') -> HF's
  MobileNetV2ForSemanticSegmentation key ('segmentation_head.conv_pool.convolution')."""
  top, _, rest = path.partition('/')
  if top == 'backbone':
    key = backbone_key(rest)
    return None if key is None else f'{BACKBONE_PREFIX}.{key}'
  if top == HEAD_PREFIX:
    key = _join([part if part in _HEAD_PARTS else None for part in rest.split('/')])
    return None if key is None else f'{HEAD_PREFIX}.{key}'
  return None


def _architecture(model: Any) -> deeplabv3_mobilenet.Architecture | None:
  """The Architecture of `model` (a deeplabv3_mobilenet model, or its backbone), if it has one."""
  for module in (model, getattr(model, 'backbone', None)):
    arch = getattr(module, 'arch', None)
    if isinstance(arch, deeplabv3_mobilenet.Architecture):
      return arch
  return None


def check_config(hf_config: dict, model: Any, part: str) -> list[str]:
  """Refuses a MobileNetV2Config whose activation we do not build; returns warnings for
  settings that change the function but not the shapes: padding, BatchNorm epsilon, and (whole
  models) output stride, which DeepLab changes on purpose (trained at 16, evaluated at 8)."""
  if hf_config.get('hidden_act', 'relu6') != 'relu6':
    raise ValueError(f"config.json has hidden_act={hf_config['hidden_act']!r}: our MobileNetV2 "
                     "uses 'relu6'.")
  arch = _architecture(model)
  if arch is None:
    return []
  # The defaults of transformers' MobileNetV2Config, for fields a config.json leaves out.
  theirs = {'tf_padding': True, 'layer_norm_eps': 1e-3, 'output_stride': 32, **hf_config}
  ours = {'tf_padding': arch.tf_padding, 'layer_norm_eps': deeplabv3_mobilenet.BACKBONE_BN_EPSILON,
          'output_stride': arch.output_stride}
  fields = ['tf_padding', 'layer_norm_eps'] + (['output_stride'] if part == 'model' else [])
  return [f'config.json has {field}={theirs[field]!r}, this model {ours[field]!r}: its outputs '
          'differ from those the weights were trained to give.'
          for field in fields if theirs[field] != ours[field]]
