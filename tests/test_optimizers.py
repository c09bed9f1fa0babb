"""Schedules and per-parameter rules against direct formulas (mmsegmentation's LinearLR +
PolyLR, PyTorch AdamW / Adam / SGD / RMSprop, parameter groups)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from semseg_jax import optimizers


def _config(**schedule):
  config = default.get_config()
  config.train.num_steps = 1000
  config.optimizer.lr = 0.1
  config.schedule.warmup_steps = 100
  for k, v in schedule.items():
    setattr(config.schedule, k, v)
  return config


@pytest.mark.parametrize('power,end_factor', [(1.0, 0.0), (0.9, 1e-3)])
def test_poly_schedule_with_warmup(power, end_factor):
  config = _config(name='poly', power=power, end_factor=end_factor, warmup_init_factor=1e-6)
  schedule = optimizers.make_schedule(config)
  for step in (0, 1, 50, 99):  # Linear from 1e-6 * lr to lr.
    factor = 1e-6 + (1 - 1e-6) * step / 100
    assert float(schedule(step)) == pytest.approx(0.1 * factor, rel=1e-5)
  for step in (100, 101, 500, 999, 1000):
    t = (step - 100) / 900
    expected = (0.1 - 0.1 * end_factor) * (1 - t) ** power + 0.1 * end_factor
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_cosine_schedule():
  schedule = optimizers.make_schedule(_config(name='cosine', end_factor=0.0))
  assert float(schedule(550)) == pytest.approx(0.05, rel=1e-4)


def test_step_schedule_is_pytorch_s_steplr_after_warmup():
  """lr * gamma^floor((step - warm-up) / step_size); a step_size of 0 is refused by name."""
  schedule = optimizers.make_schedule(_config(name='step', step_size=300, step_gamma=0.5,
                                              warmup_init_factor=0.0))
  for step, factor in ((50, 0.5), (100, 1.0), (399, 1.0), (400, 0.5), (699, 0.5), (700, 0.25),
                       (1000, 0.125)):
    assert float(schedule(step)) == pytest.approx(0.1 * factor, rel=1e-6), step
  with pytest.raises(ValueError, match='config.schedule.step_size=0'):
    optimizers.make_schedule(_config(name='step'))


def _params():
  return {'decode_head': {'fuse_norm': {'scale': jnp.ones(3)},
                          'classifier': {'kernel': jnp.ones((2, 3))}},
          'stage1': {'block0': {'mlp': {'dwconv': {'kernel': jnp.ones(3)},
                                        'fc1': {'kernel': jnp.ones(3)}}}}}


def test_adamw_matches_pytorch_param_groups():
  """One AdamW step: p <- p - lr_g * (adam + wd_g * p), lr_g = lr * mult, wd_g = 0 for norms."""
  config = _config(warmup_steps=0, name='constant')
  config.optimizer.weight_decay = 0.5
  config.optimizer.lr = 0.05
  params = _params()
  grads = jax.tree.map(lambda p: 0.3 * jnp.ones_like(p), params)
  tx, _ = optimizers.make_optimizer(config)
  updates, _ = tx.update(grads, tx.init(params), params, step=0)
  new = jax.tree.map(lambda p, u: p + u, params, updates)
  adam = 1.0 / (1.0 + 1e-8 / 0.3)  # First step: m_hat / (sqrt(v_hat) + eps) = g / (|g| + eps).
  def expected(mult, decay):
    return 1 - 0.05 * mult * (adam + (0.5 if decay else 0.0))
  # rtol 1e-4: optax computes Adam's bias correction 1 - b2**t in float32 (PyTorch in float64).
  check = lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-4)
  check(new['decode_head']['classifier']['kernel'], expected(10, True))
  check(new['decode_head']['fuse_norm']['scale'], expected(10, False))
  check(new['stage1']['block0']['mlp']['dwconv']['kernel'], expected(1, False))
  check(new['stage1']['block0']['mlp']['fc1']['kernel'], expected(1, True))


def _assert_steps_follow(config, gradients, reference_step) -> None:
  """Steps the optimizer of `config` from w = [2, -1] with `gradients`, checking each new w
  against `reference_step(p, g, step)`, the reference's update written out (its own state kept
  by the caller)."""
  params = {'w': jnp.array([2.0, -1.0])}
  tx, _ = optimizers.make_optimizer(config)
  state = tx.init(params)
  p = np.array([2.0, -1.0])
  for step, g in enumerate(gradients):
    updates, state = tx.update({'w': jnp.array(g)}, state, params, step=step)
    params = {'w': params['w'] + updates['w']}
    p = reference_step(p, np.array(g), step)
    np.testing.assert_allclose(params['w'], p, rtol=1e-5)


def test_sgd_momentum_weight_decay_and_clipping():
  config = _config(warmup_steps=0, name='constant')
  config.optimizer.name = 'sgd'
  config.optimizer.weight_decay = 0.01
  config.optimizer.lr_multipliers = ()
  config.optimizer.no_decay_patterns = ()
  config.optimizer.grad_clip_norm = 1.0
  buf = [np.zeros(2)]

  def torch_sgd(p, g, step):
    del step
    g = g / max(1.0, np.linalg.norm(g))  # clip_grad_norm_, then PyTorch SGD:
    buf[0] = 0.9 * buf[0] + g + 0.01 * p
    return p - 0.1 * buf[0]
  _assert_steps_follow(config, ([3.0, 4.0], [0.1, 0.2]), torch_sgd)


def test_sgd_without_momentum_keeps_no_buffer_and_steps_on_the_gradient():
  config = _config(warmup_steps=0, name='constant')
  config.optimizer.name, config.optimizer.momentum = 'sgd', 0.0
  config.optimizer.weight_decay = 0.0
  params = {'w': jnp.array([2.0, -1.0])}
  tx, _ = optimizers.make_optimizer(config)
  state = tx.init(params)
  assert not any(leaf.size for leaf in jax.tree.leaves(state) if hasattr(leaf, 'size'))
  updates, _ = tx.update({'w': jnp.array([3.0, 4.0])}, state, params, step=0)
  np.testing.assert_allclose(updates['w'], [-0.3, -0.4], rtol=1e-6)  # lr 0.1
  for momentum, nesterov in ((-0.5, False), (0.0, True)):
    config.optimizer.momentum, config.optimizer.nesterov = momentum, nesterov
    with pytest.raises(ValueError, match=r'config\.optimizer\.momentum'):
      optimizers.make_optimizer(config)


def test_adam_is_pytorch_s_with_its_l2_weight_decay():
  """torch.optim.Adam(weight_decay=wd): d = g + wd * p, then Adam's bias-corrected moments of
  d (AdamW instead decays the parameters apart from the moments)."""
  config = _config(warmup_steps=0, name='constant')
  config.optimizer.name, config.optimizer.weight_decay = 'adam', 0.1
  config.optimizer.lr_multipliers = config.optimizer.no_decay_patterns = ()
  moments = {'m': np.zeros(2), 'v': np.zeros(2)}

  def torch_adam(p, g, step):
    d = g + 0.1 * p
    moments['m'] = 0.9 * moments['m'] + 0.1 * d
    moments['v'] = 0.999 * moments['v'] + 0.001 * d * d
    m_hat = moments['m'] / (1 - 0.9 ** (step + 1))
    v_hat = moments['v'] / (1 - 0.999 ** (step + 1))
    return p - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8)
  _assert_steps_follow(config, ([3.0, 4.0], [0.1, -0.2], [0.0, 1e-4]), torch_adam)


@pytest.mark.parametrize('momentum', [0.0, 0.5])
def test_rmsprop_is_pytorch_s(momentum):
  """torch.optim.RMSprop: d = g + wd * p; v = alpha v + (1 - alpha) d^2; u = d / (sqrt(v) + eps);
  buf = momentum buf + u (with momentum); p -= lr * (buf or u)."""
  config = _config(warmup_steps=0, name='constant')
  config.optimizer.name, config.optimizer.momentum = 'rmsprop', momentum
  config.optimizer.weight_decay, config.optimizer.eps = 0.01, 1e-3
  config.optimizer.lr_multipliers = config.optimizer.no_decay_patterns = ()
  averages = {'v': np.zeros(2), 'buf': np.zeros(2)}

  def torch_rmsprop(p, g, step):
    del step
    d = g + 0.01 * p
    averages['v'] = 0.99 * averages['v'] + 0.01 * d * d
    u = d / (np.sqrt(averages['v']) + 1e-3)
    averages['buf'] = momentum * averages['buf'] + u
    return p - 0.1 * (averages['buf'] if momentum else u)
  _assert_steps_follow(config, ([3.0, 4.0], [0.1, -0.2], [0.0, 1e-4]), torch_rmsprop)
  config.optimizer.rms_decay = 1.0
  with pytest.raises(ValueError, match=r'config\.optimizer\.momentum=.*rms_decay=1\.0'):
    optimizers.make_optimizer(config)


def test_rmsprop_with_eps_in_the_root_is_lasagne_s():
  """lasagne.updates.rmsprop (rho 0.9, eps 1e-6; weight decay as an L2 loss term, here its
  gradient wd * p): a = rho a + (1 - rho) g^2; p -= lr g / sqrt(a + eps)."""
  config = _config(warmup_steps=0, name='constant')
  config.optimizer.name, config.optimizer.momentum = 'rmsprop', 0.0
  config.optimizer.rms_decay, config.optimizer.eps = 0.9, 1e-2
  config.optimizer.rms_eps_in_sqrt = True
  config.optimizer.weight_decay = 0.02
  config.optimizer.lr_multipliers = config.optimizer.no_decay_patterns = ()
  accumulator = [np.zeros(2)]

  def lasagne_rmsprop(p, g, step):
    del step
    d = g + 0.02 * p
    accumulator[0] = 0.9 * accumulator[0] + 0.1 * d * d
    return p - 0.1 * d / np.sqrt(accumulator[0] + 1e-2)
  _assert_steps_follow(config, ([3.0, 4.0], [0.1, -0.2], [0.0, 1e-4]), lasagne_rmsprop)


def test_unknown_names_fail_naming_the_field():
  config = _config()
  config.optimizer.name = 'adam_typo'
  with pytest.raises(ValueError, match='config.optimizer.name'):
    optimizers.make_optimizer(config)
  config = _config(name='linear_typo')
  with pytest.raises(ValueError, match='config.schedule.name'):
    optimizers.make_schedule(config)


@pytest.mark.parametrize('field,value', [('no_decay_patterns', ('norm', '(unclosed')),
                                         ('lr_multipliers', (('head[', 10.0),))])
def test_a_bad_regex_is_named_when_the_optimizer_is_built(field, value):
  """The masks are read from the parameter paths only when the optimizer runs (inside the
  jitted step), so the regexes are checked when it is built, at start."""
  config = _config()
  setattr(config.optimizer, field, value)
  with pytest.raises(ValueError, match=rf'config\.optimizer\.{field}: .* is not a regex'):
    optimizers.make_optimizer(config)
