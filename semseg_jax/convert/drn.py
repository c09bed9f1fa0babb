"""The authors' DRN files (fyu/drn): ImageNet classifiers (drn.py's DRN: drn_c_26-ddedf421.pth,
drn_d_22-4bd2f8ea.pth, ...) as our DRN backbones, and Cityscapes segmentation models
(segment.py's DRNSeg: drn_d_22_cityscapes.pth, ...) as our `drn` models.

Our DRN (models/backbones/drn.py) names its modules as drn.py's, '_<i>' for its Sequential and
ModuleList indices: layer3_0/downsample_1 -> layer3.0.downsample.1; layer0_0 (DRN-D's first
conv) -> layer0.0; conv1 / bn1 (DRN-C's) as they are. The ImageNet classifier `fc` has no
counterpart. DRNSeg files hold the trunk as `base`, a Sequential of the DRN's children without
avgpool and fc, so each level is renumbered: DRN-D's layer{l} -> base.{l}; DRN-C's conv1, bn1 ->
base.0, base.1 (its ReLU is base.2) and layer{l} -> base.{l + 2}; `seg` is ours; `up`, the
frozen bilinear deconvolution, is a constant here and not read.
"""

import re

# Cityscapes' mean and std of datasets/cityscapes/info.json (RGB, on 0..1), on 0..255: the
# preprocessing of the released segmentation models.
CITYSCAPES_PREPROCESSING = dict(
    mean=tuple(255 * m for m in (0.29010095242892997, 0.32808144844279574,
                                 0.28696394422942517)),
    std=tuple(255 * s for s in (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)),
    channel_order='rgb')
IGNORED = (r'^fc\.', r'^up\.weight$')


def detect(keys: set[str]) -> bool:
  """ImageNet DRN-D ('layer0.0.weight') or DRN-C (a basic block at level 8) files, or DRNSeg
  files ('seg.weight' beside 'base.*')."""
  return ('layer0.0.weight' in keys or 'layer8.0.conv1.weight' in keys
          or ('seg.weight' in keys and any(k.startswith('base.') for k in keys)))


def backbone_key(path: str) -> str | None:
  """A path under our DRN backbone -> the key prefix in drn.py's state dict."""
  if not re.match(r'(layer\d|conv1|bn1)', path):
    return None
  return re.sub(r'_(\d+)(?=/|$)', r'.\1', path).replace('/', '.')


def model_key(path: str, arch: str = 'D') -> str | None:
  """Our `drn` model -> DRNSeg's keys (`arch`: the trunk's, 'C' or 'D')."""
  first, _, rest = path.partition('/')
  if path == 'seg':
    return 'seg'
  if first != 'backbone':
    return None
  inner = backbone_key(rest)
  if inner is None:
    return None
  level, dot, tail = inner.partition('.')
  if level in ('conv1', 'bn1'):
    return f'base.{0 if level == "conv1" else 1}{dot}{tail}'
  number = int(level[len('layer'):]) + (2 if arch == 'C' else 0)
  return f'base.{number}{dot}{tail}'


def model_naming(keys: set[str]):
  """`model_key` for the trunk the DRNSeg file holds: DRN-C's base.1 is a BN (bn1), DRN-D's a
  Sequential (layer1)."""
  arch = 'C' if 'base.1.running_mean' in keys else 'D'
  return lambda path: model_key(path, arch)


def preprocessing_by_keys(keys: set[str]) -> dict | None:
  """The released segmentation models' Cityscapes statistics; ImageNet files: the family's."""
  return dict(CITYSCAPES_PREPROCESSING) if 'seg.weight' in keys else None
