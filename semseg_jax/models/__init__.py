"""The model zoo: one dict from model name to constructor.

A constructor takes (variant, num_classes, **options) and returns a linen Module called as
`model.apply(variables, images, train=...)` that returns {'logits': [N, h, w, C], 'aux': [...]}.
"""

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from semseg_jax.models import segformer

MODELS: dict[str, Callable[..., nn.Module]] = {
    'segformer': segformer.segformer,
}

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def build_model(model_config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """The model named by config.model, with num_classes outputs."""
  if model_config.name not in MODELS:
    raise ValueError(f'config.model.name={model_config.name!r} is not a known model; expected '
                     f'one of {sorted(MODELS)}.')
  if model_config.dtype not in _DTYPES:
    raise ValueError(f'config.model.dtype={model_config.dtype!r}; expected one of '
                     f'{sorted(_DTYPES)}.')
  return MODELS[model_config.name](
      model_config.variant, num_classes, dtype=_DTYPES[model_config.dtype],
      drop_path_rate=model_config.drop_path_rate, dropout_rate=model_config.dropout_rate)
