"""torchvision and timm ResNet names for our ResNet backbone (backbones/resnet.py).

Our ResNet with deep_stem=False (the 'r<depth>v1' variants) is torchvision's layout: a 7x7 stem
'conv1' + 'bn1', blocks 'layer{s}.{j}.{conv,bn}{k}', shortcut 'layer{s}.{j}.downsample.0/1';
the stride of a Bottleneck sits on its 3x3 conv (ResNet v1.5) in both. timm's resnet18..152 use
the same names. timm's deep-stem 'c' variants (resnet50c, resnet101c, resnet152c: stem_width 32,
stem_type 'deep', three 3x3 convs 32-32-64, no average-pool shortcut) are our deep_stem=True
layout, with the stem as nn.Sequential 'conv1' (conv 0, BN 1, conv 3, BN 4, conv 6) followed by
'bn1'. The classifier 'fc' has no counterpart. timm's 'd'/'s'/'t' variants (average-pool
shortcut 'downsample.1/2', wider or tiered stems) are other architectures and are not named.
"""

import re

from semseg_jax.convert.mmseg import resnet_block_key

_TIMM_DEEP_STEM = {'stem_conv1': 'conv1.0', 'stem_bn1': 'conv1.1', 'stem_conv2': 'conv1.3',
                   'stem_bn2': 'conv1.4', 'stem_conv3': 'conv1.6', 'stem_bn3': 'bn1'}
_STEM = {'conv1': 'conv1', 'bn1': 'bn1'}

# torchvision / timm ResNet files: the 7x7 stem conv and the first block, at the top level.
_TORCHVISION_KEYS = ('conv1.weight', 'layer1.0.conv1.weight')
_TIMM_DEEP_STEM_KEY = re.compile(r'conv1\.0\.weight')


def detect(keys: set[str]) -> bool:
  """Whether `keys` are a torchvision (or timm non-deep-stem) ResNet's."""
  return all(key in keys for key in _TORCHVISION_KEYS)


def detect_timm(keys: set[str]) -> bool:
  """Whether `keys` are a timm deep-stem ('c' variant) ResNet's."""
  return 'layer1.0.conv1.weight' in keys and any(_TIMM_DEEP_STEM_KEY.fullmatch(k) for k in keys)


def backbone_key(path: str) -> str | None:
  """Our ResNet (deep_stem=False) module path -> torchvision's key prefix; None for the deep
  stem, which torchvision's ResNets do not have."""
  return _STEM.get(path) or resnet_block_key(path)


def timm_backbone_key(path: str) -> str | None:
  """Our ResNet module path -> timm's key prefix: resnet18..152 (deep_stem=False) and the
  deep-stem 'c' variants (deep_stem=True)."""
  return _TIMM_DEEP_STEM.get(path) or _STEM.get(path) or resnet_block_key(path)
