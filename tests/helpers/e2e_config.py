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
    # A two-level U-Net (BatchNorm, dropout) 8 channels wide: e2e tests are about the machinery
    # around the model (input, sharded steps, checkpoints, evaluators, signals), and a 4-step run
    # of it compiles in a fifth of the narrow SegFormer-B0's time (SEGFORMER: 1.9 s against
    # 9.5 s). The zoo tests train every model.
    'model.name': 'unet',
    'model.variant': 'bn',
    'model.drop_path_rate': 0.0,
    'model.overrides': (('base_width', 8), ('depth', 2)),
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


# The quickstart's own model narrowed instead (one block per stage): for tests about SegFormer's
# names in a run (pretrained loading, conversion).
SEGFORMER = {'model.overrides': (('depths', (1, 1, 1, 1)), ('widths', (16, 32, 40, 64)),
                                 ('decoder_dim', 32))}
MODEL_FIELDS = ('model.name', 'model.variant', 'model.drop_path_rate', 'model.overrides')
UNET = {field: TINY[field] for field in MODEL_FIELDS}  # TINY's model fields alone.


def tiny_quickstart(model: str = 'unet') -> ml_collections.ConfigDict:
  """configs/quickstart.py with TINY's data and batch sizes and a tiny model: 'unet' (TINY's),
  'segformer' (the quickstart's SegFormer-B0, narrowed: SEGFORMER) or 'segformer-b0' (the
  quickstart's model as it is)."""
  shapes = {k: v for k, v in TINY.items() if k not in MODEL_FIELDS}
  models = {'unet': UNET, 'segformer': SEGFORMER, 'segformer-b0': {}}
  return apply(quickstart.get_config(), {**shapes, **models[model]})


def flat_leaves(tree) -> dict:
  """{key path string: numpy leaf}, for comparing variable trees leaf by leaf."""
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
