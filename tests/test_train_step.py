"""The jitted train step: compute dtype; non-finite steps skipped and counted, training
stopped after too many in a row; the schedule of skipped steps; gradient accumulation exact or
refused; a fresh state traced once."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from semseg_jax import main
from semseg_jax import optimizers
from semseg_jax import sharding
from semseg_jax import train_state
from semseg_jax import train_step
from semseg_jax.data import datasets
from semseg_jax.data import pipeline
from semseg_jax.models import layers
from tests.helpers import e2e_config
from tests.helpers import host_init
from tests.helpers.small_net import SmallNet
from tests.helpers.small_net import small_net_setup


def test_bfloat16_compute_keeps_float32_parameters():
  config = e2e_config.tiny_quickstart()
  config.model.dtype = 'bfloat16'
  config.schedule.warmup_steps = 0  # A full-size first step, so that every parameter moves.
  # 64x64 so that every attention has more than one key/value token (stage 1: 16x16 / sr 8).
  config.data.synthetic_image_size = config.augment.crop_size = (64, 64)
  config.augment.resize_scale = (128, 64)
  mesh = sharding.make_mesh(config.mesh)
  source = datasets.make_source(config.data, 'train', config.seed)
  model, tx, schedule = train_state.build_model_and_optimizer(config, source.num_classes)
  # Values drawn on the host (the initialisers in bfloat16 would be one more compile), in the
  # dtypes the model's init gives: float32.
  state, shardings = host_init.fresh_train_state(model, tx, (64, 64), mesh)
  assert all(x.dtype == jnp.float32
             for x in jax.tree.leaves((state.params, state.batch_stats)))
  step_fn = train_step.make_train_step(model, tx, schedule, config, shardings, mesh)
  batch = next(iter(pipeline.train_dataset(config, source)))
  batch = sharding.to_global(batch, sharding.batch_sharding(mesh, ('data',)))
  before = jax.tree.map(np.asarray, state.params)
  state, metrics = step_fn(state, batch)
  assert np.isfinite(float(metrics['loss'])) and int(state.step) == 1
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
  paths = jax.tree.leaves(optimizers.param_paths(state.params))
  unchanged = [p for p, a, b in zip(paths, jax.tree.leaves(before), jax.tree.leaves(state.params))
               if np.array_equal(a, np.asarray(b))]
  # Every parameter moves but possibly the attention key biases: they shift all of a query's
  # scores alike, which softmax ignores, so their gradient is zero up to rounding.
  assert all(p.endswith('attn/key/bias') for p in unchanged), unchanged


def _config(batch_size=4):
  config = e2e_config.tiny_quickstart()
  config.train.batch_size = batch_size
  config.schedule.name, config.schedule.warmup_steps = 'constant', 0
  config.optimizer.lr = 1e-2
  return config


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def _to_global(mesh, batch):
  return sharding.to_global(batch, sharding.batch_sharding(mesh, ('data',)))


def test_a_nan_step_changes_nothing_but_the_counters():
  mesh, state, step_fn, local = small_net_setup(_config())
  poisoned = dict(local, image=local['image'].copy())
  poisoned['image'][1, 3, 4, 0] = np.nan
  before = _host((state.params, state.opt_state))
  state, metrics = step_fn(state, _to_global(mesh, poisoned))
  assert not np.isfinite(float(metrics['loss']))
  after = _host((state.params, state.opt_state))
  jax.tree.map(np.testing.assert_array_equal, before, after)
  assert (int(state.step), int(state.skipped_steps), int(state.bad_streak)) == (1, 1, 1)
  state, metrics = step_fn(state, _to_global(mesh, local))
  assert np.isfinite(float(metrics['loss']))
  assert (int(state.step), int(state.skipped_steps), int(state.bad_streak)) == (2, 1, 0)
  changed = _host(state.params)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before[0]),
                                                      jax.tree.leaves(changed)))


@pytest.mark.parametrize('whole_on_each_device', [True, False])
def test_the_logged_gradient_norm_is_the_l2_norm_of_every_leaf(whole_on_each_device):
  """One reduction over the concatenated leaves (replicated parameters) or one per leaf (FSDP):
  the same norm, float64 NumPy's to rounding, bfloat16 leaves and an empty tree included."""
  rng = np.random.default_rng(0)
  tree = {'conv': {'kernel': rng.normal(size=(3, 3, 4, 8)).astype(np.float32),
                   'bias': rng.normal(size=(8,)).astype(np.float32)},
          'norm': [rng.normal(size=(5,)).astype(jnp.bfloat16), np.float32(3.0)]}
  want = np.sqrt(sum(np.sum(np.asarray(leaf, np.float64) ** 2) for leaf in jax.tree.leaves(tree)))
  got = jax.jit(lambda t: train_step.global_norm(t, whole_on_each_device))(tree)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), want, rtol=1e-6)
  assert float(train_step.global_norm({}, whole_on_each_device)) == 0.0
  poisoned = {'a': np.ones(3, np.float32), 'b': np.array([1.0, np.inf], np.float32)}
  assert not np.isfinite(float(train_step.global_norm(poisoned, whole_on_each_device)))


def test_a_fresh_state_traces_the_model_once():
  """The optimizer is built without the model, and the initial state's shapes (which choose its
  shardings) and its jitted init come from one trace of the model's init: a large model's start
  pays that trace once, not three times."""
  calls = []

  class Counted(nn.Module):
    inner: nn.Module

    def __call__(self, x, train: bool = False):
      calls.append(x.shape)
      return self.inner(x, train)

  config = _config()
  mesh = sharding.make_mesh(config.mesh)
  model = Counted(SmallNet(6))
  tx, _ = optimizers.make_optimizer(config)
  assert not calls
  state, _ = train_state.create_train_state(model, tx, jax.random.key(0), (32, 32), mesh)
  assert calls == [(1, 32, 32, 3)] and int(state.step) == 0


def test_the_initial_state_traces_xla_convolutions_and_equals_the_cpu_lowerings_init():
  """The forward pass that init runs only declares variables, so it is traced in the short
  form (XLA's grouped convolution, not the CPU lowering's shifted multiply-adds); the state is
  the one the CPU lowerings' trace gives, bit for bit."""

  class Depthwise(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
      x = layers.conv2d(8, 3, groups=8)(nn.Dense(8)(x))
      return {'logits': nn.Dense(3)(x), 'aux': []}

  tx, _ = optimizers.make_optimizer(_config())
  init = train_state._initial_state(Depthwise(), tx, (12, 12))  # pylint: disable=protected-access
  groups = [eqn.params['feature_group_count']
            for eqn in jax.make_jaxpr(init)(jax.random.key(0)).eqns
            if eqn.primitive.name == 'conv_general_dilated']
  assert groups == [8], groups
  state = jax.jit(init)(jax.random.key(0))

  def cpu_lowering_init(rng):
    with layers.conv_lowering('cpu'):
      p, d = jax.random.split(rng)
      return Depthwise().init({'params': p, 'dropout': d}, jnp.zeros((1, 12, 12, 3)))
  expected = jax.jit(cpu_lowering_init)(jax.random.key(0))
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected['params'])):
    np.testing.assert_array_equal(a, b)


def test_a_skipped_step_consumes_its_step_of_the_schedule_and_the_log_tells_the_rate_applied():
  """Plain SGD (no momentum, no weight decay) on a warm-up schedule: after two skipped steps
  the update of the next good batch is schedule(2) x gradient, the rate that step logs, not
  schedule(0), the rate of optax's own count of applied updates."""
  config = _config()
  config.optimizer.name, config.optimizer.momentum = 'sgd', 0.0
  config.optimizer.weight_decay = 0.0
  config.schedule.warmup_steps, config.schedule.warmup_init_factor = 10, 0.1
  mesh, fresh, step_fn, local = small_net_setup(config)
  poisoned = dict(local, image=local['image'].copy())
  poisoned['image'][0, 0, 0, 0] = np.inf
  start = _host(fresh.params)
  copy = lambda s: jax.tree.map(jnp.copy, s)
  first, first_metrics = step_fn(copy(fresh), _to_global(mesh, local))  # Rate schedule(0).
  state = fresh
  for _ in range(2):
    state, _ = step_fn(state, _to_global(mesh, poisoned))
  state, metrics = step_fn(state, _to_global(mesh, local))
  assert int(state.skipped_steps) == 2 and int(state.step) == 3
  rates = float(first_metrics['learning_rate']), float(metrics['learning_rate'])
  assert rates == pytest.approx((1e-3, 1e-2 * (0.1 + 0.9 * 2 / 10)), rel=1e-6)
  # The same gradient (same parameters, same batch, no dropout) scaled by each logged rate.
  for a, b, s in zip(jax.tree.leaves(_host(first.params)), jax.tree.leaves(_host(state.params)),
                     jax.tree.leaves(start)):
    np.testing.assert_allclose((b - s) * rates[0], (a - s) * rates[1], rtol=1e-4, atol=1e-9)


# (loss config field, terms, SmallNet with a detail output): each computes a mean that
# accumulation splits exactly (over labelled pixels, over all pixels, over images, over OHEM
# groups of whole images).
EXACT_TERMS = {
    'cross_entropy': ('logits', (('cross_entropy', 1.0, {}), ('focal', 0.5, {})), False),
    'cross_entropy_all': ('logits', (('cross_entropy', 1.0, {'average': 'all'}),), False),
    'ohem_groups': ('logits', (('ohem_cross_entropy', 1.0, {'images_per_group': 2,
                                                            'min_kept': 30}),
                               ('ohem_cross_entropy', 0.5, {'images_per_group': 1,
                                                            'definition': 'kept_mean',
                                                            'min_kept': 20})), False),
    'dice_per_image': ('logits', (('dice', 1.0, {'per_image': True}),
                                  ('lovasz_softmax', 1.0, {'per_image': True})), False),
    'detail': ('detail', (('detail_bce', 1.0, {}), ('detail_dice', 1.0, {})), True),
}


@pytest.mark.parametrize('key, accum_steps', [(key, 2) for key in sorted(EXACT_TERMS)]
                         + [('cross_entropy', 4)])
def test_gradient_accumulation_equals_the_full_batch(key, accum_steps):
  output, terms, detail = EXACT_TERMS[key]
  config = _config(batch_size=4)
  config.loss[output] = terms
  mesh, state, full_step, local = small_net_setup(config, detail)
  local['label'][0, :20] = config.data.ignore_index  # Micro-batches of unequal weight.
  batch = _to_global(mesh, local)
  config.train.grad_accum_steps = accum_steps
  _, _, accum_step, _ = small_net_setup(config, detail)
  copy = lambda s: jax.tree.map(jnp.copy, s)
  full_state, full_metrics = full_step(copy(state), batch)
  accum_state, accum_metrics = accum_step(copy(state), batch)
  for name in full_metrics:
    if name.startswith('loss'):
      np.testing.assert_allclose(float(accum_metrics[name]), float(full_metrics[name]),
                                 rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(float(accum_metrics['grad_norm']),
                             float(full_metrics['grad_norm']), rtol=1e-4)
  for a, b in zip(jax.tree.leaves(_host(full_state.params)),
                  jax.tree.leaves(_host(accum_state.params))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_micro_batches_keep_loss_groups_whole_and_spread():
  batch = {'x': np.arange(16)}
  micro = np.asarray(train_step.micro_batches(batch, 2, 2)['x'])
  np.testing.assert_array_equal(micro, [[0, 1, 4, 5, 8, 9, 12, 13], [2, 3, 6, 7, 10, 11, 14, 15]])
  np.testing.assert_array_equal(np.asarray(train_step.micro_batches(batch, 4)['x'])[1],
                                [1, 5, 9, 13])


@pytest.mark.parametrize('term', [('dice', 1.0, {}), ('lovasz_softmax', 1.0, {}),
                                  ('ohem_cross_entropy', 1.0, {}), ('exp_log', 1.0, {}),
                                  ('cross_entropy', 1.0, {'average': 'weight'})])
def test_accumulating_a_batch_level_term_is_refused_unless_accepted(term):
  config = _config(batch_size=4)
  config.loss.aux = (term,)
  config.train.grad_accum_steps = 2
  with pytest.raises(ValueError, match=f"config.loss.aux: \\('{term[0]}'.*accept_inexact"):
    train_step.check_accumulation(config)
  config.train.accept_inexact_accumulation = True
  train_step.check_accumulation(config)


@pytest.mark.parametrize('accum_steps,group,message', [
    (3, 0, 'grad_accum_steps=3'), (2, 4, 'groups of 4')])
def test_batch_must_divide_into_micro_batches_of_whole_groups(accum_steps, group, message):
  config = _config(batch_size=4)
  if group:
    config.loss.logits = (('ohem_cross_entropy', 1.0, {'images_per_group': group}),)
  config.train.grad_accum_steps = accum_steps
  with pytest.raises(ValueError, match=message):
    small_net_setup(config)


def test_training_stops_after_max_bad_steps(tmp_path, monkeypatch):
  """Through the training loop: every batch poisoned, so the run stops with an error naming
  the field once max_bad_steps consecutive steps were skipped."""
  config = _config()
  config.train.num_steps, config.train.log_every, config.train.max_bad_steps = 10, 1, 3
  monkeypatch.setattr(train_state.models, 'build_model',
                      lambda model_config, num_classes: SmallNet(num_classes))
  original = pipeline.TrainPreprocess.random_map

  def poisoned(self, example, rng):
    out = original(self, example, rng)
    out['image'][0, 0, 0] = np.inf
    return out

  monkeypatch.setattr(pipeline.TrainPreprocess, 'random_map', poisoned)
  with pytest.raises(FloatingPointError, match='config.train.max_bad_steps=3'):
    main.run('train', config, str(tmp_path))
