"""tools/compile_times.py, the compile-time table of the zoo's train steps: which models it
times, that it lowers the training loop's own step from abstract inputs, and that a bad --only
is named. (Its figures come from running it, never from here.)"""

from absl import app
import pytest

from semseg_jax.tools import compile_times
from semseg_jax.tools import model_table
from tests.helpers import e2e_config


def test_every_model_of_the_table_and_every_segformer_size_once():
  found = compile_times.entries()
  models = [model_table.load_config(c, a).model for c, a, _ in found]
  keys = [(m.name, m.variant) for m in models]
  assert len(keys) == len(set(keys))
  table = {(model_table.load_config(r.config, r.argument).model.name,
            model_table.load_config(r.config, r.argument).model.variant) for r in model_table.ROWS}
  assert set(keys) == table | {('segformer', size) for size in compile_times.SEGFORMER_SIZES}
  assert all(k > 0 for _, _, k in found)


def test_the_train_step_is_lowered_and_compiled_from_shapes():
  config = e2e_config.tiny_quickstart()
  row = compile_times.time_train_step(config, 6)
  assert row['model'] == 'segformer-b0' and row['batch'] == 8 and row['crop'] == [32, 32]
  assert row['total_s'] == pytest.approx(row['trace_and_lower_s'] + row['compile_s'])
  assert min(row['trace_and_lower_s'], row['compile_s']) > 0


def test_an_unknown_only_entry_is_named():
  compile_times.FLAGS(['compile_times', '--only=cityscapes_pspnet:r50,cityscapes_pspnet:r5'])
  with pytest.raises(app.UsageError, match=r'--only: unknown cityscapes_pspnet:r5;'):
    compile_times.main([])
