"""tools/compile_times.py, the compile-time table of the zoo's train steps: which models it
times, that it lowers the training loop's own step from abstract inputs, and that a bad --only
is named. (Its figures come from running it, never from here.)"""

from absl import app
import jax
import jax.numpy as jnp
import pytest

from semseg_jax import models
from semseg_jax.models.segformer import SEGFORMER_VARIANTS
from semseg_jax.tools import compile_times
from semseg_jax.tools import model_stats
from semseg_jax.tools import model_table
from tests.helpers import e2e_config


def test_every_model_of_the_table_once_segformer_s_sizes_included():
  found = compile_times.entries()
  models = [model_table.load_config(c, a).model for c, a, _ in found]
  keys = [(m.name, m.variant) for m in models]
  assert len(keys) == len(set(keys))
  rows = [model_table.load_config(r.config, r.argument).model for r in model_table.ROWS]
  table = {(m.name, m.variant) for m in rows}
  assert set(keys) == table
  assert {('segformer', size) for size in SEGFORMER_VARIANTS} <= table
  assert all(k > 0 for _, _, k in found)


def test_the_train_step_is_lowered_and_compiled_from_shapes():
  config = e2e_config.tiny_quickstart()
  config.train.num_steps = 4  # The end-to-end tests' schedule: their program, often cached.
  row = compile_times.time_train_step(config, 6)
  assert row['model'] == 'unet-bn' and row['batch'] == 8 and row['crop'] == [32, 32]
  assert row['total_s'] == pytest.approx(row['trace_and_lower_s'] + row['compile_s'])
  assert min(row['trace_and_lower_s'], row['compile_s']) > 0


def test_an_unknown_only_entry_is_named():
  compile_times.FLAGS(['compile_times', '--only=cityscapes_pspnet:r50,cityscapes_pspnet:r5'])
  with pytest.raises(app.UsageError, match=r'--only: unknown cityscapes_pspnet:r5;'):
    compile_times.main([])


@pytest.mark.parametrize('name', compile_times.SCANNABLE)
def test_the_scannable_models_scan_their_stages_when_asked(name):
  """--scan_min_depth reaches these models (the override compile_times sets): their first
  config's model, with stages of two or more blocks scanned, traces a lax.scan."""
  config_name, argument, num_classes = next(
      entry for entry in compile_times.entries()
      if model_table.load_config(entry[0], entry[1]).model.name == name)
  config = model_table.load_config(config_name, argument)
  config.model.overrides = (*config.model.overrides, ('scan_min_depth', 2))
  model = models.build_model(config.model, num_classes)
  variables = model_stats.abstract_variables(model, (64, 64))
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x))(variables, jnp.zeros((1, 64, 64, 3)))
  assert ' scan[' in str(jaxpr)
