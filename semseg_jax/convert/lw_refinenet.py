"""The authors' Light-Weight RefineNet files (DrSleep/light-weight-refinenet, models/resnet.py's
ResNetLW: rf_lw50/101/152 trained on VOC, NYUDv2, PASCAL Context, Person-Part) for our
`lw_refinenet` models.

The encoder is torchvision's ResNet at the top level of the file (conv1, bn1, layer{s}.{j}...:
torchvision_resnet.backbone_key); the decoder keeps the code's module names, and each chained
residual pooling block sits in an nn.Sequential of one: our
mflow_conv_g{g}_pool/outvar_dimred_{i} -> mflow_conv_g{g}_pool.0.{i}_outvar_dimred. The
weights expect ImageNet's mean and std on RGB in [0, 1] (src/config.py NORMALISE_PARAMS).
"""

import re

from semseg_jax.convert import torchvision_resnet

_DECODER = re.compile(r'p_ims1d2_outl\d_dimred|adapt_stage\d_b2_joint_varout_dimred'
                      r'|mflow_conv_g\d_b3_joint_varout_dimred|clf_conv')


def canonical(key: str) -> str:
  """Checkpoints saved from nn.DataParallel prefix every key with 'module.'."""
  return key[len('module.'):] if key.startswith('module.') else key


def detect(keys: set[str]) -> bool:
  return 'mflow_conv_g1_pool.0.1_outvar_dimred.weight' in keys


def model_key(path: str) -> str | None:
  """Our `lw_refinenet` path -> ResNetLW's key prefix."""
  first, _, rest = path.partition('/')
  if first == 'backbone':
    return torchvision_resnet.backbone_key(rest)
  if _DECODER.fullmatch(path):
    return path
  crp = re.fullmatch(r'(mflow_conv_g\d_pool)/outvar_dimred_(\d)', path)
  return None if crp is None else f'{crp.group(1)}.0.{crp.group(2)}_outvar_dimred'
