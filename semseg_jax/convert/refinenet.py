"""The RefineNet files of DrSleep's PyTorch codes for our `refinenet` and `lw_refinenet`:
refinenet-pytorch's RefineNet-101 (VOC, converted from the paper's MatConvNet release) and
light-weight-refinenet's ResNetLW (rf_lw50/101/152 on VOC, NYUDv2, PASCAL Context,
Person-Part).

The encoder is torchvision's ResNet at the top level of the file (conv1, bn1, layer{s}.{j}...:
torchvision_resnet.backbone_key); the decoder keeps the code's module names, and each chained
residual pooling or residual-conv-unit block sits in an nn.Sequential of one:
  mflow_conv_g{g}_pool/outvar_dimred_{i}      -> mflow_conv_g{g}_pool.0.{i}_outvar_dimred
  <rcu>/conv_{i}                              -> <rcu>.0.{i}_conv
  <rcu>/conv_relu_varout_dimred_{i}           -> <rcu>.0.{i}_conv_relu_varout_dimred
    (<rcu>: adapt_stage{k}_b, mflow_conv_g{g}_b)
The weights expect ImageNet's mean and std on RGB in [0, 1].
"""

import re

from semseg_jax.convert import torchvision_resnet

_DECODER = re.compile(r'p_ims1d2_outl\d_dimred|adapt_stage\d_b2_joint_varout_dimred'
                      r'|mflow_conv_g\d_b3_joint_varout_dimred|clf_conv')


def detect(keys: set[str]) -> bool:
  return 'mflow_conv_g1_pool.0.1_outvar_dimred.weight' in keys


def model_key(path: str) -> str | None:
  """Our `refinenet` / `lw_refinenet` path -> the code's key prefix."""
  first, _, rest = path.partition('/')
  if first == 'backbone':
    return torchvision_resnet.backbone_key(rest)
  if _DECODER.fullmatch(path):
    return path
  crp = re.fullmatch(r'(mflow_conv_g\d_pool)/outvar_dimred_(\d)', path)
  if crp is not None:
    return f'{crp.group(1)}.0.{crp.group(2)}_outvar_dimred'
  rcu = re.fullmatch(r'(adapt_stage\d_b|mflow_conv_g\d_b)/(conv|conv_relu_varout_dimred)_(\d)',
                     path)
  return None if rcu is None else f'{rcu.group(1)}.0.{rcu.group(3)}_{rcu.group(2)}'
