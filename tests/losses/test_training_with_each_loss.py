"""Every registered loss trains: the real pipeline (with distance maps where a loss needs them)
and the jitted train step, a few steps on one tiny synthetic batch, and the loss goes down.

A small conv net stands in for the zoo's models so that the train steps compile quickly;
the step, optimizer and pipeline are the ones training uses."""

import numpy as np
import pytest

from semseg_jax import losses
from semseg_jax import sharding
from semseg_jax.data import datasets
from semseg_jax.data import distance_maps
from semseg_jax.data import pipeline
from tests.helpers import e2e_config
from tests.helpers.small_net import small_net_setup

NUM_STEPS = 8


@pytest.mark.parametrize('name', sorted(losses.LOSSES))
def test_training_with_the_loss_lowers_it(name):
  config = e2e_config.tiny_quickstart()
  output = 'detail' if name.startswith('detail_') else 'logits'  # STDC's boundary terms.
  config.loss.logits = () if output == 'detail' else ((name, 1.0, {}),)
  config.loss.detail = ((name, 1.0, {}),) if output == 'detail' else ()
  config.train.batch_size = 4
  config.schedule.name, config.schedule.warmup_steps = 'constant', 0
  config.optimizer.lr = 3e-3
  mesh, state, step_fn, local = small_net_setup(config, detail=output == 'detail')
  assert ('boundary_distance' in local) == bool(losses.LOSSES[name].batch_fields)
  batch = sharding.to_global(local, sharding.batch_sharding(mesh, ('data',)))
  values = []
  for _ in range(NUM_STEPS):
    state, metrics = step_fn(state, batch)
    values.append(float(metrics[f'loss_{output}{"0" if output == "detail" else ""}_{name}']))
  assert np.all(np.isfinite(values)), values
  assert np.mean(values[-3:]) < values[0] - 0.02 * abs(values[0]), values


def test_pipeline_distance_maps_are_those_of_the_final_crop():
  config = e2e_config.tiny_quickstart()
  config.loss.logits = (('cross_entropy', 1.0, {}), ('boundary', 0.5, {}))
  config.loss.distance_max_classes = 4
  source = datasets.make_source(config.data, 'train', config.seed)
  batch = next(iter(pipeline.train_dataset(config, source)))
  assert batch['distance_classes'].shape == (8, 4)
  assert batch['boundary_distance'].shape == (8, 32, 32, 4)
  for label, classes, maps in zip(batch['label'], batch['distance_classes'],
                                  batch['boundary_distance']):
    want_classes, want_maps = distance_maps.boundary_distance_maps(label, 4, 255)
    np.testing.assert_array_equal(classes, want_classes)
    np.testing.assert_array_equal(maps, want_maps)


def test_too_few_distance_classes_is_an_error_naming_the_field():
  config = e2e_config.tiny_quickstart()
  config.loss.logits = (('dpce', 1.0, {}),)
  config.loss.distance_max_classes = 1
  source = datasets.make_source(config.data, 'train', config.seed)
  with pytest.raises(Exception, match='config.loss.distance_max_classes'):
    next(iter(pipeline.train_dataset(config, source)))
