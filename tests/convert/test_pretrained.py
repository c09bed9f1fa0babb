"""config.model.pretrained: weights of another run's checkpoint, checked array by array."""

import numpy as np
import pytest

from semseg_jax import checkpointing
from semseg_jax import sharding
from semseg_jax import train_state
from semseg_jax.data import datasets
from semseg_jax.data import pipeline
from tests.helpers import e2e_config
from tests.helpers import host_init


def _state(config, num_classes, seed):
  """A fresh train state (drawn on the host: the values only need to differ by seed)."""
  model, tx, _ = train_state.build_model_and_optimizer(config, num_classes)
  return host_init.fresh_train_state(model, tx, (32, 32), sharding.make_mesh(config.mesh), seed)


def _model_config(config, path):
  model_config = config.model.copy_and_resolve_references()
  model_config.pretrained = str(path)
  return model_config


@pytest.mark.slow(55)
def test_pretrained_weights_load_exactly_and_misfits_are_named(tmp_path, caplog):
  config = e2e_config.tiny_quickstart('segformer')  # SegFormer's parameter names.
  saved, _ = _state(config, 6, seed=1)
  manager = checkpointing.make_manager(str(tmp_path / 'run'), config)
  source = datasets.make_source(config.data, 'train')
  checkpointing.save(manager, 7, saved, iter(pipeline.train_dataset(config, source)))
  manager.wait_until_finished()

  fresh, shardings = _state(config, 6, seed=2)
  for path in (tmp_path / 'run', tmp_path / 'run' / 'checkpoints',
               tmp_path / 'run' / 'checkpoints' / '7'):
    loaded = train_state.load_pretrained(fresh, shardings, _model_config(config, path))
    want, got = e2e_config.flat_leaves(saved.params), e2e_config.flat_leaves(loaded.params)
    assert want.keys() == got.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert int(loaded.step) == 0  # Weights only: a fresh run starts at step 0.

  # Another class count: the classifier keeps its initialisation, everything else loads.
  other, other_shardings = _state(config, 5, seed=2)
  loaded = train_state.load_pretrained(other, other_shardings,
                                       _model_config(config, tmp_path / 'run'))
  assert "params/decode_head/classifier/bias (6 classes in the source, 5 here)" in caplog.text
  got = e2e_config.flat_leaves(loaded.params)
  for key, value in e2e_config.flat_leaves(saved.params).items():
    if 'classifier' in key:
      np.testing.assert_array_equal(got[key], e2e_config.flat_leaves(other.params)[key])
    else:
      np.testing.assert_array_equal(got[key], value, err_msg=key)

  # The backbone only: the heads keep their initialisation.
  backbone_config = config.model.copy_and_resolve_references()
  backbone_config.backbone_pretrained = str(tmp_path / 'run')
  loaded = train_state.load_pretrained(other, other_shardings, backbone_config)
  got, initial = e2e_config.flat_leaves(loaded.params), e2e_config.flat_leaves(other.params)
  for key, value in e2e_config.flat_leaves(saved.params).items():
    want = value if "['backbone']" in key else initial[key]
    np.testing.assert_array_equal(got[key], want, err_msg=key)

  # Another model: every misfit is named.
  wider = config.copy_and_resolve_references()
  wider.model.overrides = tuple((k, 48 if k == 'decoder_dim' else v)
                                for k, v in config.model.overrides)
  wide, wide_shardings = _state(wider, 6, seed=2)
  with pytest.raises(ValueError, match=r"config.model.pretrained: semseg_jax checkpoint .* does "
                                       r"not fit this model; 14 problems: "
                                       r"batch_stats/decode_head/fuse_norm/mean: source "
                                       r"\(32,\) vs model \(48,\);.*params/decode_head/"
                                       r"classifier/kernel: source \(1, 1, 32, 6\) vs model "
                                       r"\(1, 1, 48, 6\)"):
    train_state.load_pretrained(wide, wide_shardings, _model_config(config, tmp_path / 'run'))
  with pytest.raises(ValueError, match='holds no semseg_jax checkpoint'):
    train_state.load_pretrained(fresh, shardings, _model_config(config, tmp_path))
