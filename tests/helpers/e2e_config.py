"""Small settings shared by the end-to-end tests: the real code paths at tiny shapes."""

import jax
import ml_collections
import numpy as np

from configs import quickstart

# Field -> value making configs/quickstart.py tiny.
TINY = {
    'data.synthetic_image_size': (32, 32),
    'data.synthetic_train_size': 64,
    'data.synthetic_eval_size': 16,
    'augment.crop_size': (32, 32),
    'augment.resize_scale': (64, 32),
    'train.batch_size': 8,
    'eval.batch_size': 8,
    'eval.num_overlays': 2,
    'train.log_every': 2,
    # SegFormer-B0 with one block per stage and narrow widths: the real code paths, a fraction
    # of B0's compile time (e2e tests are about the machinery around the model).
    'model.overrides': (('depths', (1, 1, 1, 1)), ('widths', (16, 32, 40, 64)),
                        ('decoder_dim', 32)),
}


def override_flags(overrides: dict) -> list[str]:
  """--config.<field>=<value> flags for main."""
  return [f'--config.{k}={v}' for k, v in overrides.items()]


def apply(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def tiny_quickstart(tiny_model: bool = True) -> ml_collections.ConfigDict:
  """configs/quickstart.py with TINY (the full SegFormer-B0 with tiny_model=False)."""
  overrides = TINY if tiny_model else {k: v for k, v in TINY.items() if k != 'model.overrides'}
  return apply(quickstart.get_config(), overrides)


def flat_leaves(tree) -> dict:
  """{key path string: numpy leaf}, for comparing variable trees leaf by leaf."""
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
