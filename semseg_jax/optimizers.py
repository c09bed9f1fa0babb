"""Optimizers and learning-rate schedules (optax) from the config.

Per-parameter learning-rate multipliers and the weight-decay mask are chosen by regexes on the
'/'-joined parameter path (e.g. 'decode_head/linear_fuse/kernel'), like mmsegmentation's
`paramwise_cfg`: the multiplier scales the whole update of a parameter (its decoupled weight
decay included), as a PyTorch parameter group's lr does.
"""

import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax


def param_paths(tree: Any) -> Any:
  """A tree of the same structure whose leaves are '/'-joined key paths."""
  def path_str(path, _):
    return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
                    for k in path)
  return jax.tree_util.tree_map_with_path(path_str, tree)


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up from warmup_init_factor * lr to lr, then poly/cosine/constant decay to
  end_factor * lr at train.num_steps (mmsegmentation's LinearLR then PolyLR/CosineAnnealingLR),
  or 'step': lr multiplied by step_gamma every step_size steps (PyTorch's StepLR).

  Written out rather than joined from optax's schedules: those interpolate between absolute
  learning rates in float32, which puts the first warm-up steps off by several percent.
  """
  lr, sched = config.optimizer.lr, config.schedule
  warmup, f0, end = sched.warmup_steps, sched.warmup_init_factor, sched.end_factor
  decay_steps = max(config.train.num_steps - warmup, 1)
  if sched.name not in ('poly', 'cosine', 'constant', 'step'):
    raise ValueError(f'config.schedule.name={sched.name!r}; expected poly, cosine, step or '
                     'constant.')
  if sched.name == 'step' and sched.step_size <= 0:
    raise ValueError(f'config.schedule.step_size={sched.step_size}: the step schedule needs a '
                     'positive number of steps between its decays.')

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    t = jnp.clip((step - warmup) / decay_steps, 0.0, 1.0)
    if sched.name == 'poly':
      factor = (1.0 - end) * (1.0 - t) ** sched.power + end
    elif sched.name == 'cosine':
      factor = end + (1.0 - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
    elif sched.name == 'step':
      decays = jnp.floor(jnp.maximum(step - warmup, 0.0) / sched.step_size)
      factor = jnp.asarray(sched.step_gamma, jnp.float32) ** decays
    else:
      factor = jnp.ones_like(t)
    if warmup > 0:
      factor = jnp.where(step < warmup, f0 + (1.0 - f0) * step / warmup, factor)
    return lr * factor

  return schedule


def scale_by_schedule_at_step(schedule: optax.Schedule) -> optax.GradientTransformationExtraArgs:
  """Multiplies the updates by -schedule(step), `step` given to `update` (the train state's
  count of batches consumed), instead of optax's own count of applied updates: a skipped
  (non-finite) step keeps the optimizer state but still consumes its step of the schedule,
  so the rate applied is the rate logged and the schedule ends with the run."""
  def update(updates, state, params=None, *, step, **extra_args):
    del params, extra_args
    step_size = -1 * schedule(step)
    return jax.tree.map(lambda g: jnp.array(step_size, dtype=g.dtype) * g, updates), state
  return optax.GradientTransformationExtraArgs(lambda _: optax.EmptyState(), update)


def scale_by_path_multipliers(rules: tuple) -> optax.GradientTransformation:
  """Multiplies each update by its parameter's multiplier (lr_multipliers of the update tree,
  whose paths are the parameters')."""
  def update(updates, state, params=None):
    del params
    multipliers = lr_multipliers(updates, rules)
    return jax.tree.map(lambda u, m: u * jnp.asarray(m, u.dtype), updates, multipliers), state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def lr_multipliers(params: Any, rules: tuple) -> Any:
  """Per-parameter multiplier: that of the first (regex, multiplier) rule matching the path."""
  compiled = [(re.compile(pattern), float(mult)) for pattern, mult in rules]
  def pick(path):
    return next((mult for pattern, mult in compiled if pattern.search(path)), 1.0)
  return jax.tree.map(pick, param_paths(params))


def decay_mask(params: Any, no_decay_patterns: tuple) -> Any:
  """True where weight decay applies: paths matching none of the patterns."""
  compiled = [re.compile(p) for p in no_decay_patterns]
  return jax.tree.map(lambda path: not any(p.search(path) for p in compiled),
                      param_paths(params))


def make_optimizer(config: ml_collections.ConfigDict
                   ) -> tuple[optax.GradientTransformationExtraArgs, optax.Schedule]:
  """The optimizer of config.optimizer and its learning-rate schedule. `tx.update(grads,
  opt_state, params, step=s)` applies the rate of schedule(s), s = batches consumed before this
  one (see scale_by_schedule_at_step). The weight-decay mask and the learning-rate multipliers
  are read from the paths of the trees the optimizer is given, so building it needs no model;
  the regexes are checked here."""
  opt = config.optimizer
  schedule = make_schedule(config)
  for field, patterns in (('no_decay_patterns', opt.no_decay_patterns),
                          ('lr_multipliers', [rule[0] for rule in opt.lr_multipliers])):
    for pattern in patterns:
      try:
        re.compile(pattern)
      except re.error as e:
        raise ValueError(f'config.optimizer.{field}: {pattern!r} is not a regex ({e}).') from e
  no_decay, rules = tuple(opt.no_decay_patterns), tuple(opt.lr_multipliers)
  mask = lambda params: decay_mask(params, no_decay)
  chain = []
  if opt.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(opt.grad_clip_norm))
  if opt.name == 'adamw':
    chain += [optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps),
              optax.add_decayed_weights(opt.weight_decay, mask)]
  elif opt.name == 'adam':  # PyTorch's Adam: the L2 term added to the gradient, not decoupled.
    chain += [optax.add_decayed_weights(opt.weight_decay, mask),
              optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps)]
  elif opt.name == 'sgd':  # PyTorch SGD: L2 term added to the gradient before momentum.
    if opt.momentum < 0 or (opt.nesterov and opt.momentum == 0):
      raise ValueError(f'config.optimizer.momentum={opt.momentum} (nesterov={opt.nesterov}); '
                       'expected >= 0, and > 0 for Nesterov momentum.')
    chain.append(optax.add_decayed_weights(opt.weight_decay, mask))
    if opt.momentum > 0:  # Without momentum, like PyTorch's SGD, no buffer in the state.
      chain.append(optax.trace(decay=opt.momentum, nesterov=opt.nesterov))
  elif opt.name == 'rmsprop':
    # PyTorch's RMSprop (Torch7's optim.rmsprop without momentum): the L2 term added to the
    # gradient, which is divided by sqrt(mean square) + eps, then momentum on that; with
    # rms_eps_in_sqrt by sqrt(mean square + eps) (Lasagne's, TensorFlow's).
    if opt.momentum < 0 or not 0 <= opt.rms_decay < 1:
      raise ValueError(
          f'config.optimizer.momentum={opt.momentum}, rms_decay={opt.rms_decay}; expected '
          'momentum >= 0 and 0 <= rms_decay < 1.')
    chain += [optax.add_decayed_weights(opt.weight_decay, mask),
              optax.scale_by_rms(decay=opt.rms_decay, eps=opt.eps,
                                 eps_in_sqrt=opt.rms_eps_in_sqrt)]
    if opt.momentum > 0:
      chain.append(optax.trace(decay=opt.momentum))
  else:
    raise ValueError(f'config.optimizer.name={opt.name!r}; expected adamw, adam, sgd or '
                     'rmsprop.')
  chain += [scale_by_schedule_at_step(schedule), scale_by_path_multipliers(rules)]
  return optax.chain(*chain), schedule
