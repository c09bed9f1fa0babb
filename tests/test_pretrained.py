"""config.model.pretrained: weights of another run's checkpoint, checked array by array."""

import jax
import numpy as np
import pytest

from semseg_jax import checkpointing
from semseg_jax import sharding
from semseg_jax import train
from semseg_jax.data import datasets
from semseg_jax.data import pipeline
from tests import e2e_config


def _state(config, num_classes, seed):
  model, tx, _ = train.build_model_and_optimizer(config, num_classes)
  return train.create_train_state(model, tx, jax.random.key(seed), (32, 32),
                                  sharding.make_mesh(config.mesh))


def test_pretrained_weights_load_exactly_and_misfits_are_named(tmp_path):
  config = e2e_config.tiny_quickstart()
  saved, _ = _state(config, 6, seed=1)
  manager = checkpointing.make_manager(str(tmp_path / 'run'), config)
  source = datasets.make_source(config.data, 'train')
  checkpointing.save(manager, 7, saved, iter(pipeline.train_dataset(config, source)))
  manager.wait_until_finished()

  fresh, shardings = _state(config, 6, seed=2)
  for path in (tmp_path / 'run', tmp_path / 'run' / 'checkpoints',
               tmp_path / 'run' / 'checkpoints' / '7'):
    loaded = train.load_pretrained(fresh, shardings, str(path))
    want, got = e2e_config.flat_leaves(saved.params), e2e_config.flat_leaves(loaded.params)
    assert want.keys() == got.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert int(loaded.step) == 0  # Weights only: a fresh run starts at step 0.

  other, other_shardings = _state(config, 5, seed=2)
  with pytest.raises(ValueError, match=r"config.model.pretrained=.*2 arrays differ.*"
                                       r"\['classifier'\]\['bias'\]: checkpoint \(6,\), "
                                       r"model \(5,\)"):
    train.load_pretrained(other, other_shardings, str(tmp_path / 'run'))
  with pytest.raises(ValueError, match='holds no semseg_jax checkpoint'):
    train.load_pretrained(fresh, shardings, str(tmp_path))
