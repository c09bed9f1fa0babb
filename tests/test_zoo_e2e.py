"""A zoo config trained end to end through main (ENet on CamVid's recipe, fed the synthetic
dataset), with class weights computed from the training labels; class-weighting settings."""

import math

import pytest

from configs import camvid_enet
from semseg_jax import train
from tests.helpers import e2e_config
from tests.helpers import run_main


@pytest.mark.slow(55)
def test_camvid_enet_recipe_trains_through_main_with_enet_class_weights(tmp_path):
  overrides = dict(e2e_config.TINY, **{'data.name': 'synthetic', 'train.num_steps': 4,
                                       'train.eval_every': 4, 'checkpoint.every_steps': 4,
                                       'data.num_workers': 0, 'augment.cat_max_ratio': 1.0})
  result = run_main.run(tmp_path, *e2e_config.override_flags(overrides),
                config='configs/camvid_enet.py')
  log = result.stderr
  assert 'Class weights (enet) from 64 training labels' in log, log[-3000:]
  assert 'Model enet-enet' in log
  assert (tmp_path / 'checkpoints' / '4').is_dir()


def test_class_weighting_is_computed_from_the_training_labels():
  config = e2e_config.tiny_quickstart()
  config.loss.class_weighting = 'enet'
  train.check_config(config)
  train.resolve_class_weighting(config)
  weights = config.loss.class_weights
  assert len(weights) > 1 and all(w > 0 and math.isfinite(w) for w in weights)
  # ENet's weights lie between 1 / ln(2.02) (a class of every pixel) and 1 / ln(1.02).
  assert all(1 / math.log(2.02) <= w <= 1 / math.log(1.02) for w in weights)


@pytest.mark.parametrize('field, value, message', [
    ('class_weighting', 'inverse', 'expected median_frequency, enet'),
    ('class_weights', (1.0, 2.0), 'both set'),
])
def test_bad_class_weighting_settings_name_the_field(field, value, message):
  config = camvid_enet.get_config()
  config.loss[field] = value
  with pytest.raises(ValueError, match=message):
    train.check_config(config)
