"""The model zoo: one dict from model name to constructor.

A constructor takes (variant, num_classes, **options) and returns a linen Module called as
`model.apply(variables, images, train=...)` that returns {'logits': [N, h, w, C], 'aux': [...]}
(`aux`: logits of auxiliary heads, computed when training only) and, for models with a detail
branch (STDC), 'detail': [boundary logits [N, h, w, 1]] when training (see losses/detail.py).

Options come from config.model and are passed to a constructor only if its signature names
them: dtype always; dropout_rate, drop_path_rate, aux_head, multi_grid where the model has such
a thing. Setting an option that a model does not have (non-zero, non-empty) is an error, except
aux_head, which means "the reference's auxiliary heads, where the model has any".
"""

import inspect
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from semseg_jax.models import bisenet
from semseg_jax.models import cgnet
from semseg_jax.models import deconvnet
from semseg_jax.models import deeplabv3
from semseg_jax.models import deeplabv3_mobilenet
from semseg_jax.models import deeplabv3plus
from semseg_jax.models import drn
from semseg_jax.models import duc_hdc
from semseg_jax.models import edanet
from semseg_jax.models import enet
from semseg_jax.models import erfnet
from semseg_jax.models import espnet
from semseg_jax.models import fc_densenet
from semseg_jax.models import fcn
from semseg_jax.models import gcn
from semseg_jax.models import icnet
from semseg_jax.models import linknet
from semseg_jax.models import pspnet
from semseg_jax.models import refinenet
from semseg_jax.models import regseg
from semseg_jax.models import segformer
from semseg_jax.models import segnet
from semseg_jax.models import segnext
from semseg_jax.models import sfnet
from semseg_jax.models import stdc
from semseg_jax.models import topformer
from semseg_jax.models import unet
from semseg_jax.models import upernet

MODELS: dict[str, Callable[..., nn.Module]] = {
    'segformer': segformer.segformer,
    'fcn': fcn.fcn,
    'segnet': segnet.segnet,
    'unet': unet.unet,
    'enet': enet.enet,
    'pspnet': pspnet.pspnet,
    'deeplabv3': deeplabv3.deeplabv3,
    'deeplabv3plus': deeplabv3plus.deeplabv3plus,
    'deeplabv3_mobilenet': deeplabv3_mobilenet.deeplabv3_mobilenet,
    'upernet': upernet.upernet,
    'gcn': gcn.gcn,
    'duc_hdc': duc_hdc.duc_hdc,
    'bisenetv1': bisenet.bisenetv1,
    'bisenetv2': bisenet.bisenetv2,
    'regseg': regseg.regseg,
    'sfnet': sfnet.sfnet,
    'segnext': segnext.segnext,
    'stdc': stdc.stdc,
    'topformer': topformer.topformer,
    'linknet': linknet.linknet,
    'erfnet': erfnet.erfnet,
    'cgnet': cgnet.cgnet,
    'icnet': icnet.icnet,
    'espnet': espnet.espnet,
    'edanet': edanet.edanet,
    'drn': drn.drn,
    'fc_densenet': fc_densenet.fc_densenet,
    'lw_refinenet': refinenet.lw_refinenet,
    'refinenet': refinenet.refinenet,
    'deconvnet': deconvnet.deconvnet,
}

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
OPTIONS = ('dropout_rate', 'drop_path_rate', 'aux_head', 'multi_grid')


def model_options(model_config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The keyword arguments that config.model gives its model's constructor."""
  name = model_config.name
  if name not in MODELS:
    raise ValueError(f'config.model.name={name!r} is not a known model; expected one of '
                     f'{sorted(MODELS)}.')
  if model_config.dtype not in _DTYPES:
    raise ValueError(f'config.model.dtype={model_config.dtype!r}; expected one of '
                     f'{sorted(_DTYPES)}.')
  accepted = inspect.signature(MODELS[name]).parameters
  options = {'dtype': _DTYPES[model_config.dtype]}
  for option in OPTIONS:
    value = model_config[option]
    if option in accepted:
      options[option] = tuple(value) if isinstance(value, (list, tuple)) else value
    elif value and option != 'aux_head':
      raise ValueError(f'config.model.{option}={value!r}, but model {name!r} has no such '
                       f'option; set it to {0.0 if isinstance(value, float) else ()!r}.')
  return options


def build_model(model_config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """The model named by config.model, with num_classes outputs."""
  options = model_options(model_config)
  overrides = model_config.overrides
  if (not isinstance(overrides, (tuple, list))
      or not all(isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)
                 for pair in overrides)):
    raise ValueError(f'config.model.overrides={overrides!r}; expected (field, value) pairs, '
                     "e.g. (('channels', 128),).")
  clashes = sorted({field for field, _ in overrides} & {*options, 'variant', 'num_classes'})
  if clashes:
    raise ValueError(f'config.model.overrides sets {clashes}; set them as config.model fields.')
  try:
    return MODELS[model_config.name](model_config.variant, num_classes, **options,
                                     **{field: value for field, value in overrides})
  except TypeError as error:
    raise ValueError(f'config.model.overrides={overrides!r} for model {model_config.name!r}: '
                     f'{error}') from error
