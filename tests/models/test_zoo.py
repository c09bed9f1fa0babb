"""Every model of the zoo at a tiny size (shapes, output stride, auxiliary outputs, one jitted
inference and one jitted train step), and the README's model table: each row's config builds its
model at full size with the parameter count the table gives."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from semseg_jax import models
from semseg_jax import optimizers
from semseg_jax import sharding
from semseg_jax import train_state
from semseg_jax import train_step
from semseg_jax.models import layers
from semseg_jax.tools import model_stats as stats
from semseg_jax.tools import model_table as table
from tests.helpers import host_init
from tests.helpers import zoo_specs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DETAIL_MODELS = ('stdc',)


def _check_outputs(key: str, train_out: dict, eval_out: dict, params: dict) -> None:
  """The output contract (docs/design.md): logits in float32 at the spec's size, finite at
  inference, auxiliary logits in training only, a detail branch (STDC's boundary logits) in
  training only; parameters in float32."""
  _, _, _, _, logits_hw, num_aux = zoo_specs.TINY[key]
  expected = (2, *logits_hw, zoo_specs.NUM_CLASSES)
  for out in (train_out, eval_out):
    assert out['logits'].shape == expected and out['logits'].dtype == jnp.float32
  assert bool(np.isfinite(eval_out['logits']).all()), key
  assert len(train_out['aux']) == num_aux
  for aux in train_out['aux']:
    assert aux.shape[0] == 2 and aux.shape[-1] == zoo_specs.NUM_CLASSES
    assert aux.dtype == jnp.float32
  assert eval_out['aux'] == []
  assert [d.shape for d in train_out.get('detail', [])] == \
      ([(2, *logits_hw, 1)] if key in DETAIL_MODELS else [])
  assert not eval_out.get('detail')
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def _one_train_step(key: str, variables: dict) -> dict:
  """One jitted train step (the training loop's, plain SGD) of the tiny model on a batch of 4 with
  ignored pixels, from host-drawn initial `variables` (compiling the model's initialisers, which
  its own file tests where it uses its own, would cost a third of this test); then the same
  compiled step once more from the same values at step 1 (another dropout key, the same constant
  learning rate). Returns its metrics, the share of parameter arrays that moved, the step count,
  the BatchNorm running statistics (means and variances) that did not move, and whether the
  second run's parameters differ from the first's."""
  _, _, _, input_hw, _, _ = zoo_specs.TINY[key]
  config = default.get_config()
  config.train.batch_size = 4
  config.augment.crop_size = input_hw
  config.schedule.name, config.schedule.warmup_steps = 'constant', 0  # lr(0) == lr(1).
  # Plain SGD (no momentum buffer): what this test checks lives in the model's forward and
  # backward; the optimizer's update is the same for every model (tests/test_optimizers.py).
  config.optimizer.name, config.optimizer.lr, config.optimizer.momentum = 'sgd', 0.01, 0.0
  model = zoo_specs.build(key)
  mesh = sharding.make_mesh(config.mesh)
  tx, schedule = optimizers.make_optimizer(config)

  def initial_state(step: int) -> train_state.TrainState:
    return host_init.host_train_state(variables, tx, step)  # (Plain SGD: no optimizer state.)

  shardings = sharding.state_shardings(jax.eval_shape(lambda: initial_state(0)), mesh)
  # Traced with XLA's convolutions, as every model test (tests/conftest.py).
  step_fn = train_step.make_train_step(model, tx, schedule, config, shardings, mesh)
  rng = np.random.default_rng(0)
  batch = {'image': rng.normal(size=(4, *input_hw, 3)).astype(np.float32),
           'label': rng.integers(0, zoo_specs.NUM_CLASSES, (4, *input_hw)).astype(np.int32)}
  batch['label'][:, 0] = 255  # Some ignored pixels.
  batch = sharding.to_global(batch, sharding.batch_sharding(mesh, ('data',)))
  state, metrics = step_fn(jax.device_put(initial_state(0), shardings), batch)
  moved = float(np.mean([not np.array_equal(a, np.asarray(b)) for a, b in
                         zip(jax.tree.leaves(variables['params']), jax.tree.leaves(state.params))]))
  unmoved_stats = [jax.tree_util.keystr(path) for (path, before), after in zip(
      jax.tree_util.tree_leaves_with_path(variables.get('batch_stats', {})),
      jax.tree.leaves(state.batch_stats)) if np.array_equal(before, np.asarray(after))]
  again, _ = step_fn(jax.device_put(initial_state(1), shardings), batch)
  key_changes_step = any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                         zip(jax.tree.leaves(state.params), jax.tree.leaves(again.params)))
  return {'metrics': jax.device_get(metrics), 'moved': moved, 'step': int(state.step),
          'unmoved_stats': unmoved_stats, 'key_changes_step': key_changes_step}


@pytest.mark.slow(13)
@pytest.mark.parametrize('key', sorted(zoo_specs.TINY))
def test_every_model_infers_and_takes_one_train_step(key):
  """Each model compiles twice, here: its inference and the training loop's own step, from the
  same host-drawn variables (the shapes of the init's trace, whose outputs are the training
  outputs). Inference gets no rng: a model that draws random numbers at inference fails. The
  step has every loss term the outputs get (the 8-device steps of sharded training are
  tests/e2e/test_main.py's). What every model's training forward must do is checked on it:
  every BatchNorm running mean and variance follows the batch, and randomness comes from the
  'dropout' rng (a model with dropout, drop path or random bases takes another step under
  another key; any other takes the same step bit for bit)."""
  model = zoo_specs.build(key)
  images = np.random.default_rng(0).normal(size=(2, *zoo_specs.TINY[key][3], 3))
  images = images.astype(np.float32)
  train_out, shapes = jax.eval_shape(
      lambda x: model.init_with_output(
          {'params': jax.random.key(0), 'dropout': jax.random.key(1)}, x, train=True),
      jax.ShapeDtypeStruct(images.shape, jnp.float32))
  variables = host_init.draw(shapes)
  eval_out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
  _check_outputs(key, train_out, eval_out, shapes['params'])

  result = _one_train_step(key, variables)
  metrics = result['metrics']
  assert np.isfinite(metrics['loss']) and result['step'] == 1, (key, metrics)
  # Loss terms are named loss_<output><index>_<loss>: count the outputs, not the terms.
  outputs = {name.split('_')[1] for name in metrics if name.startswith('loss_')}
  assert sum(o.startswith('aux') for o in outputs) == zoo_specs.TINY[key][5], outputs
  assert sum(o.startswith('detail') for o in outputs) == (key in DETAIL_MODELS), outputs
  # Most parameter arrays move in one step (SegFormer's attention key biases get no gradient).
  assert result['moved'] > 0.8, (key, result['moved'])
  assert result['unmoved_stats'] == [], result['unmoved_stats']
  assert result['key_changes_step'] == (key in zoo_specs.RANDOM), key


@pytest.mark.parametrize('row', table.ROWS, ids=lambda row: f'{row.config}:{row.argument}')
def test_config_builds_its_model_with_the_table_parameter_count(row):
  config = table.load_config(row.config, row.argument)
  model = models.build_model(config.model, row.num_classes)
  # At the config's crop (DeconvNet's fc6 needs 193x193 or more), traced only.
  hw = tuple(config.augment.crop_size)
  count = stats.count_params(stats.abstract_variables(model, hw)['params'])
  assert count == row.params, (row, count)
  if row.reference and not row.explanation:
    assert count == row.reference, row


def test_readme_model_table_is_the_generated_one():
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  for line in table.markdown_rows(with_macs=False):
    assert line.rsplit('|', 2)[0] in readme, line


def test_multiply_adds_of_convs_a_transposed_conv_and_a_dense_layer():
  """Depthwise and 1x1 convolutions count their multiply-adds however the backend computes
  them (on CPU: shifted multiply-adds and a matrix product, layers.conv_lowering)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      del train
      x = nn.Conv(32, (3, 3), padding=1)(x)  # 8 * 8 * 32 outputs, 3 * 3 * 3 products each.
      x = layers.conv2d(32, 3, groups=32)(x)  # 8 * 8 * 32 outputs, 3 * 3 products each.
      x = layers.conv2d(16, 1)(x)  # 8 * 8 * 16 outputs, 32 products each.
      x = nn.ConvTranspose(4, (4, 4), strides=(2, 2))(x)  # 8 * 8 inputs x 4 * 4 * 16 * 4.
      return {'logits': nn.Dense(5)(x), 'aux': []}  # 16 * 16 * 5 outputs x 4 products.

  expected = (8 * 8 * 32 * 27 + 8 * 8 * 32 * 9 + 8 * 8 * 16 * 32 + 8 * 8 * 4 * 4 * 16 * 4
              + 16 * 16 * 5 * 4)
  assert stats.inference_macs(Tiny(), (8, 8)) == expected


def test_model_overrides_reach_the_constructor_and_bad_ones_name_the_field():
  config = table.load_config('cityscapes_pspnet', 'r50')
  config.model.overrides = (('channels', 16),)
  assert models.build_model(config.model, 19).decode_head.channels == 16
  for overrides, message in [((('chanels', 16),), 'chanels'), ((('dtype', 'x'),), "'dtype'"),
                             (('channels',), 'pairs')]:
    config.model.overrides = overrides
    with pytest.raises(ValueError, match=message):
      models.build_model(config.model, 19)
