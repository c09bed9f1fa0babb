"""Converts pretrained weights into a semseg_jax checkpoint, once:

  python -m semseg_jax.convert --src=nvidia/segformer-b0-finetuned-ade-512-512 \
      --config=configs/ade20k_segformer.py:b0 --out=DIR

--src takes whatever config.model.pretrained takes (a Hugging Face directory or hub id, a
.safetensors/.pth/.bin state dict). The model is the config's (config.model, and the class count
of config.data's dataset unless --num_classes is given). DIR then holds an orbax checkpoint
usable as config.model.pretrained (or config.model.backbone_pretrained), and
preprocessing.json, the mean/std/channel order the weights expect, which training applies
(config.model.pretrained_preprocessing).
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from semseg_jax import checkpointing
from semseg_jax import config_files
from semseg_jax import convert
from semseg_jax import logs
from semseg_jax import models
from semseg_jax.convert import sources
from semseg_jax.data import datasets

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (path or name[:arguments]).',
                                          lock_config=True)
_SRC = flags.DEFINE_string('src', None, 'Weights to convert (see the module docstring).')
_OUT = flags.DEFINE_string('out', None, 'Directory to write the checkpoint to (must not exist).')
_PART = flags.DEFINE_enum('part', 'model', ['model', 'backbone'],
                          'Convert the whole model, or only its backbone (the rest is '
                          'initialised from config.seed).')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', 0, 'Classes of the model; 0: those of '
                                    "config.data's dataset.")
flags.mark_flags_as_required(['config', 'src', 'out'])


def convert_to_checkpoint(config, src: str, out: str, part: str = 'model',
                          num_classes: int = 0) -> convert.Loaded:
  """Writes `src`'s weights, fitted to config's model, as a checkpoint in `out`."""
  if os.path.exists(out):
    raise FileExistsError(f'--out={out} exists; give a new directory.')
  if not num_classes:
    num_classes = len(datasets.class_names_and_palette(config.data)[0])
  model = models.build_model(config.model, num_classes)
  images = jnp.zeros((1, *config.augment.crop_size, 3), jnp.float32)
  rngs = {'params': jax.random.key(config.seed), 'dropout': jax.random.key(config.seed)}
  abstract = jax.eval_shape(lambda: model.init(rngs, images, train=False))
  loaded = convert.load(src, abstract, part, '--src', model)
  complete = len(loaded.arrays) == len(jax.tree.leaves(abstract))
  # Only what the source does not cover (heads, re-initialised classifiers) needs an init.
  initial = abstract if complete else jax.device_get(jax.jit(
      lambda: model.init(rngs, images, train=False))())
  variables = convert.merge(dict(initial), loaded.arrays)
  variables = jax.tree.map(np.asarray, variables)
  step_dir = checkpointing.save_variables(out, variables)
  if loaded.preprocessing:
    with open(os.path.join(out, sources.PREPROCESSING_FILE), 'w') as f:
      json.dump(loaded.preprocessing, f, indent=1)
  logging.info('Wrote %s: %d arrays from %s (%s naming), %d initialised (%s); '
               'preprocessing %s.', step_dir, len(loaded.arrays), src, loaded.family,
               len(jax.tree.leaves(abstract)) - len(loaded.arrays),
               ', '.join(loaded.reinitialised) or 'none re-initialised', loaded.preprocessing)
  return loaded


def main(argv):
  del argv
  logs.quiet_libraries()
  convert_to_checkpoint(_CONFIG.value, _SRC.value, _OUT.value, _PART.value, _NUM_CLASSES.value)


def cli() -> None:
  """`python -m semseg_jax.convert` and the `semseg-jax-convert` command."""
  argv = config_files.checked_argv(sys.argv)
  app.run(main, argv=argv)


if __name__ == '__main__':
  cli()
