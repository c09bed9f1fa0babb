"""Hugging Face ResNet names (ResNetModel, ResNetForImageClassification, ResNetBackbone; the
microsoft/resnet-* checkpoints) for our torchvision-layout ResNet (`deep_stem=False`, the
'r<depth>v1' variants).

Both are ResNet v1.5: a bottleneck's stride sits on its 3x3 conv. HF configs with
`downsample_in_bottleneck=true` (stride on the first 1x1) compute another function, and
`check_config` refuses them.
"""

import re
from typing import Any

_IN_BLOCK = {'conv1': 'layer.0.convolution', 'bn1': 'layer.0.normalization',
             'conv2': 'layer.1.convolution', 'bn2': 'layer.1.normalization',
             'conv3': 'layer.2.convolution', 'bn3': 'layer.2.normalization',
             'downsample_conv': 'shortcut.convolution',
             'downsample_bn': 'shortcut.normalization'}


def detect(keys: set[str]) -> bool:
  return any('embedder.embedder.convolution.' in k for k in keys)


def backbone_key(path: str) -> str | None:
  """Our ResNet module path -> ResNetModel's key prefix."""
  if path in ('conv1', 'bn1'):
    return 'embedder.embedder.' + ('convolution' if path == 'conv1' else 'normalization')
  match = re.fullmatch(r'layer(\d+)_block(\d+)/(\w+)', path)
  if match and match.group(3) in _IN_BLOCK:
    stage, block, layer = int(match.group(1)) - 1, int(match.group(2)), match.group(3)
    return f'encoder.stages.{stage}.layers.{block}.{_IN_BLOCK[layer]}'
  return None


def check_config(hf_config: dict, model: Any, part: str) -> list[str]:
  """Refuses HF ResNet configs whose function differs from our ResNet's."""
  del model, part  # Our ResNets all compute what these checks need.
  for field in ('downsample_in_bottleneck', 'downsample_in_first_stage'):
    if hf_config.get(field):
      raise ValueError(f'config.json has {field}=true: our ResNet strides on the 3x3 conv of '
                       'the first block of stages 2-4 only (ResNet v1.5), as the '
                       'microsoft/resnet-* checkpoints do.')
  if hf_config.get('hidden_act', 'relu') != 'relu':
    raise ValueError(f"config.json has hidden_act={hf_config['hidden_act']!r}: our ResNet "
                     "uses 'relu'.")
  return []
